//! Health: liveness, readiness and per-dependency detail.
//!
//! A background task asks every instance of every backend `grpc.health.v1.Health/Check` for each
//! service it serves, every `health.check_interval_ms`. An instance that fails leaves the call
//! rotation until it passes again. Probes read the latest results, so a flood of probe requests
//! never becomes a flood of backend calls. The gateway is ready when every backend has an instance
//! that answered SERVING for every service at the latest check, its event bus delivers, and it is
//! not draining for shutdown.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    backends::resilience::BreakerState,
    backends::{Backend, Backends, Instance},
    drain::Drain,
    field_check::{InvalidField, positive},
    ops::metrics::Metrics,
};

/// The name of the event bus in the health report.
pub const EVENT_BUS: &str = "event_bus";

/// Mirrors the event bus's delivery status into the health report until the drain starts.
pub async fn watch_bus(
    health: Arc<Health>,
    mut status: watch::Receiver<events::BusStatus>,
    mut drain: Drain,
) {
    loop {
        let delivering = *status.borrow_and_update() == events::BusStatus::Delivering;
        health.record(
            EVENT_BUS,
            DependencyStatus {
                healthy: delivering,
                detail: if delivering {
                    "delivering"
                } else {
                    "delivery broken"
                }
                .to_owned(),
                instances: Vec::new(),
            },
        );
        tokio::select! {
            biased;
            _ = drain.started() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}

/// The latest known state of one dependency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DependencyStatus {
    /// Whether the latest check succeeded.
    pub healthy: bool,
    /// What the check saw: `SERVING`, or why not.
    pub detail: String,
    /// A backend's instances (absent for the event bus).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
}

/// The latest known state of one backend instance.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Its address.
    pub address: String,
    /// Whether its latest check succeeded; an unhealthy instance is out of the rotation.
    pub healthy: bool,
    /// What the check saw.
    pub detail: String,
    /// Its circuit breaker.
    pub breaker: BreakerState,
    /// Channels in its pool.
    pub channels: usize,
}

/// Where rate limits are decided, when they are configured to be shared through Redis.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// True while every instance's limits are decided together in Redis; false while this
    /// instance falls back to its local limits.
    pub shared: bool,
    /// Where, or why not.
    pub detail: String,
}

/// Shared health state: dependency results and the draining flag, mirrored into the metrics
/// (`gateway_backend_up`, `gateway_ready`, `gateway_draining`) as they change.
#[derive(Debug)]
pub struct Health {
    dependencies: Mutex<BTreeMap<String, DependencyStatus>>,
    rate_limits: Mutex<Option<RateLimitStatus>>,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The body of every health endpoint.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each backend's latest check, by name.
    pub dependencies: BTreeMap<String, DependencyStatus>,
    /// Shared rate limits (absent when limits are local by configuration). Falling back to
    /// local limits does not make the gateway unready: it goes on serving, less strictly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitStatus>,
}

impl Health {
    /// Health state for these backends, each "not checked yet" until the first check; changes
    /// are recorded in `metrics`.
    pub fn new(backend_names: impl IntoIterator<Item = String>, metrics: Arc<Metrics>) -> Self {
        let dependencies = backend_names
            .into_iter()
            .map(|name| {
                (
                    name,
                    DependencyStatus {
                        healthy: false,
                        detail: "not checked yet".to_owned(),
                        instances: Vec::new(),
                    },
                )
            })
            .collect();
        let health = Self {
            dependencies: Mutex::new(dependencies),
            rate_limits: Mutex::new(None),
            draining: AtomicBool::new(false),
            metrics,
        };
        health.publish_readiness();
        health
    }

    /// Records where shared rate limits are decided now.
    pub fn set_rate_limits(&self, shared: bool, detail: String) {
        *self.rate_limits.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(RateLimitStatus { shared, detail });
    }

    /// Marks the gateway as shutting down: readiness turns false so load balancers stop sending.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.publish_readiness();
    }

    /// The current report.
    pub fn report(&self) -> HealthReport {
        let dependencies = self
            .dependencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let status = if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if dependencies.values().all(|d| d.healthy) {
            "ready"
        } else {
            "not_ready"
        };
        HealthReport {
            status,
            dependencies,
            rate_limits: self
                .rate_limits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn record(&self, backend: &str, status: DependencyStatus) {
        self.metrics.set_backend_up(backend, status.healthy);
        self.dependencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(backend.to_owned(), status);
        self.publish_readiness();
    }

    /// Mirrors readiness into the metrics, as the report says it.
    fn publish_readiness(&self) {
        let status = self.report().status;
        self.metrics
            .set_readiness(status == "ready", status == "draining");
    }
}

/// Checks every backend at the configured interval until the drain starts.
pub async fn run_checks(
    health: Arc<Health>,
    backends: Backends,
    config: HealthConfig,
    metrics: Arc<Metrics>,
    mut drain: Drain,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(config.check_interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(config.check_timeout_ms);
    loop {
        tokio::select! {
            biased;
            _ = drain.started() => return,
            _ = interval.tick() => {}
        }
        let checks = backends.iter().map(|(backend, services)| async move {
            let status = check_backend(backend, &services, timeout).await;
            (backend.name().to_owned(), status)
        });
        for (name, status) in futures::future::join_all(checks).await {
            for instance in &status.instances {
                metrics.set_breaker_state(&name, &instance.address, instance.breaker);
            }
            health.record(&name, status);
        }
    }
}

/// Checks every instance; the backend is healthy when one is.
async fn check_backend(
    backend: &Backend,
    services: &[&str],
    timeout: Duration,
) -> DependencyStatus {
    let checks = backend.instances().iter().map(|instance| async move {
        let (healthy, detail) = check_instance(instance, services, timeout).await;
        instance.set_healthy(healthy);
        InstanceStatus {
            address: instance.address().to_owned(),
            healthy,
            detail,
            breaker: instance.breaker_state(),
            channels: instance.channel_count(),
        }
    });
    let instances = futures::future::join_all(checks).await;
    let serving = instances.iter().filter(|i| i.healthy).count();
    let detail = match serving {
        n if n == instances.len() => "SERVING".to_owned(),
        0 => instances
            .iter()
            .map(|i| format!("{}: {}", i.address, i.detail))
            .collect::<Vec<_>>()
            .join("; "),
        n => format!("{n} of {} instances SERVING", instances.len()),
    };
    DependencyStatus {
        healthy: serving > 0,
        detail,
        instances,
    }
}

async fn check_instance(
    instance: &Arc<Instance>,
    services: &[&str],
    timeout: Duration,
) -> (bool, String) {
    let lease = instance.lease();
    let mut client = HealthClient::new(lease.channel());
    for service in services {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: (*service).to_owned(),
        });
        request.set_timeout(timeout);
        let answer = tokio::time::timeout(timeout, client.check(request)).await;
        let detail = match answer {
            Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {
                continue;
            }
            Ok(Ok(response)) => format!("{service}: {:?}", response.get_ref().status()),
            Ok(Err(status)) => format!("{service}: {:?}: {}", status.code(), status.message()),
            Err(_) => {
                lease.note_no_answer();
                format!("{service}: no answer within {} ms", timeout.as_millis())
            }
        };
        return (false, detail);
    }
    (true, "SERVING".to_owned())
}

/// `GET /health/live`: the process is up and serving HTTP.
pub async fn live() -> Response {
    Json(serde_json::json!({ "status": "live" })).into_response()
}

/// `GET /health/ready` and `GET /health`: 200 when ready, 503 otherwise, with per-dependency detail.
pub async fn ready(State(health): State<Arc<Health>>) -> Response {
    let report = health.report();
    let status = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Dependency health checks (`grpc.health.v1`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between checks of each backend. Default 2,000 ms.
    pub check_interval_ms: u64,
    /// Deadline of one check. Default 1,000 ms.
    pub check_timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 2_000,
            check_timeout_ms: 1_000,
        }
    }
}

impl HealthConfig {
    /// Checks the `[health]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        positive("health.check_interval_ms", self.check_interval_ms)?;
        positive("health.check_timeout_ms", self.check_timeout_ms)
    }
}
