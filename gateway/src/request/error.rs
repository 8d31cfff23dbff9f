//! The one error shape every client sees, and the gRPC-to-HTTP status table.
//!
//! Every error response is `{"error":{"code","message","request_id"}}` with a stable,
//! machine-readable `code`. The table is documented in `docs/errors.md` and each row is pinned by
//! a test in `gateway/tests/errors.rs`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::Code;

use crate::request::{error_code::ErrorCode, request_id};

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    allow: Option<String>,
    retry_after_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
}

impl ApiError {
    /// An error with an HTTP status, a stable code and a human-readable message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after_seconds: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            message,
        )
    }

    /// 404: no route has this path.
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no route matches this path",
        )
    }

    /// 405 with the `Allow` header listing the methods this path accepts.
    pub fn method_not_allowed(allow: &[http::Method]) -> Self {
        let allow = allow
            .iter()
            .map(http::Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this path does not accept this method",
            )
        }
    }

    /// 503: a dependency the gateway needs is not answering; clients may retry later.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 503 `circuit_open`: the backend's circuit breaker is open, so the call was not made.
    /// `Retry-After` says when the breaker lets a probe through (whole seconds, at least 1).
    pub fn circuit_open(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_millis().div_ceil(1_000).max(1) as u64;
        Self {
            retry_after_seconds: Some(seconds),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CircuitOpen,
                "the backend service is failing; the gateway is not calling it for now",
            )
        }
    }

    /// 429 `rate_limited`: a rate limit refused the request; `Retry-After` says when the next one
    /// may pass (whole seconds, at least 1).
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_millis().div_ceil(1_000).max(1) as u64;
        Self {
            retry_after_seconds: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many requests; retry after the time in Retry-After",
            )
        }
    }

    /// Maps a backend's gRPC status to the client's answer, per the table in `docs/errors.md`.
    /// Messages of client-error statuses are the backend's own (they describe the client's input);
    /// messages of server-side statuses are replaced, so internals never leak.
    pub fn from_grpc_status(status: &tonic::Status) -> Self {
        let (http, code) = grpc_to_http(status.code());
        let message = if http.is_client_error() {
            status.message().to_owned()
        } else {
            match status.code() {
                Code::Unavailable => "the backend service is unavailable".to_owned(),
                Code::DeadlineExceeded => "the backend did not answer in time".to_owned(),
                Code::Unimplemented => "the backend does not implement this method".to_owned(),
                _ => "the backend failed to process the request".to_owned(),
            }
        };
        let error = Self::new(http, code, message);
        if http == StatusCode::SERVICE_UNAVAILABLE {
            Self {
                retry_after_seconds: Some(1),
                ..error
            }
        } else {
            error
        }
    }

    /// Whether this says the backend could not answer (UNAVAILABLE, a deadline, an open breaker),
    /// rather than answering about the request: the case a stale cached answer may cover.
    pub fn is_backend_outage(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::CircuitOpen
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Retry-After` this error carries, in seconds, if any.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after_seconds
    }

    /// The error shape's JSON for this error, answered to the request `request_id`.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            error: Body {
                code: self.code.as_str(),
                message: &self.message,
                request_id,
            },
        })
        .unwrap_or_default()
    }

    /// The same error answered after `seconds` at the earliest (`Retry-After`).
    pub fn with_retry_after(self, seconds: Option<u64>) -> Self {
        Self {
            retry_after_seconds: seconds,
            ..self
        }
    }
}

/// The gRPC-to-HTTP status table (`docs/errors.md`).
pub fn grpc_to_http(code: Code) -> (StatusCode, ErrorCode) {
    match code {
        // A failed call never carries OK; were one to, the backend is at fault.
        Code::Ok => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown),
        Code::Cancelled => (client_closed_request(), ErrorCode::Cancelled),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, ErrorCode::DeadlineExceeded),
        Code::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        Code::AlreadyExists => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::ResourceExhausted),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, ErrorCode::FailedPrecondition),
        Code::Aborted => (StatusCode::CONFLICT, ErrorCode::Aborted),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, ErrorCode::OutOfRange),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, ErrorCode::Unimplemented),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::DataLoss),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
    }
}

/// 499, the de-facto status for a request the client gave up on (nginx, grpc-gateway).
fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body(&request_id::current().unwrap_or_default());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // For the access log (`request_id`) and the metrics.
        response.extensions_mut().insert(self.code);
        response
    }
}
