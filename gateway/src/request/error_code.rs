//! The stable, machine-readable `code` of every error the gateway answers, one variant each,
//! so a code is never a free string. `docs/errors.md` lists them all (a test checks it); the
//! WebSocket endpoints' codes are in `docs/protocol.md`.

/// Declares [`ErrorCode`] from one list, each code once: its doc, its variant and its spelling
/// make the enum, [`ErrorCode::ALL`] and [`ErrorCode::as_str`].
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $code:ident => $spelling:literal,)*) => {
        /// An error response's `code`. The gRPC statuses of the backends map to the first group
        /// (`request::error::grpc_to_http`); the gateway's own decisions are the second.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the list.
            pub const ALL: &[ErrorCode] = &[$(Self::$code,)*];

            /// The code as clients see it (`invalid_argument`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$code => $spelling,)*
                }
            }
        }
    };
}

error_codes! {
    // A backend's gRPC status, by name.
    /// `CANCELLED`: the call was cancelled.
    Cancelled => "cancelled",
    /// `UNKNOWN`.
    Unknown => "unknown",
    /// `INVALID_ARGUMENT`, or a query parameter or field value the gateway cannot encode.
    InvalidArgument => "invalid_argument",
    /// `DEADLINE_EXCEEDED`, or the route's deadline passed.
    DeadlineExceeded => "deadline_exceeded",
    /// `NOT_FOUND`, or no route has the path.
    NotFound => "not_found",
    /// `ALREADY_EXISTS`.
    AlreadyExists => "already_exists",
    /// `PERMISSION_DENIED`, or the caller may not subscribe to a channel.
    PermissionDenied => "permission_denied",
    /// `RESOURCE_EXHAUSTED`.
    ResourceExhausted => "resource_exhausted",
    /// `FAILED_PRECONDITION`.
    FailedPrecondition => "failed_precondition",
    /// `ABORTED`.
    Aborted => "aborted",
    /// `OUT_OF_RANGE`.
    OutOfRange => "out_of_range",
    /// `UNIMPLEMENTED`.
    Unimplemented => "unimplemented",
    /// `INTERNAL`, or a handler panicked.
    Internal => "internal",
    /// `UNAVAILABLE`.
    Unavailable => "unavailable",
    /// `DATA_LOSS`.
    DataLoss => "data_loss",
    /// `UNAUTHENTICATED`, or the request has no valid token.
    Unauthenticated => "unauthenticated",

    // The gateway's own.
    /// 414: the request target is too long.
    UriTooLong => "uri_too_long",
    /// 431: too many request headers, or too many bytes of them.
    HeadersTooLarge => "headers_too_large",
    /// 413: the body is larger than `http.body_bytes_max`.
    PayloadTooLarge => "payload_too_large",
    /// 400: the JSON body nests deeper than `http.json_depth_max`.
    JsonTooDeep => "json_too_deep",
    /// 405: the path exists with other methods.
    MethodNotAllowed => "method_not_allowed",
    /// 400: a dot segment or a path variable that is not UTF-8.
    InvalidPath => "invalid_path",
    /// 429: a rate limit refused the request.
    RateLimited => "rate_limited",
    /// 503: Auth cannot validate the token and it cannot be verified locally.
    AuthUnavailable => "auth_unavailable",
    /// 400: the body could not be read.
    InvalidBody => "invalid_body",
    /// 415: a body that is not JSON.
    UnsupportedMediaType => "unsupported_media_type",
    /// 400: the body is not JSON of the request's shape.
    InvalidJson => "invalid_json",
    /// 400: the request breaks a field rule of its contract.
    InvalidField => "invalid_field",
    /// 503: no backend serves the route's service.
    BackendUnavailable => "backend_unavailable",
    /// 503: the backend's circuit breaker is open.
    CircuitOpen => "circuit_open",
    /// 503: an aggregate's parts all failed because their backends could not answer.
    AggregateUnavailable => "aggregate_unavailable",
    /// 502: an aggregate none of whose parts succeeded.
    AggregateFailed => "aggregate_failed",
    /// 502: the backend's answer is not its declared type.
    BadGateway => "bad_gateway",
    /// 503: past the cap on open connections (before any request is read).
    TooManyConnections => "too_many_connections",
    /// 400: a WebSocket channel id that is not well formed.
    InvalidChannel => "invalid_channel",
    /// 400: not a WebSocket handshake on a WebSocket endpoint.
    WebsocketUpgradeRequired => "websocket_upgrade_required",
    /// 403: a browser `Origin` not allowed to open WebSockets.
    OriginNotAllowed => "origin_not_allowed",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_code_is_listed_once_and_spelled_once() {
        let spelled: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(spelled.len(), ErrorCode::ALL.len());
        assert!(
            spelled
                .iter()
                .all(|code| code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
