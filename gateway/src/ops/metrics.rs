//! Prometheus metrics (prometheus-client), served on the metrics port at `/metrics`.
//!
//! - `gateway_http_requests_total{route,method,status}` and
//!   `gateway_http_request_duration_seconds{route,method,status}`: every HTTP request, labelled by
//!   its route template (never the raw path, which would explode cardinality).
//! - `gateway_backend_call_duration_seconds{service,code}`: every gRPC call to a backend.
//! - `gateway_backend_up{backend}`: the latest health check of each backend, and of the event
//!   bus (`backend="event_bus"`), 1 or 0.
//! - `gateway_ready`, `gateway_draining`: what `/health/ready` answers, as 1 or 0.
//! - `gateway_connections_open`, `gateway_connections_max`, `gateway_connections_refused_total`:
//!   the cap on the API and WebSocket ports together.
//! - `gateway_websocket_closes_total{code}`: WebSocket connections the gateway closed, by code.
//!
//! `docs/operations.md` lists every metric, and `ops/prometheus/` the rules built on them.

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The label set of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, or `unmatched` (shared with the route: no copy per request).
    pub route: Arc<str>,
    /// The HTTP method (the standard ones without a copy per request).
    pub method: Cow<'static, str>,
    /// The response status code.
    pub status: u16,
}

/// The label set of backend call metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Full gRPC service name (shared with the route).
    pub service: Arc<str>,
    /// gRPC status code name (`Ok`, `Unavailable`, ...).
    pub code: &'static str,
}

/// The label set of per-backend gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendNameLabels {
    /// The backend's name in config.
    pub backend: String,
}

/// The label set of per-instance gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// The backend's name in config.
    pub backend: String,
    /// The instance's address.
    pub instance: String,
}

/// The label set of retry counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// The backend's name in config.
    pub backend: String,
    /// `retried`: a retry was sent; `budget_exhausted`: one was wanted but the budget was spent.
    pub outcome: &'static str,
}

/// The label set of rate-limit refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// `ip`, `user` or `group`: which limit refused.
    pub scope: &'static str,
}

/// The label set of WebSocket closes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// The close code the gateway sent (`4008` slow consumer, `4003` revoked, `1001` going away,
    /// `1008` policy, `4000` idle; `docs/protocol.md`).
    pub code: u16,
}

/// The handles the connection cap updates (shared, not copied).
#[derive(Debug, Clone, Default)]
pub struct ConnectionGauges {
    /// Connections open now on the capped ports.
    pub open: Gauge,
    /// Connections refused at the cap.
    pub refused: Counter,
}

/// The route label of a response, set by the routing layer as a response extension.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub Arc<str>);

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    backend_duration: Family<BackendLabels, Histogram>,
    backend_up: Family<BackendNameLabels, Gauge>,
    breaker_state: Family<InstanceLabels, Gauge>,
    breaker_refusals: Family<BackendNameLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    rate_limited: Family<RateLimitLabels, Counter>,
    rate_limits_shared: Gauge,
    rate_limit_local_decisions: Counter,
    websocket_connections: Gauge,
    websocket_closes: Family<CloseLabels, Counter>,
    event_handoff: Histogram,
    connections: ConnectionGauges,
    connections_max: Gauge,
    ready: Gauge,
    draining: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let backend_duration = Family::<BackendLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let backend_up = Family::<BackendNameLabels, Gauge>::default();
        let breaker_state = Family::<InstanceLabels, Gauge>::default();
        let breaker_refusals = Family::<BackendNameLabels, Counter>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let rate_limited = Family::<RateLimitLabels, Counter>::default();
        let rate_limits_shared = Gauge::default();
        let rate_limit_local_decisions = Counter::default();
        let websocket_connections = Gauge::default();
        let websocket_closes = Family::<CloseLabels, Counter>::default();
        let connections = ConnectionGauges::default();
        let connections_max = Gauge::default();
        let ready = Gauge::default();
        let draining = Gauge::default();
        registry.register(
            "gateway_websocket_closes",
            "WebSocket connections the gateway closed, by the close code it sent",
            websocket_closes.clone(),
        );
        registry.register(
            "gateway_connections_open",
            "Connections open on the API and WebSocket ports together",
            connections.open.clone(),
        );
        registry.register(
            "gateway_connections_max",
            "The cap on open connections on the API and WebSocket ports (http.connections_max)",
            connections_max.clone(),
        );
        registry.register(
            "gateway_connections_refused",
            "Connections refused at the cap (503 too_many_connections)",
            connections.refused.clone(),
        );
        registry.register(
            "gateway_ready",
            "1 while /health/ready answers 200 (every dependency healthy, not draining), else 0",
            ready.clone(),
        );
        registry.register(
            "gateway_draining",
            "1 once shutdown has begun (readiness is then false on purpose)",
            draining.clone(),
        );
        registry.register(
            "gateway_websocket_connections",
            "WebSocket connections open now",
            websocket_connections.clone(),
        );
        // 50 µs to ~1.6 s in steps of √2: fine enough to state a p99 against a few-ms target.
        let event_handoff = Histogram::new(exponential_buckets(0.000_05, 2f64.sqrt(), 31));
        registry.register(
            "gateway_event_handoff_seconds",
            "Time from the event bus receiving an event (Redis pub/sub message, or local publish) \
             to the hub having queued it for every local subscriber",
            event_handoff.clone(),
        );
        registry.register(
            "gateway_http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        registry.register(
            "gateway_http_request_duration_seconds",
            "Time from request to response head",
            http_duration.clone(),
        );
        registry.register(
            "gateway_backend_call_duration_seconds",
            "Duration of gRPC calls to backends",
            backend_duration.clone(),
        );
        registry.register(
            "gateway_backend_up",
            "Whether the latest health check of a backend succeeded",
            backend_up.clone(),
        );
        registry.register(
            "gateway_backend_breaker_state",
            "Circuit breaker of a backend instance: 0 closed, 1 open, 2 half-open (as of the latest health check)",
            breaker_state.clone(),
        );
        registry.register(
            "gateway_backend_breaker_refusals",
            "Calls answered 503 circuit_open without calling the backend",
            breaker_refusals.clone(),
        );
        registry.register(
            "gateway_backend_retries",
            "Retries of safe backend calls, and retries refused by the retry budget",
            retries.clone(),
        );
        registry.register(
            "gateway_rate_limited",
            "Requests answered 429 by a rate limit, by the limit's scope",
            rate_limited.clone(),
        );
        registry.register(
            "gateway_rate_limits_shared",
            "1 while rate limits are decided in Redis, shared by every instance; 0 while they are \
             local to this instance (by configuration, or while Redis does not answer)",
            rate_limits_shared.clone(),
        );
        registry.register(
            "gateway_rate_limit_local_decisions",
            "Requests decided by this instance's local limits because Redis, where shared limits \
             are decided, did not answer",
            rate_limit_local_decisions.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            backend_duration,
            backend_up,
            breaker_state,
            breaker_refusals,
            retries,
            rate_limited,
            rate_limits_shared,
            rate_limit_local_decisions,
            websocket_connections,
            websocket_closes,
            event_handoff,
            connections,
            connections_max,
            ready,
            draining,
        }
    }
}

impl Metrics {
    /// The histogram the hub records each event's handoff in (shared, not copied).
    pub fn event_handoff(&self) -> Histogram {
        self.event_handoff.clone()
    }

    /// Records one backend call.
    pub fn observe_backend_call(&self, service: &Arc<str>, code: tonic::Code, elapsed: Duration) {
        self.backend_duration
            .get_or_create(&BackendLabels {
                service: service.clone(),
                code: code_name(code),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a backend's health.
    pub fn set_backend_up(&self, backend: &str, up: bool) {
        self.backend_up
            .get_or_create(&BackendNameLabels {
                backend: backend.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Records a backend instance's circuit breaker state.
    pub fn set_breaker_state(
        &self,
        backend: &str,
        instance: &str,
        state: crate::backends::resilience::BreakerState,
    ) {
        self.breaker_state
            .get_or_create(&InstanceLabels {
                backend: backend.to_owned(),
                instance: instance.to_owned(),
            })
            .set(state.as_gauge());
    }

    /// Counts a request answered 429 by the limit of `scope`.
    pub fn count_rate_limited(&self, scope: &'static str) {
        self.rate_limited
            .get_or_create(&RateLimitLabels { scope })
            .inc();
    }

    /// The gauge of open WebSocket connections (shared, not copied).
    pub fn websocket_connections(&self) -> Gauge {
        self.websocket_connections.clone()
    }

    /// The counts of WebSocket closes by code (shared, not copied).
    pub fn websocket_closes(&self) -> Family<CloseLabels, Counter> {
        self.websocket_closes.clone()
    }

    /// Records the cap on open connections and hands out what the cap updates.
    pub fn connection_gauges(&self, connections_max: usize) -> ConnectionGauges {
        self.connections_max
            .set(i64::try_from(connections_max).unwrap_or(i64::MAX));
        self.connections.clone()
    }

    /// Records readiness as `/health/ready` answers it, and whether the gateway drains.
    pub fn set_readiness(&self, ready: bool, draining: bool) {
        self.ready.set(i64::from(ready));
        self.draining.set(i64::from(draining));
    }

    /// Records whether shared rate limits are decided in Redis (true) or locally (false).
    pub fn set_rate_limits_shared(&self, shared: bool) {
        self.rate_limits_shared.set(i64::from(shared));
    }

    /// Counts a request decided by local limits because Redis did not answer.
    pub fn count_rate_limit_local_decision(&self) {
        self.rate_limit_local_decisions.inc();
    }

    /// Counts a call answered 503 `circuit_open` without calling the backend.
    pub fn count_breaker_refusal(&self, backend: &str) {
        self.breaker_refusals
            .get_or_create(&BackendNameLabels {
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// Records what a call's retries were.
    pub fn count_retries(&self, backend: &str, report: crate::backends::CallReport) {
        let count = |outcome, n: u64| {
            if n > 0 {
                self.retries
                    .get_or_create(&RetryLabels {
                        backend: backend.to_owned(),
                        outcome,
                    })
                    .inc_by(n);
            }
        };
        count("retried", report.retries.into());
        count("budget_exhausted", report.budget_exhausted.into());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts and times `inner`, the answer to a request of `method`, by route, method and status.
pub async fn around<Fut>(metrics: &Metrics, method: &http::Method, inner: Fut) -> Response
where
    Fut: std::future::Future<Output = Response>,
{
    let method = method_name(method);
    let started = tokio::time::Instant::now();
    let response = inner.await;
    let route = response.extensions().get::<RouteLabel>().map_or_else(
        || UNMATCHED.get_or_init(|| Arc::from("unmatched")).clone(),
        |label| label.0.clone(),
    );
    let labels = HttpLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The route label of requests no route matched.
static UNMATCHED: OnceLock<Arc<str>> = OnceLock::new();

/// A method's label; the standard methods without an allocation.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method as M;
    Cow::Borrowed(match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => return Cow::Owned(method.as_str().to_owned()),
    })
}

/// A gRPC code's label, as `Debug` writes it (`Ok`, `Unavailable`), without formatting per call.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "Ok",
        C::Cancelled => "Cancelled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// `GET /metrics`.
pub async fn render(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_labels_are_what_debug_writes() {
        for number in 0..=16 {
            let code = tonic::Code::from_i32(number);
            assert_eq!(code_name(code), format!("{code:?}"));
        }
    }

    #[test]
    fn method_labels_are_the_method_names() {
        for method in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
        ] {
            let parsed = http::Method::from_bytes(method.as_bytes()).expect("a method");
            assert_eq!(method_name(&parsed), method);
        }
    }
}
