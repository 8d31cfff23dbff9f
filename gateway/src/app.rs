//! Assembly: builds every module's state from the config and wires the four routers. The HTTP
//! stack is assembled here, top to bottom, in the order of `docs/request-lifecycle.md`.

use std::{collections::BTreeMap, future::Future, io, sync::Arc, time::Duration};

use axum::{Router, middleware::from_fn_with_state, response::IntoResponse, routing::get};
use events::EventBus;
use prost_reflect::DescriptorPool;
use seams::{Net, NetListener, SharedClock};
use tokio::task::JoinHandle;

use crate::{
    auth::TokenValidator,
    auth::permissions::{PermissionCache, PermissionCacheConfig},
    backends::{BackendSetupError, Backends},
    config::{Config, ConfigError},
    drain::{Drain, DrainTrigger},
    edge::browser,
    edge::rate_limit::{self, RateLimits, SharedLimits},
    edge::{self, Edge},
    field_check::InvalidField,
    ops::health::{self, Health},
    ops::metrics::{self, Metrics},
    proxy::aggregate::{self, Aggregate},
    proxy::cache::ResponseCache,
    proxy::validate::{RuleError, Validation},
    proxy::{self, RouteHandler},
    realtime::WebSocketConfig,
    realtime::hub::{HistoryRetry, Hub, presence::PresenceTracker},
    realtime::revocations::RevocationLog,
    realtime::websocket::{self, WebSocketState},
    request::error::ApiError,
    request::request_id::{self, RequestIdGenerator},
    routing::{
        Route, RouteTable, RouteTableError,
        layer::{Routing, route_layer},
    },
    serve::{
        connections::{ConnectionLimits, ConnectionTimeouts},
        server::{self, Listeners, Port},
    },
};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The descriptors do not make a valid route table.
    #[error("cannot build routes: {0}")]
    Routes(#[from] RouteTableError),
    /// A request field's validation rules cannot be enforced.
    #[error("cannot enforce {0}")]
    Rules(#[from] RuleError),
    /// A backend's address is invalid.
    #[error(transparent)]
    Backend(#[from] BackendSetupError),
    /// The descriptor set file could not be read.
    #[error("cannot read descriptor set {path}: {source}")]
    DescriptorFile {
        /// The configured path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A route-group deadline names no routed service or method (a typo would silently apply
    /// the default deadline otherwise).
    #[error("{field}.{group}: no route it applies to calls this service or method")]
    UnknownRouteGroup {
        /// The setting (`routes.deadlines_ms`, `cache.routes`).
        field: &'static str,
        /// The configured group.
        group: String,
    },
    /// An aggregation route does not fit the route table.
    #[error("routes.aggregates.{path}: {reason}")]
    Aggregate {
        /// The aggregate's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// TLS is configured but cannot be set up.
    #[error("tls: {0}")]
    Tls(#[from] crate::serve::tls::TlsError),
    /// A route's service has no backend in config.
    #[error("route {route} calls {service}, which no configured backend serves")]
    UnservedRoute {
        /// The route.
        route: String,
        /// The gRPC service.
        service: String,
    },
}

/// What the gateway is given from outside: the network, the wall clock, and a seed for its RNG.
#[derive(Debug, Clone)]
pub struct Seams<N> {
    /// Where listeners bind and backend connections are dialled.
    pub net: N,
    /// Wall-clock time.
    pub clock: SharedClock,
    /// Seed of every random choice the gateway makes.
    pub seed: u64,
}

/// The gateway's state, built once.
#[derive(Clone)]
pub struct App {
    config: Arc<Config>,
    routes: Arc<RouteTable>,
    /// The request field rules, checked before every backend call.
    validation: Arc<Validation>,
    backends: Backends,
    validator: Arc<TokenValidator>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    request_ids: Arc<RequestIdGenerator>,
    bus: Arc<dyn EventBus>,
    hub: Arc<Hub>,
    /// Deadlines of the routes in a configured group, by route label.
    deadlines: Arc<BTreeMap<String, Duration>>,
    /// The response cache of configured GET routes.
    cache: ResponseCache,
    /// Aggregation routes.
    aggregates: Vec<Arc<Aggregate>>,
    /// What every request on the API, WebSocket and health ports goes through first.
    edge: Arc<Edge>,
    /// The rate limits.
    rate_limits: Arc<RateLimits>,
    /// TLS for the public ports, when configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The OpenAPI document, rendered once.
    openapi: bytes::Bytes,
    revocations: Arc<RevocationLog>,
    websocket: Arc<WebSocketState>,
    /// The one drain signal of every connection and background task.
    drain: Arc<DrainTrigger>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("routes", &self.routes.routes().len())
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// Resolves route groups (`package.Service` or `package.Service/Method`) to the routes they hold,
/// by route label: a method's entry wins over its service's. Only routes `eligible` accepts
/// count; every group must hold at least one, or `field` names the group that does not (a typo
/// would otherwise fall back to the default silently).
fn by_route_group<T: Copy>(
    routes: &RouteTable,
    groups: &BTreeMap<String, T>,
    eligible: impl Fn(&Route) -> bool,
    field: &'static str,
) -> Result<BTreeMap<String, T>, StartError> {
    let mut resolved = BTreeMap::new();
    let eligible: Vec<&Arc<Route>> = routes.routes().iter().filter(|r| eligible(r)).collect();
    for route in &eligible {
        let method = format!("{}/{}", route.service_name(), route.grpc_method.name());
        let configured = groups
            .get(&method)
            .or_else(|| groups.get(route.service_name()));
        if let Some(value) = configured {
            resolved.insert(route.label.to_string(), *value);
        }
    }
    for group in groups.keys() {
        let (service, method) = group.split_once('/').unwrap_or((group, ""));
        let known = eligible.iter().any(|route| {
            route.service_name() == service
                && (method.is_empty() || route.grpc_method.name() == method)
        });
        if !known {
            return Err(StartError::UnknownRouteGroup {
                field,
                group: group.clone(),
            });
        }
    }
    Ok(resolved)
}

/// What the route table decides: the routes, their field rules, and each configured route
/// group's setting resolved to the routes it holds (checked here, since a group that holds no
/// route is a typo the config alone cannot see).
struct RouteSettings {
    routes: RouteTable,
    validation: Validation,
    deadlines: BTreeMap<String, Duration>,
    cache: ResponseCache,
    aggregates: Vec<Arc<Aggregate>>,
    limited_groups: BTreeMap<String, usize>,
}

impl RouteSettings {
    /// Builds the route table from `descriptors` and resolves the config's route groups on it.
    fn resolve(config: &Config, descriptors: &DescriptorPool) -> Result<Self, StartError> {
        let routes = RouteTable::from_pool(descriptors, &config.auth.public_methods)?;
        for route in routes.routes() {
            if config.backend_for_service(route.service_name()).is_none() {
                return Err(StartError::UnservedRoute {
                    route: route.label.to_string(),
                    service: route.service_name().to_owned(),
                });
            }
        }
        let validation = Validation::compile(&routes)?;
        let deadlines = by_route_group(
            &routes,
            &config.routes.deadlines_ms,
            |_| true,
            "routes.deadlines_ms",
        )?
        .into_iter()
        .map(|(label, ms)| (label, Duration::from_millis(ms)))
        .collect();
        let cached = by_route_group(
            &routes,
            &config.cache.routes,
            |route| route.method == http::Method::GET,
            "cache.routes",
        )?;
        let cache = ResponseCache::new(
            config.cache.entries_max,
            cached
                .into_iter()
                .map(|(label, rule)| (label, rule.into()))
                .collect(),
        );
        let aggregates: Vec<Arc<Aggregate>> = config
            .routes
            .aggregates
            .iter()
            .map(|(path, parts)| {
                Aggregate::resolve(path, parts, &routes)
                    .map(Arc::new)
                    .map_err(|reason| StartError::Aggregate {
                        path: path.clone(),
                        reason,
                    })
            })
            .collect::<Result<_, _>>()?;
        // Routes by the index of their rate-limit group (one budget per group).
        let group_indexes: BTreeMap<String, usize> = config
            .rate_limit
            .groups
            .keys()
            .enumerate()
            .map(|(index, group)| (group.clone(), index))
            .collect();
        let limited_groups =
            by_route_group(&routes, &group_indexes, |_| true, "rate_limit.groups")?;
        Ok(Self {
            routes,
            validation,
            deadlines,
            cache,
            aggregates,
            limited_groups,
        })
    }
}

/// This instance's 32-bit ID, the seed folded: distinct per instance in production (the binary
/// seeds from the OS), fixed per run in simulation. It prefixes request IDs and names this
/// instance's presence entries, so logs and presence agree on who is who.
fn instance_id(seed: u64) -> u32 {
    (seed ^ (seed >> 32)) as u32
}

/// The WebSocket side: the hub, presence, the revocation log and the endpoints' state.
struct Realtime {
    hub: Arc<Hub>,
    revocations: Arc<RevocationLog>,
    websocket: Arc<WebSocketState>,
}

impl Realtime {
    /// Builds the hub on `bus` and what the WebSocket endpoints need; presence heartbeats start
    /// now and stop with `drain`.
    fn start(
        websocket: &WebSocketConfig,
        seed: u64,
        bus: Arc<dyn EventBus>,
        validator: Arc<TokenValidator>,
        permissions: PermissionCache,
        metrics: &Metrics,
        drain: &DrainTrigger,
    ) -> Self {
        let hub = Hub::new(
            bus.clone(),
            metrics.event_handoff(),
            HistoryRetry {
                attempts: websocket.history_read_attempts,
                backoff_initial: Duration::from_millis(websocket.history_read_backoff_ms),
            },
        );
        let presence = PresenceTracker::new(
            bus.clone(),
            format!("{:08x}", instance_id(seed)),
            Duration::from_millis(websocket.presence_ttl_ms),
        );
        presence.spawn_heartbeats(
            Duration::from_millis(websocket.presence_heartbeat_interval_ms),
            drain.watcher(),
        );
        let permissions = Arc::new(permissions);
        let revocations = RevocationLog::install(&hub, validator.clone(), permissions.clone());
        let websocket = Arc::new(WebSocketState {
            hub: hub.clone(),
            presence,
            validator: validator.clone(),
            permissions,
            config: Arc::new(websocket.clone()),
            shutdown: drain.watcher(),
            seed,
            next_connection_id: std::sync::atomic::AtomicU64::new(1),
            open_connections: metrics.websocket_connections(),
            closes: metrics.websocket_closes(),
        });
        Self {
            hub,
            revocations,
            websocket,
        }
    }
}

/// The embedded single-instance event bus (in memory), the default when no Redis is configured.
/// Its epoch derives from `seed`: a new process has no history, so it must not reuse an epoch.
pub fn embedded_bus(seed: u64) -> Arc<dyn EventBus> {
    Arc::new(events::MemoryBus::new(
        events::memory::MemoryBusConfig::default(),
        format!("{seed:016x}"),
    ))
}

/// The event bus the config asks for: in memory, or Redis dialled through `seams.net` (its
/// connection task starts now, on the current runtime).
pub fn bus_from_config<N: Net>(
    config: &crate::realtime::EventBusConfig,
    seams: &Seams<N>,
) -> Result<Arc<dyn EventBus>, StartError> {
    match config.kind {
        crate::realtime::EventBusKind::Memory => Ok(embedded_bus(seams.seed)),
        crate::realtime::EventBusKind::Redis => {
            let mut redis = config.redis.clone();
            // Epochs must never repeat across processes: seed them from this process's seed.
            redis.rng_seed ^= seams.seed;
            // Checked with the config; the bus checks its settings again itself.
            let bus = events::redis_bus::RedisBus::new(seams.net.clone(), redis)
                .map_err(|error| InvalidField::new("event_bus.redis", error.to_string()))
                .map_err(ConfigError::from)?;
            Ok(Arc::new(bus))
        }
    }
}

/// The descriptors of the built-in contracts (`proto/`).
pub fn builtin_descriptors() -> DescriptorPool {
    // The bytes are produced by our own build script; failing to decode them is a build bug.
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|error| panic!("proto crate descriptor set is corrupt: {error}"))
}

impl App {
    /// Builds the gateway from a validated config. Routes come from `descriptors`; backend
    /// connections are made lazily through `seams.net`; WebSocket events come from `bus`.
    pub fn new<N: Net>(
        config: Config,
        seams: &Seams<N>,
        descriptors: &DescriptorPool,
        bus: Arc<dyn EventBus>,
    ) -> Result<Self, StartError> {
        // The one drain signal; background tasks started here stop when it starts.
        let drain = DrainTrigger::new();
        config.validate()?;
        let RouteSettings {
            routes,
            validation,
            deadlines,
            cache,
            aggregates,
            limited_groups,
        } = RouteSettings::resolve(&config, descriptors)?;
        let tls = crate::serve::tls::acceptor(&config.tls)?;
        let openapi = bytes::Bytes::from(
            serde_json::to_vec(&crate::openapi::document(&routes, &validation, &aggregates))
                .unwrap_or_default(),
        );
        // Checked with the config; HSTS only over TLS.
        let security_headers = Arc::new(
            config
                .security_headers
                .headers(tls.is_some())
                .map_err(|reason| InvalidField::new("security_headers", reason))
                .map_err(ConfigError::from)?,
        );
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::new(
            config
                .backends
                .keys()
                .cloned()
                .chain([health::EVENT_BUS.to_owned()]),
            metrics.clone(),
        ));
        let shared_limits = config.rate_limit.shared.then(|| {
            SharedLimits::new(
                seams.net.clone(),
                &config.event_bus.redis,
                Duration::from_millis(config.rate_limit.shared_timeout_ms),
                Duration::from_millis(config.rate_limit.shared_retry_interval_ms),
                health.clone(),
                metrics.clone(),
            )
        });
        let rate_limits = RateLimits::new(
            &config.rate_limit,
            limited_groups,
            shared_limits,
            metrics.clone(),
        );
        rate_limits.spawn_forgetting_idle_keys(drain.watcher());
        let backends = Backends::from_config(&seams.net, &config.backends, seams.seed)?;
        // Checked with the config: the backend exists.
        let auth_backend = backends
            .by_name(&config.auth.backend)
            .cloned()
            .ok_or_else(|| InvalidField::new("auth.backend", "must name a configured backend"))
            .map_err(ConfigError::from)?;
        let permissions = PermissionCache::new(
            auth_backend.clone(),
            PermissionCacheConfig {
                ttl: std::time::Duration::from_millis(config.websocket.permission_cache_ttl_ms),
                entries_max: config.websocket.permission_cache_entries_max,
                deadline: std::time::Duration::from_millis(
                    config.websocket.permission_check_deadline_ms,
                ),
            },
        );
        let validator = Arc::new(TokenValidator::new(
            auth_backend,
            config.auth.clone(),
            seams.clock.clone(),
        ));
        validator.spawn_jwks_refresh(drain.watcher());
        let request_ids = Arc::new(RequestIdGenerator::new(instance_id(seams.seed)));
        let edge = Arc::new(Edge {
            request_ids: request_ids.clone(),
            metrics: metrics.clone(),
            security_headers,
            http: config.http.clone(),
        });
        let Realtime {
            hub,
            revocations,
            websocket,
        } = Realtime::start(
            &config.websocket,
            seams.seed,
            bus.clone(),
            validator.clone(),
            permissions,
            &metrics,
            &drain,
        );
        Ok(Self {
            config: Arc::new(config),
            routes: Arc::new(routes),
            validation: Arc::new(validation),
            backends,
            validator,
            metrics,
            health,
            request_ids,
            bus,
            hub,
            deadlines: Arc::new(deadlines),
            cache,
            aggregates,
            edge,
            rate_limits,
            tls,
            openapi,
            revocations,
            websocket,
            drain: Arc::new(drain),
        })
    }

    /// Builds the gateway from a config file path (or defaults) with the built-in descriptors,
    /// or those named by `routes.descriptor_set_path`.
    pub fn from_config<N: Net>(
        config: Config,
        seams: &Seams<N>,
        bus: Arc<dyn EventBus>,
    ) -> Result<Self, StartError> {
        let descriptors = match &config.routes.descriptor_set_path {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| StartError::DescriptorFile {
                    path: path.clone(),
                    source,
                })?;
                DescriptorPool::decode(bytes.as_slice()).map_err(RouteTableError::from)?
            }
            None => builtin_descriptors(),
        };
        Self::new(config, seams, &descriptors, bus)
    }

    /// TLS for the API and WebSocket ports, when configured.
    pub fn tls(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The health state.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The API router (port 8000): the stack of `docs/request-lifecycle.md`, in the order a
    /// request meets it.
    pub fn api_router(&self) -> Router {
        let proxy = Arc::new(RouteHandler {
            backends: self.backends.clone(),
            metrics: self.metrics.clone(),
            body_bytes_max: self.config.http.body_bytes_max,
            json_depth_max: self.config.http.json_depth_max,
            deadlines: self.deadlines.clone(),
            cache: self.cache.clone(),
            validation: self.validation.clone(),
        });
        let routing = Arc::new(Routing {
            table: self.routes.clone(),
            composite: self
                .aggregates
                .iter()
                .map(|aggregate| (aggregate.path().to_owned(), aggregate.label().clone()))
                .collect(),
            validator: self.validator.clone(),
        });
        let aggregates = aggregate::router(&self.aggregates, &proxy);
        let handlers = Router::new()
            .fallback(proxy::handle)
            .with_state(proxy)
            .merge(aggregates);
        stack(
            [
                // 1-5: request ID and access log, metrics, security headers, head limits,
                // panic guard.
                self.edge_step(),
                // 6: CORS, when origins are allowed.
                Box::new(|router| browser::with_cors(router, &self.config.cors)),
                // 7: the per-IP limit, when configured.
                self.per_ip_limit_step(),
                // The two endpoints beside the routes, past the protections but unrouted.
                Box::new(|routes| {
                    Router::new()
                        .route(
                            "/health",
                            get(health::ready).with_state(self.health.clone()),
                        )
                        .route(
                            "/openapi.json",
                            get(serve_openapi).with_state(self.openapi.clone()),
                        )
                        .merge(routes)
                }),
                // 8-9: route match, then authentication (one layer).
                Box::new(|router| router.layer(from_fn_with_state(routing, route_layer))),
                // 10: the per-user and per-group limits, when configured.
                Box::new(|router| {
                    if !self.rate_limits.limits_users() {
                        return router;
                    }
                    router.layer(from_fn_with_state(
                        self.rate_limits.clone(),
                        rate_limit::user_layer,
                    ))
                }),
            ],
            // 11: the final handlers: aggregates and every transcoded route.
            handlers,
        )
    }

    /// The WebSocket router (port 8001): `/ws/notifications`, `/ws/simulation/{id}`,
    /// `/ws/collaboration/{project_id}`, behind the edge and the per-IP limit.
    pub fn websocket_router(&self) -> Router {
        let endpoints = websocket::router(self.websocket.clone())
            .fallback(not_found)
            .method_not_allowed_fallback(get_only);
        stack([self.edge_step(), self.per_ip_limit_step()], endpoints)
    }

    /// The edge (phases 1-5, `crate::edge`): what every request on the API, WebSocket and
    /// health ports goes through first.
    fn edge_step(&self) -> Step<'_> {
        Box::new(|router| router.layer(from_fn_with_state(self.edge.clone(), edge::layer)))
    }

    /// The per-IP limit (phase 7), when one is configured.
    fn per_ip_limit_step(&self) -> Step<'_> {
        Box::new(|router| {
            if !self.rate_limits.limits_ips() {
                return router;
            }
            router.layer(from_fn_with_state(
                self.rate_limits.clone(),
                rate_limit::ip_layer,
            ))
        })
    }

    /// Token validation, for tests and operators.
    pub fn validator(&self) -> &Arc<TokenValidator> {
        &self.validator
    }

    /// The hub, for tests and operators.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// A watcher of the app's drain, which [`App::begin_shutdown`] starts.
    pub fn drain(&self) -> Drain {
        self.drain.watcher()
    }

    /// Prepares the Redis link of shared rate limits (nothing when limits are local), until it
    /// is ready or the drain starts.
    pub fn spawn_rate_limit_preparation(&self) -> JoinHandle<()> {
        let limits = self.rate_limits.clone();
        let mut drain = self.drain();
        tokio::spawn(async move {
            tokio::select! {
                () = limits.prepare_shared() => {}
                () = drain.started() => {}
            }
        })
    }

    /// Starts listening for Auth's revocations, until the drain starts.
    pub fn spawn_revocation_listener(&self) -> JoinHandle<()> {
        tokio::spawn(crate::realtime::revocations::listen(
            self.revocations.clone(),
            self.hub.bus().as_ref(),
            self.drain(),
        ))
    }

    /// Starts the drain: readiness turns false, listeners stop accepting, connections finish
    /// their requests, WebSocket clients are told to reconnect elsewhere, background tasks stop.
    pub fn begin_shutdown(&self) {
        self.health.start_draining();
        self.drain.start();
    }

    /// The health router (port 8002).
    pub fn health_router(&self) -> Router {
        let router = Router::new()
            .route("/health/live", get(health::live))
            .route("/health/ready", get(health::ready))
            .route("/health", get(health::ready))
            .with_state(self.health.clone())
            .fallback(not_found)
            .method_not_allowed_fallback(get_only);
        stack([self.edge_step()], router)
    }

    /// The metrics router (port 8003).
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics::render))
            .with_state(self.metrics.clone())
            .fallback(not_found)
            .method_not_allowed_fallback(get_only)
            .layer(from_fn_with_state(
                self.request_ids.clone(),
                request_id::layer,
            ))
    }

    /// Starts the background health checks (backends and the event bus), until the drain
    /// starts.
    pub fn spawn_health_checks(&self) -> JoinHandle<()> {
        let bus_watch = tokio::spawn(health::watch_bus(
            self.health.clone(),
            self.bus.status(),
            self.drain(),
        ));
        let checks = health::run_checks(
            self.health.clone(),
            self.backends.clone(),
            self.config.health.clone(),
            self.metrics.clone(),
            self.drain(),
        );
        tokio::spawn(async move {
            checks.await;
            bus_watch.abort();
        })
    }
}

/// One step of a port's stack: wraps everything below it.
type Step<'a> = Box<dyn FnOnce(Router) -> Router + 'a>;

/// Assembles a port's stack from `steps`, given in the order a request meets them, around
/// `innermost`. axum's layers wrap what is already built, so the steps are applied from the last
/// one up: the first step ends outermost.
fn stack<'a>(
    steps: impl IntoIterator<Item = Step<'a>, IntoIter: DoubleEndedIterator>,
    innermost: Router,
) -> Router {
    steps
        .into_iter()
        .rev()
        .fold(innermost, |router, step| step(router))
}

/// `GET /openapi.json`: the API's OpenAPI document (public).
async fn serve_openapi(
    axum::extract::State(document): axum::extract::State<bytes::Bytes>,
) -> axum::response::Response {
    (
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        document,
    )
        .into_response()
}

async fn not_found() -> axum::response::Response {
    ApiError::route_not_found().into_response()
}

/// 405 in the error shape for the fixed GET-only endpoints (probes, metrics).
async fn get_only() -> axum::response::Response {
    ApiError::method_not_allowed(&[http::Method::GET, http::Method::HEAD]).into_response()
}

/// Serves the four routers on listeners the caller bound until `shutdown` resolves, then drains
/// within the grace period: readiness turns false (`draining`), listeners stop accepting,
/// in-flight requests finish, and everything still running when `shutdown.grace_period_ms` ends
/// is dropped.
///
/// `http.connections_max` must be set: 0 ("derive it from the open-file limit") is for the
/// binaries to resolve first ([`crate::serve::open_files::resolve_connections_max`]), since the library
/// never reads the host's limits.
pub async fn serve<L: NetListener>(
    app: App,
    listeners: Listeners<L>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let http = &app.config().http;
    if http.connections_max == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "http.connections_max is 0 (derive it from the open-file limit): resolve it with \
             gateway::open_files::resolve_connections_max before serving, or set it",
        ));
    }
    let health_checks = app.spawn_health_checks();
    let revocations = app.spawn_revocation_listener();
    let rate_limit_preparation = app.spawn_rate_limit_preparation();
    let timeouts = ConnectionTimeouts {
        header_read: Duration::from_millis(http.header_read_timeout_ms),
        idle: Duration::from_millis(http.idle_timeout_ms),
    };
    // One count for both public ports; the health and metrics ports are not limited (probes and
    // scrapes must get through when clients have taken every place).
    let public = Some(ConnectionLimits::new(
        http.connections_max,
        http.connections_per_ip_max,
        app.metrics().connection_gauges(http.connections_max),
    ));
    let tls = app.tls().cloned();
    let servers = [
        (listeners.api, app.api_router(), public.clone(), tls.clone()),
        (listeners.websocket, app.websocket_router(), public, tls),
        (listeners.health, app.health_router(), None, None),
        (listeners.metrics, app.metrics_router(), None, None),
    ]
    .into_iter()
    .map(|(listener, router, limits, tls)| {
        let port = Port {
            limits,
            tls,
            timeouts,
        };
        tokio::spawn(server::serve_port(listener, router, port, app.drain()))
    })
    .collect::<Vec<_>>();

    shutdown.await;
    tracing::info!("shutdown requested; draining");
    app.begin_shutdown();
    let grace = Duration::from_millis(app.config().shutdown.grace_period_ms);
    let drained = tokio::time::timeout(grace, futures::future::join_all(servers)).await;
    health_checks.abort();
    revocations.abort();
    rate_limit_preparation.abort();
    match drained {
        Ok(_) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            grace_period_ms = grace.as_millis() as u64,
            "grace period over; dropping remaining connections"
        ),
    }
    Ok(())
}
