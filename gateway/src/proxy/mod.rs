//! Phase 11, the final handler of a matched route: read the body, transcode JSON to the gRPC
//! request, check it against the contract's field rules (`validate`), answer from the response
//! cache when configured (`cache`), call the backend with the caller's context as metadata, and
//! transcode the answer. Aggregate routes (`aggregate`) call several routes through it.

pub mod aggregate;
pub mod cache;
pub mod validate;

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::{
    auth::UserContext,
    backends::{Backend, Backends, CallError},
    edge::limits::{self, payload_too_large},
    ops::metrics::Metrics,
    proxy::cache::{ResponseCache, Served},
    proxy::validate::Validation,
    request::request_id::{self, RequestId},
    request::{error::ApiError, error_code::ErrorCode},
    routing::{MatchedRoute, Route},
    transcode::{self, TranscodeError},
};

/// What the final handler needs.
#[derive(Debug)]
pub struct RouteHandler {
    /// Backend connections.
    pub backends: Backends,
    /// Where backend call latencies are recorded.
    pub metrics: Arc<Metrics>,
    /// Largest accepted body.
    pub body_bytes_max: usize,
    /// Deepest accepted nesting of arrays and objects in a JSON body.
    pub json_depth_max: usize,
    /// Deadlines of routes in a configured group, by route label (others use their backend's).
    pub deadlines: Arc<std::collections::BTreeMap<String, std::time::Duration>>,
    /// The response cache of configured GET routes.
    pub cache: ResponseCache,
    /// The request field rules of every route.
    pub validation: Arc<Validation>,
}

/// The final handler: transcode, call, transcode back.
pub async fn handle(State(proxy): State<Arc<RouteHandler>>, request: Request) -> Response {
    match forward(&proxy, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Serves a request whose route is matched (its [`MatchedRoute`] in the extensions): the body
/// read and transcoded, the backend called (through the cache for cached routes).
pub(crate) async fn forward(proxy: &RouteHandler, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let matched = parts
        .extensions
        .get::<MatchedRoute>()
        .ok_or_else(ApiError::route_not_found)?;
    let route = &matched.route;
    let body = Limited::new(body, proxy.body_bytes_max)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                payload_too_large(proxy.body_bytes_max)
            } else {
                ApiError::bad_request(ErrorCode::InvalidBody, "the request body could not be read")
            }
        })?
        .to_bytes();
    if !body.is_empty() && !is_json(parts.headers.get(header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "request bodies must be application/json",
        ));
    }
    if limits::json_depth(&body) > proxy.json_depth_max {
        return Err(limits::json_too_deep(proxy.json_depth_max));
    }
    let message =
        transcode::build_request(&route.request, &matched.captures, parts.uri.query(), &body)
            .map_err(|error| match error {
                TranscodeError::InvalidJson(_) => {
                    ApiError::bad_request(ErrorCode::InvalidJson, error.to_string())
                }
                other => ApiError::bad_request(ErrorCode::InvalidArgument, other.to_string()),
            })?;
    // Before the cache and the backend: a request the contract refuses costs neither.
    proxy
        .validation
        .check(route, &message)
        .map_err(|invalid| ApiError::bad_request(ErrorCode::InvalidField, invalid.to_string()))?;
    let backend = proxy
        .backends
        .for_service(route.service_name())
        .ok_or_else(|| {
            // Start-up checks that every routed service has a backend; this guards the invariant.
            ApiError::unavailable(
                ErrorCode::BackendUnavailable,
                "no backend serves this route",
            )
        })?;
    let metadata = outgoing_metadata(
        parts.extensions.get::<RequestId>(),
        parts.extensions.get::<Arc<UserContext>>(),
    );
    let deadline = proxy
        .deadlines
        .get(&*route.label)
        .copied()
        .unwrap_or_else(|| backend.deadline());
    let call = BackendCall {
        backend: backend.clone(),
        route: route.clone(),
        deadline,
        metrics: proxy.metrics.clone(),
    };
    // Encoded once: a retry sends the same bytes again.
    let message = Bytes::from(message);
    let fetch = move || -> BoxFuture<'static, Result<Bytes, ApiError>> {
        Box::pin(call.run(message, metadata))
    };
    let rule = proxy
        .cache
        .rule(&route.label)
        .filter(|_| parts.method == http::Method::GET);
    let Some(rule) = rule else {
        return Ok(json_response(fetch().await?));
    };
    let user = parts.extensions.get::<Arc<UserContext>>();
    let key = cache_key(
        &route.label,
        &parts.uri,
        rule.per_user.then_some(user).flatten(),
    );
    let no_cache = parts
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"));
    let (body, served, age) = proxy.cache.get_or_fetch(key, rule, no_cache, fetch).await?;
    let mut response = json_response(body);
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(served.header_value()));
    if served != Served::Miss {
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    if served == Served::Stale {
        headers.insert(
            header::WARNING,
            HeaderValue::from_static("110 - \"Response is Stale\""),
        );
    }
    Ok(response)
}

/// One backend call of a route and the transcoding of its answer, owned so that a cached route's
/// concurrent misses can share it.
struct BackendCall {
    backend: Backend,
    route: Arc<Route>,
    deadline: std::time::Duration,
    metrics: Arc<Metrics>,
}

impl BackendCall {
    async fn run(self, message: Bytes, metadata: MetadataMap) -> Result<Bytes, ApiError> {
        let Self {
            backend,
            route,
            deadline,
            metrics,
        } = self;
        let started = tokio::time::Instant::now();
        let (result, report) = backend
            .call(
                route.grpc_path.clone(),
                message,
                metadata,
                deadline,
                route.retryable,
            )
            .await;
        metrics.count_retries(backend.name(), report);
        let response = match result {
            Ok(response) => {
                metrics.observe_backend_call(&route.service, tonic::Code::Ok, started.elapsed());
                response
            }
            Err(CallError::Refused(refused)) => {
                metrics.count_breaker_refusal(backend.name());
                return Err(ApiError::circuit_open(refused.retry_after));
            }
            Err(CallError::Status(status)) => {
                metrics.observe_backend_call(&route.service, status.code(), started.elapsed());
                tracing::debug!(code = ?status.code(), message = status.message(), "backend error");
                return Err(ApiError::from_grpc_status(&status));
            }
        };
        let json = route.answer.to_json(&response).map_err(|error| {
            tracing::error!(%error, "response transcoding failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::BadGateway,
                "the backend's response could not be encoded",
            )
        })?;
        Ok(Bytes::from(json))
    }
}

/// A cached route's key: the route, the path and query as sent, and the user when the route is
/// cached per user. Fields are separated by a byte no URI or user ID holds.
fn cache_key(route_label: &str, uri: &http::Uri, user: Option<&Arc<UserContext>>) -> String {
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let user = user.map_or("", |user| user.user_id.as_str());
    format!("{route_label}\u{0}{path}\u{0}{user}")
}

fn json_response(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        // No declared type: JSON is the only body this API takes.
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The metadata sent with every backend call: the request ID and, when authenticated, the user.
fn outgoing_metadata(
    request_id: Option<&RequestId>,
    user: Option<&Arc<UserContext>>,
) -> MetadataMap {
    let mut metadata = MetadataMap::with_capacity(4);
    // The request ID is made of safe characters only (`request_id`): its bytes are shared.
    if let Some(value) = request_id.and_then(|id| MetadataValue::try_from(id.bytes()).ok()) {
        metadata.insert(request_id::HEADER, value);
    }
    for (key, value) in user.map_or(&[][..], |user| user.forwarded()) {
        metadata.insert(*key, value.clone());
    }
    metadata
}
