//! Request IDs: taken from a well-formed `x-request-id` or generated, set on the response,
//! forwarded to the backend, and present in every log line (through the request's span) and every
//! error body (through a task-local).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use crate::error::ErrorCode;

/// The header that carries the request ID, in both directions and to backends (as metadata).
pub const HEADER: &str = "x-request-id";

/// The longest client-supplied ID accepted; longer ones are replaced by a generated one.
const CLIENT_ID_LEN_MAX: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The ID of the request being handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The request ID of the request this task is handling, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.0.clone()).ok()
}

/// Makes unique IDs: a per-process prefix drawn from the injected RNG, then a counter. Cheap, and
/// deterministic in simulation.
#[derive(Debug)]
pub struct RequestIdGenerator {
    prefix: u32,
    counter: AtomicU64,
}

impl RequestIdGenerator {
    /// A generator whose IDs start with `prefix` (draw it from the seeded RNG).
    pub fn new(prefix: u32) -> Self {
        Self {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    /// The next ID.
    pub fn next_id(&self) -> String {
        let sequence = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{sequence:012x}", self.prefix)
    }
}

/// A client's ID is kept only if it is short and made of safe characters, so it can travel in
/// headers, metadata and logs without escaping.
fn acceptable(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= CLIENT_ID_LEN_MAX
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Middleware: assigns the ID, runs the request inside its span and task-local, echoes the ID on
/// the response, and writes one access-log line.
pub async fn layer(
    State(generator): State<std::sync::Arc<RequestIdGenerator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| acceptable(value))
        .map(str::to_owned)
        .unwrap_or_else(|| generator.next_id());
    let header_value = HeaderValue::from_str(&id).ok();
    if let Some(value) = &header_value {
        request.headers_mut().insert(HEADER, value.clone());
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    // Only the path is logged: query strings may carry credentials.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = tokio::time::Instant::now();
    let mut response = CURRENT
        .scope(RequestId(id), next.run(request))
        .instrument(span.clone())
        .await;
    if let Some(value) = header_value {
        response.headers_mut().insert(HEADER, value);
    }
    let elapsed: Duration = started.elapsed();
    let error_code = response.extensions().get::<ErrorCode>().map(|code| code.0);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            error_code,
            latency_us = elapsed.as_micros() as u64,
            "served"
        );
    });
    response
}
