//! The edge: what every request on the API, WebSocket and health ports goes through before any
//! route is looked at, outermost first: request ID and access log → metrics → security headers →
//! limits on the request head → panic guard.
//!
//! One middleware rather than one per concern: each axum middleware costs every request a boxed
//! service and a boxed future; as five layers the edge added about 18 % to the gateway's CPU per
//! request on its cheapest route, as one about 9–13 % (`docs/benchmarks.md`, "After the mocks'
//! permission cache and the edge in one layer").

pub mod browser;
pub mod limits;
pub mod rate_limit;

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::FutureExt as _;

use crate::{
    ops::metrics,
    ops::metrics::Metrics,
    request::request_id,
    request::request_id::RequestIdGenerator,
    request::{error::ApiError, error_code::ErrorCode},
    serve::HttpConfig,
};

/// What the edge needs, shared by every request.
#[derive(Debug)]
pub struct Edge {
    /// Makes the IDs of requests that bring none.
    pub request_ids: Arc<RequestIdGenerator>,
    /// Counts and times every request.
    pub metrics: Arc<Metrics>,
    /// Added to every answer that does not set them itself (`[security_headers]`).
    pub security_headers: Arc<HeaderMap>,
    /// The limits on the request head (`[http]`).
    pub http: HttpConfig,
}

/// Middleware: the edge around the rest of the stack.
pub async fn layer(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    request_id::around(&edge.request_ids, request, |request| async {
        let method = request.method().clone();
        metrics::around(&edge.metrics, &method, async {
            let mut response = match limits::check_head(&edge.http, &request) {
                Ok(()) => guard_panics(next.run(request)).await,
                Err(error) => error.into_response(),
            };
            browser::add_security_headers(&edge.security_headers, &mut response);
            response
        })
        .await
    })
    .await
}

/// The answer of `handling`, or a 500 in the error shape if it panics: one request's bug must
/// not take its connection, or the process, with it.
async fn guard_panics(handling: impl Future<Output = Response>) -> Response {
    match std::panic::AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("request handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the gateway failed to process the request",
            )
            .into_response()
        }
    }
}
