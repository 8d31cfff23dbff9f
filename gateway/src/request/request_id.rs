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
use bytes::Bytes;
use tracing::Instrument;

use crate::request::error_code::ErrorCode;

/// The header that carries the request ID, in both directions and to backends (as metadata).
pub const HEADER: &str = "x-request-id";

/// The longest client-supplied ID accepted; longer ones are replaced by a generated one.
const CLIENT_ID_LEN_MAX: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The ID of the request being handled: safe characters only (see `acceptable`), held in one
/// shared buffer that the response header and the backend metadata reuse without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Bytes);

impl RequestId {
    /// The ID's bytes, shared.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Made of ASCII characters only, by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The request ID of the request this task is handling, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.as_str().to_owned()).ok()
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

/// Middleware: [`around`] as a layer of its own (the metrics port, which has no other layers).
pub async fn layer(
    State(generator): State<std::sync::Arc<RequestIdGenerator>>,
    request: Request,
    next: Next,
) -> Response {
    around(&generator, request, |request| next.run(request)).await
}

/// Assigns the request's ID, runs `inner` inside the request's span and task-local, echoes the ID
/// on the response, and writes one access-log line.
pub async fn around<F, Fut>(
    generator: &RequestIdGenerator,
    mut request: Request,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let client_id = request
        .headers()
        .get(HEADER)
        .filter(|value| value.to_str().is_ok_and(acceptable));
    let (id, header_value) = match client_id {
        Some(value) => (Bytes::copy_from_slice(value.as_bytes()), value.clone()),
        None => {
            let id = Bytes::from(generator.next_id());
            // A generated ID is hexadecimal and a dash: always a valid header value.
            let value = HeaderValue::from_maybe_shared(id.clone())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
            request.headers_mut().insert(HEADER, value.clone());
            (id, value)
        }
    };
    let id = RequestId(id);
    request.extensions_mut().insert(id.clone());
    // Only the path is logged: query strings may carry credentials.
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = tokio::time::Instant::now();
    let mut response = CURRENT
        .scope(id, inner(request))
        .instrument(span.clone())
        .await;
    response.headers_mut().insert(HEADER, header_value);
    let elapsed: Duration = started.elapsed();
    let error_code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|code| code.as_str());
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
