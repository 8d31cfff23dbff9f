//! The stable, machine-readable `code` of every error the gateway answers, one variant each,
//! so a code is never a free string. `docs/errors.md` lists them all (a test checks it); the
//! WebSocket endpoints' codes are in `docs/protocol.md`.

/// An error response's `code`. The gRPC statuses of the backends map to the first group
/// (`request::error::grpc_to_http`); the gateway's own decisions are the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // A backend's gRPC status, by name.
    /// `CANCELLED`: the call was cancelled.
    Cancelled,
    /// `UNKNOWN`.
    Unknown,
    /// `INVALID_ARGUMENT`, or a query parameter or field value the gateway cannot encode.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED`, or the route's deadline passed.
    DeadlineExceeded,
    /// `NOT_FOUND`, or no route has the path.
    NotFound,
    /// `ALREADY_EXISTS`.
    AlreadyExists,
    /// `PERMISSION_DENIED`, or the caller may not subscribe to a channel.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// `ABORTED`.
    Aborted,
    /// `OUT_OF_RANGE`.
    OutOfRange,
    /// `UNIMPLEMENTED`.
    Unimplemented,
    /// `INTERNAL`, or a handler panicked.
    Internal,
    /// `UNAVAILABLE`.
    Unavailable,
    /// `DATA_LOSS`.
    DataLoss,
    /// `UNAUTHENTICATED`, or the request has no valid token.
    Unauthenticated,

    // The gateway's own.
    /// 414: the request target is too long.
    UriTooLong,
    /// 431: too many request headers, or too many bytes of them.
    HeadersTooLarge,
    /// 413: the body is larger than `http.body_bytes_max`.
    PayloadTooLarge,
    /// 400: the JSON body nests deeper than `http.json_depth_max`.
    JsonTooDeep,
    /// 405: the path exists with other methods.
    MethodNotAllowed,
    /// 400: a dot segment or a path variable that is not UTF-8.
    InvalidPath,
    /// 429: a rate limit refused the request.
    RateLimited,
    /// 503: Auth cannot validate the token and it cannot be verified locally.
    AuthUnavailable,
    /// 400: the body could not be read.
    InvalidBody,
    /// 415: a body that is not JSON.
    UnsupportedMediaType,
    /// 400: the body is not JSON of the request's shape.
    InvalidJson,
    /// 400: the request breaks a field rule of its contract.
    InvalidField,
    /// 503: no backend serves the route's service.
    BackendUnavailable,
    /// 503: the backend's circuit breaker is open.
    CircuitOpen,
    /// 503: an aggregate's parts all failed because their backends could not answer.
    AggregateUnavailable,
    /// 502: an aggregate none of whose parts succeeded.
    AggregateFailed,
    /// 502: the backend's answer is not its declared type.
    BadGateway,
    /// 503: past the cap on open connections (before any request is read).
    TooManyConnections,
    /// 400: a WebSocket channel id that is not well formed.
    InvalidChannel,
    /// 400: not a WebSocket handshake on a WebSocket endpoint.
    WebsocketUpgradeRequired,
    /// 403: a browser `Origin` not allowed to open WebSockets.
    OriginNotAllowed,
}

impl ErrorCode {
    /// Every code, in the order above.
    pub const ALL: [ErrorCode; 37] = [
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::PayloadTooLarge,
        Self::JsonTooDeep,
        Self::MethodNotAllowed,
        Self::InvalidPath,
        Self::RateLimited,
        Self::AuthUnavailable,
        Self::InvalidBody,
        Self::UnsupportedMediaType,
        Self::InvalidJson,
        Self::InvalidField,
        Self::BackendUnavailable,
        Self::CircuitOpen,
        Self::AggregateUnavailable,
        Self::AggregateFailed,
        Self::BadGateway,
        Self::TooManyConnections,
        Self::InvalidChannel,
        Self::WebsocketUpgradeRequired,
        Self::OriginNotAllowed,
    ];

    /// The code as clients see it (`invalid_argument`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out_of_range",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data_loss",
            Self::Unauthenticated => "unauthenticated",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::PayloadTooLarge => "payload_too_large",
            Self::JsonTooDeep => "json_too_deep",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidPath => "invalid_path",
            Self::RateLimited => "rate_limited",
            Self::AuthUnavailable => "auth_unavailable",
            Self::InvalidBody => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidJson => "invalid_json",
            Self::InvalidField => "invalid_field",
            Self::BackendUnavailable => "backend_unavailable",
            Self::CircuitOpen => "circuit_open",
            Self::AggregateUnavailable => "aggregate_unavailable",
            Self::AggregateFailed => "aggregate_failed",
            Self::BadGateway => "bad_gateway",
            Self::TooManyConnections => "too_many_connections",
            Self::InvalidChannel => "invalid_channel",
            Self::WebsocketUpgradeRequired => "websocket_upgrade_required",
            Self::OriginNotAllowed => "origin_not_allowed",
        }
    }
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
