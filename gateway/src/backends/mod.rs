//! Backend connections: per configured backend, one or more instances, each with a pool of
//! lazily connected HTTP/2 channels dialled through the [`Net`] seam and its own circuit breaker
//! ([`pool`]); and the generic unary call every route uses, round robin over the instances, with
//! retries of safe calls within the backend's retry budget.

pub mod codec;
pub mod pool;
pub mod resilience;

use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use seams::{Net, adapters::NetConnector};
use tokio::time::Instant;
use tonic::{Status, metadata::MetadataMap, transport::Endpoint};

use crate::{
    backends::codec::WireCodec,
    backends::resilience::{
        BreakerConfig, RetryBudget, RetryConfig,
        breaker::{Permit, Refused},
        is_backend_failure,
        retry::is_retryable,
    },
    field_check::{InvalidField, host_port, positive},
};

pub use self::pool::{Instance, Lease, PoolConfig};

/// HTTP/2 flow-control windows on backend connections: large enough that one connection carries
/// many concurrent calls without stalling on window updates.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// One backend service: its instances, call settings and retry budget. Cheap to clone.
#[derive(Clone)]
pub struct Backend(Arc<BackendInner>);

struct BackendInner {
    name: String,
    deadline: Duration,
    instances: Vec<Arc<Instance>>,
    next: AtomicUsize,
    retry: RetryBudget,
}

/// Why a call through [`Backend::call`] got no answer from the backend.
#[derive(Debug)]
pub enum CallError {
    /// Every instance's circuit breaker is open: the call was not made.
    Refused(Refused),
    /// The backend answered with an error, or none came in time.
    Status(Status),
}

/// How a call went, for metrics: its attempts and whether a wanted retry was refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallReport {
    /// Retries made (attempts after the first).
    pub retries: u32,
    /// A retry was wanted but the budget was spent.
    pub budget_exhausted: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.0.name)
            .field("deadline", &self.0.deadline)
            .field("instances", &self.0.instances)
            .finish_non_exhaustive()
    }
}

/// Why the backend connections could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("backend {name}: invalid address {address:?}")]
pub struct BackendSetupError {
    name: String,
    address: String,
}

impl Backend {
    /// Builds the channel pools of one backend's instances (`address`, then `replicas`). Nothing
    /// is dialled until the first call, so the gateway starts (and reports not-ready) while a
    /// backend is down. Retry backoff draws from `seed`.
    pub fn connect_lazy<N: Net>(
        net: &N,
        name: &str,
        config: &BackendConfig,
        seed: u64,
    ) -> Result<Self, BackendSetupError> {
        let instances = std::iter::once(&config.address)
            .chain(&config.replicas)
            .map(|address| {
                let endpoint = Endpoint::from_shared(format!("http://{address}"))
                    .map_err(|_| BackendSetupError {
                        name: name.to_owned(),
                        address: address.clone(),
                    })?
                    // Explicit at the boundary: every timeout and window is chosen here, not
                    // inherited.
                    .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                    .http2_keep_alive_interval(Duration::from_millis(config.keepalive_interval_ms))
                    .keep_alive_timeout(Duration::from_millis(config.keepalive_timeout_ms))
                    .keep_alive_while_idle(true)
                    .initial_stream_window_size(STREAM_WINDOW_BYTES)
                    .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
                let net = net.clone();
                let connect = Box::new(move || {
                    endpoint.connect_with_connector_lazy(NetConnector(net.clone()))
                });
                Ok(Arc::new(Instance::new(
                    address.clone(),
                    connect,
                    config.pool,
                    config.breaker,
                    Duration::from_millis(config.reconnect_interval_ms),
                )))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Arc::new(BackendInner {
            name: name.to_owned(),
            deadline: Duration::from_millis(config.deadline_ms),
            instances,
            next: AtomicUsize::new(0),
            retry: RetryBudget::new(config.retry, seed),
        })))
    }

    /// The backend's name in config.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Its instances, in config order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.0.instances
    }

    /// The default deadline of a call.
    pub fn deadline(&self) -> Duration {
        self.0.deadline
    }

    /// The instances in call order: round robin from the next one, those whose latest health
    /// check passed first (the others follow, so calls still go somewhere when every check
    /// failed: checks can lag, or a health endpoint break on its own).
    fn rotation(&self) -> impl Iterator<Item = &Arc<Instance>> {
        let instances = &self.0.instances;
        let start = self.0.next.fetch_add(1, Ordering::Relaxed);
        let ring =
            move || (0..instances.len()).map(move |i| &instances[(start + i) % instances.len()]);
        ring()
            .filter(|instance| instance.is_healthy())
            .chain(ring().filter(|instance| !instance.is_healthy()))
    }

    /// A channel for a typed client (token validation, permission checks), from the first
    /// instance in [`Backend::rotation`]. Typed calls do not pass the breakers: Auth's own
    /// fallback is local verification.
    pub fn lease(&self) -> Lease {
        let instance = self.rotation().next();
        // `instances` is never empty: `address` is required.
        instance.unwrap_or(&self.0.instances[0]).lease()
    }

    /// The first instance in [`Backend::rotation`] whose breaker lets a call through, with its
    /// permit. Refused when every breaker refuses (the soonest retry is reported).
    fn choose(&self) -> Result<(Lease, Permit), Refused> {
        let mut soonest: Option<Refused> = None;
        for instance in self.rotation() {
            match instance.breaker().try_acquire() {
                Ok(permit) => return Ok((instance.lease(), permit)),
                Err(refused) => {
                    if soonest.is_none_or(|s| refused.retry_after < s.retry_after) {
                        soonest = Some(refused);
                    }
                }
            }
        }
        Err(soonest.unwrap_or(Refused {
            retry_after: Duration::from_secs(1),
        }))
    }

    /// Calls a unary method on the next available instance (round robin, through its circuit
    /// breaker; see [`Backend::choose`]), retrying a `retryable` (safe) call on
    /// UNAVAILABLE while the retry budget allows, with jittered backoff. `deadline` bounds the
    /// whole call, retries and backoff included; each attempt sends what is left of it.
    pub async fn call(
        &self,
        path: PathAndQuery,
        request: Bytes,
        metadata: MetadataMap,
        deadline: Duration,
        retryable: bool,
    ) -> (Result<Bytes, CallError>, CallReport) {
        let give_up_at = Instant::now() + deadline;
        let max_attempts = self.0.retry.config().max_attempts.max(1);
        let mut report = CallReport::default();
        self.0.retry.record_call();
        loop {
            let (lease, permit) = match self.choose() {
                Ok(chosen) => chosen,
                Err(refused) => return (Err(CallError::Refused(refused)), report),
            };
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            let result = unary(
                &lease,
                path.clone(),
                request.clone(),
                metadata.clone(),
                remaining,
            )
            .await;
            let status = match result {
                Ok(response) => {
                    permit.succeeded();
                    return (Ok(response), report);
                }
                Err(status) => status,
            };
            if !is_backend_failure(status.code()) {
                permit.succeeded();
            } else if connection_broke(&status) && !lease.first_to_report_broken_connection() {
                // Another call already reported this connection's break to the breaker.
                drop(permit);
            } else {
                permit.failed();
            }
            let attempts = report.retries + 1;
            if !retryable || !is_retryable(status.code()) || attempts >= max_attempts {
                return (Err(CallError::Status(status)), report);
            }
            if !self.0.retry.try_withdraw() {
                report.budget_exhausted = true;
                return (Err(CallError::Status(status)), report);
            }
            let wait = self.0.retry.backoff(attempts);
            if Instant::now() + wait >= give_up_at {
                return (Err(CallError::Status(status)), report);
            }
            tokio::time::sleep(wait).await;
            report.retries += 1;
        }
    }
}

/// Calls a unary method with an encoded request, once, on a leased channel, without any breaker;
/// the answer is the encoded response.
/// The deadline is sent as `grpc-timeout` and also enforced here, so a backend that never answers
/// cannot hold the request past it.
pub async fn unary(
    lease: &Lease,
    path: PathAndQuery,
    request: Bytes,
    metadata: MetadataMap,
    deadline: Duration,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(lease.channel());
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("backend not ready: {e}")))?;
        let mut request =
            tonic::Request::from_parts(metadata, tonic::Extensions::default(), request);
        request.set_timeout(deadline);
        grpc.unary(request, path, WireCodec)
            .await
            .map(tonic::Response::into_inner)
    };
    let started = Instant::now();
    let result = tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("backend deadline exceeded")));
    settle(lease, result, started, deadline)
}

/// Normalises the end of a call made on `lease`. tonic reports transport events with misleading
/// codes: its own expiry of `grpc-timeout` as CANCELLED (a deadline), and a connection that broke
/// or was closed mid-call as CANCELLED or UNKNOWN with the transport error as the status's source
/// (the backend is unavailable). None is a client cancellation: a client that goes away drops the
/// call instead. A call that got no answer within its deadline may also mean dead connections
/// (see [`Lease::note_no_answer`]). Statuses the backend itself sent pass through.
pub fn settle<T>(
    lease: &Lease,
    result: Result<T, Status>,
    started: Instant,
    deadline: Duration,
) -> Result<T, Status> {
    match result {
        Err(status)
            if status.code() == tonic::Code::DeadlineExceeded
                || (status.code() == tonic::Code::Cancelled && started.elapsed() >= deadline) =>
        {
            lease.note_no_answer();
            Err(Status::deadline_exceeded("backend deadline exceeded"))
        }
        Err(status)
            if matches!(status.code(), tonic::Code::Cancelled | tonic::Code::Unknown)
                && std::error::Error::source(&status).is_some() =>
        {
            let mut lost =
                Status::unavailable(format!("backend connection lost: {}", status.message()));
            lost.set_source(Arc::new(ConnectionBroke));
            Err(lost)
        }
        other => other,
    }
}

/// The source of the status [`settle`] gives a call whose connection broke under it.
#[derive(Debug, thiserror::Error)]
#[error("the connection to the backend broke during the call")]
pub struct ConnectionBroke;

/// Whether the call failed because its connection broke (see [`settle`]).
fn connection_broke(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|source| source.is::<ConnectionBroke>())
}

/// Every backend, and which one serves each gRPC service.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    by_name: BTreeMap<String, Backend>,
    by_service: BTreeMap<String, String>,
}

impl Backends {
    /// Builds a lazily connected channel for each configured backend.
    /// Each backend's retry backoff draws from `seed` mixed with its position.
    pub fn from_config<N: Net>(
        net: &N,
        config: &BTreeMap<String, BackendConfig>,
        seed: u64,
    ) -> Result<Self, BackendSetupError> {
        let mut backends = Self::default();
        for (index, (name, backend_config)) in config.iter().enumerate() {
            let backend_seed = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            backends.by_name.insert(
                name.clone(),
                Backend::connect_lazy(net, name, backend_config, backend_seed)?,
            );
            for service in &backend_config.services {
                backends.by_service.insert(service.clone(), name.clone());
            }
        }
        Ok(backends)
    }

    /// The backend serving a gRPC service (`auth.v1.AuthService`).
    pub fn for_service(&self, service: &str) -> Option<&Backend> {
        self.by_service
            .get(service)
            .and_then(|name| self.by_name.get(name))
    }

    /// A backend by its name in config.
    pub fn by_name(&self, name: &str) -> Option<&Backend> {
        self.by_name.get(name)
    }

    /// Every backend with the services it serves, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Backend, Vec<&str>)> {
        self.by_name.values().map(|backend| {
            let services = self
                .by_service
                .iter()
                .filter(|(_, name)| **name == backend.0.name)
                .map(|(service, _)| service.as_str())
                .collect();
            (backend, services)
        })
    }
}

/// One backend service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port` of the gRPC server (its first instance).
    pub address: String,
    /// `host:port` of further instances of the same service; calls go round robin over all.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The channel pool of each instance.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Fully qualified gRPC services it serves (`project.v1.ProjectService`). An empty list
    /// switches the backend off when loading (the way to drop a default backend).
    pub services: Vec<String>,
    /// Time allowed to open a connection. Default 1,000 ms.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Deadline of each call, sent as `grpc-timeout`. Default 5,000 ms.
    #[serde(default = "defaults::deadline_ms")]
    pub deadline_ms: u64,
    /// HTTP/2 keepalive ping interval on the connection. Default 10,000 ms.
    #[serde(default = "defaults::keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// How long to wait for a keepalive ping's answer before the connection is dropped.
    /// Default 5,000 ms.
    #[serde(default = "defaults::keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Least time between two reconnections forced by calls that got no answer within their
    /// deadline (a silently dead connection). Default 1,000 ms.
    #[serde(default = "defaults::reconnect_interval_ms")]
    pub reconnect_interval_ms: u64,
    /// The circuit breaker in front of it (`docs/resilience.md`).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Retries of safe calls and their budget (`docs/resilience.md`).
    #[serde(default)]
    pub retry: RetryConfig,
}

impl BackendConfig {
    /// A backend at `address` serving `service`, every other setting at its default.
    pub fn new(address: &str, service: &str) -> Self {
        Self {
            address: address.to_owned(),
            replicas: Vec::new(),
            pool: PoolConfig::default(),
            services: vec![service.to_owned()],
            connect_timeout_ms: defaults::connect_timeout_ms(),
            deadline_ms: defaults::deadline_ms(),
            keepalive_interval_ms: defaults::keepalive_interval_ms(),
            keepalive_timeout_ms: defaults::keepalive_timeout_ms(),
            reconnect_interval_ms: defaults::reconnect_interval_ms(),
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
        }
    }

    /// Checks one backend's settings, naming fields under `backends.{name}`.
    pub fn check(&self, name: &str) -> Result<(), InvalidField> {
        let field = |leaf: &str| format!("backends.{name}.{leaf}");
        host_port(field("address"), &self.address)?;
        for replica in &self.replicas {
            host_port(field("replicas"), replica)?;
        }
        self.pool.check(&field("pool"))?;
        if self.services.is_empty() {
            return Err(InvalidField::new(
                field("services"),
                "must name at least one service",
            ));
        }
        positive(field("connect_timeout_ms"), self.connect_timeout_ms)?;
        positive(field("deadline_ms"), self.deadline_ms)?;
        positive(field("keepalive_interval_ms"), self.keepalive_interval_ms)?;
        positive(field("keepalive_timeout_ms"), self.keepalive_timeout_ms)?;
        positive(field("reconnect_interval_ms"), self.reconnect_interval_ms)?;
        self.breaker.check(&field("breaker"))?;
        self.retry.check(&field("retry"))
    }
}

/// Checks the `[backends]` section: at least one backend, each valid, and no gRPC service served
/// by two of them.
pub fn check_backends(backends: &BTreeMap<String, BackendConfig>) -> Result<(), InvalidField> {
    if backends.is_empty() {
        return Err(InvalidField::new(
            "backends",
            "at least one backend is needed",
        ));
    }
    let mut served_by = BTreeMap::new();
    for (name, backend) in backends {
        backend.check(name)?;
        for service in &backend.services {
            if let Some(other) = served_by.insert(service, name) {
                return Err(InvalidField::new(
                    format!("backends.{name}.services"),
                    format!("{service} is already served by backend {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// The defaults of the fields serde may find missing (`BackendConfig` has no `Default`: an
/// address and services are required).
mod defaults {
    pub fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub fn deadline_ms() -> u64 {
        5_000
    }
    pub fn keepalive_interval_ms() -> u64 {
        10_000
    }
    pub fn keepalive_timeout_ms() -> u64 {
        5_000
    }
    pub fn reconnect_interval_ms() -> u64 {
        1_000
    }
}
