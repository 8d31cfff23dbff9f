//! The gateway's configuration: a TOML file plus `GATEWAY_`-prefixed environment overrides,
//! validated once at start-up into a typed error. Every field and its default is documented in
//! `docs/configuration.md`.
//!
//! Environment overrides use `__` between levels: `GATEWAY_HTTP__BODY_BYTES_MAX=65536`,
//! `GATEWAY_BACKENDS__AUTH__ADDRESS=auth.internal:9000`.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use crate::{
    backends::PoolConfig,
    browser::{CorsConfig, SecurityHeadersConfig},
    cache::{CacheConfig, CacheRouteConfig},
    rate_limit::RateLimitConfig,
    resilience::{BreakerConfig, RetryConfig},
    tls::TlsConfig,
};

/// The root configuration; each section belongs to one module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where each listener binds.
    pub listen: ListenConfig,
    /// Backend services by name (`auth`, `project`, `simulation`, ...).
    pub backends: BTreeMap<String, BackendConfig>,
    /// Authentication of clients.
    pub auth: AuthConfig,
    /// Limits on HTTP requests.
    pub http: HttpConfig,
    /// Dependency health checks.
    pub health: HealthConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Where routes come from.
    pub routes: RoutesConfig,
    /// The WebSocket hub.
    pub websocket: WebSocketConfig,
    /// Where WebSocket events come from.
    pub event_bus: EventBusConfig,
    /// The response cache of configured GET routes.
    pub cache: CacheConfig,
    /// Cross-origin requests from browsers.
    pub cors: CorsConfig,
    /// Security headers on every answer.
    pub security_headers: SecurityHeadersConfig,
    /// Rate limits per client IP, per user and per endpoint group.
    pub rate_limit: RateLimitConfig,
    /// TLS termination on the API and WebSocket ports.
    pub tls: TlsConfig,
}

/// Listener addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// HTTP API (`/api/...`, `/health`). Default `0.0.0.0:8000`.
    pub api: SocketAddr,
    /// WebSocket (`/ws/...`). Default `0.0.0.0:8001`.
    pub websocket: SocketAddr,
    /// Health probes (`/health/live`, `/health/ready`, `/health`). Default `0.0.0.0:8002`.
    pub health: SocketAddr,
    /// Prometheus metrics (`/metrics`). Default `0.0.0.0:8003`.
    pub metrics: SocketAddr,
    /// Let several processes serve the API and WebSocket ports (`SO_REUSEPORT`; the kernel
    /// spreads connections over them). The health and metrics ports stay each process's own.
    /// Default false.
    pub reuse_port: bool,
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

/// Client authentication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The backend (a key of `backends`) whose `auth.v1.AuthService` validates tokens.
    /// Default `auth`.
    pub backend: String,
    /// gRPC methods reachable without a token, as `package.Service/Method`.
    /// Default: Auth's `Login` and `Refresh`.
    pub public_methods: Vec<String>,
    /// How long a valid token's validation is cached (never past the token's expiry).
    /// Default 30,000 ms.
    pub token_cache_ttl_ms: u64,
    /// How long a rejected token's answer is cached, so floods of one bad token cost one call.
    /// Default 5,000 ms.
    pub negative_cache_ttl_ms: u64,
    /// Most cached validations; past it, new tokens are validated without being cached.
    /// Default 100,000.
    pub token_cache_entries_max: usize,
    /// Longest bearer token accepted; longer ones get 401 without a call to Auth. Default 8,192.
    pub token_bytes_max: usize,
    /// Deadline of a `ValidateToken` call. Default 2,000 ms.
    pub validation_deadline_ms: u64,
    /// When Auth cannot answer, verify tokens locally against Auth's JWKS (valid ones pass with
    /// the user taken from the claims, others get 401). `false`: 503 while Auth is unreachable.
    /// Default `true`.
    pub local_verification: bool,
    /// The `iss` tokens must carry to be verified locally. Default `mock-auth`.
    pub issuer: String,
    /// The `aud` tokens must carry to be verified locally. Default `simulation-platform`.
    pub audience: String,
    /// Tolerance on `exp` and `nbf` in local verification, seconds. Default 5.
    pub clock_leeway_seconds: i64,
    /// How often Auth's JWKS is fetched again. Default 300,000 ms.
    pub jwks_refresh_interval_ms: u64,
    /// Least time between two fetches triggered by an unknown `kid` (and between retries until
    /// the first fetch succeeds). Default 10,000 ms.
    pub jwks_refresh_min_interval_ms: u64,
}

/// Limits on HTTP requests; each excess gets a 4xx with the error shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body (413 above). Default 1,048,576.
    pub body_bytes_max: usize,
    /// Longest request target, path plus query (414 above). Default 8,192.
    pub uri_bytes_max: usize,
    /// Largest total size of request headers, names plus values (431 above). Default 16,384.
    pub header_bytes_max: usize,
    /// Most request headers (431 above). Default 64.
    pub header_count_max: usize,
    /// Time a connection has to send a whole request head, from when the server starts waiting
    /// for it: bounds slow heads (slow loris) and idle HTTP/1.1 keep-alive connections alike.
    /// Default 10,000 ms.
    pub header_read_timeout_ms: u64,
    /// Deepest nesting of arrays and objects a JSON body may have (400 `json_too_deep` deeper),
    /// refused before parsing. Default 32.
    pub json_depth_max: usize,
    /// A connection with no request in flight for this long is closed gracefully. It is what
    /// closes idle HTTP/2 connections (hyper has no idle timeout of its own); an idle HTTP/1.1
    /// connection meets the head timeout first. Default 60,000 ms.
    pub idle_timeout_ms: u64,
    /// Open connections on the API and WebSocket ports together; past it new ones get a 503 and
    /// are closed. 0: the process's open-file limit less 1,024 (kept for backend channels, Redis
    /// and files), so the process refuses politely instead of failing to accept. Default 0.
    pub connections_max: usize,
    /// Open connections per client IP (the peer address); 0 turns the limit off. Default 0.
    pub connections_per_ip_max: usize,
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

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM. Default 10,000 ms.
    pub grace_period_ms: u64,
}

/// The WebSocket hub: limits per connection and the subscription checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Origins allowed to open WebSockets from a browser (`https://app.example.com`); `"*"`
    /// allows any. Requests without an `Origin` header (non-browser clients) are always allowed.
    /// Default: none, so browsers are refused until their origin is listed.
    pub allowed_origins: Vec<String>,
    /// Frames queued per connection before it conflates (simulation channels) or is closed as a
    /// slow consumer (others). Default 256.
    pub outbound_queue_len_max: usize,
    /// Largest client message; larger ones close the connection with 1009. Default 16,384.
    pub inbound_message_bytes_max: usize,
    /// Sustained client messages per second. Default 20.
    pub inbound_messages_per_second: u32,
    /// Burst of client messages above the sustained rate. Default 40.
    pub inbound_messages_burst: u32,
    /// Consecutive refused messages before the connection is closed with 1008. Default 20.
    pub inbound_refusals_max: u32,
    /// Close a connection that sent nothing (not even a pong) for this long. Default 60,000 ms.
    pub idle_timeout_ms: u64,
    /// Interval of server pings. Default 20,000 ms.
    pub ping_interval_ms: u64,
    /// How long a `CheckPermission` answer is reused. Default 10,000 ms.
    pub permission_cache_ttl_ms: u64,
    /// Most cached permission answers. Default 100,000.
    pub permission_cache_entries_max: usize,
    /// Deadline of a `CheckPermission` call. Default 2,000 ms.
    pub permission_check_deadline_ms: u64,
    /// Bytes a connection's reader allocates up front. Default 1,024 (the library's 128 KiB
    /// default is sized for throughput, not for 100,000 idle connections).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write is flushed; 0 writes every frame at once and keeps no
    /// buffer between frames. Default 0.
    pub write_buffer_bytes: usize,
    /// Most bytes a connection may hold unwritten before sends fail. Default 262,144.
    pub write_buffer_bytes_max: usize,
    /// At shutdown, clients are told to reconnect after a random delay up to this. Default 5,000 ms.
    pub reconnect_jitter_ms: u64,
    /// How often this instance extends the presence entries of its collaboration connections.
    /// Default 5,000 ms.
    pub presence_heartbeat_interval_ms: u64,
    /// How long a presence entry lives without a heartbeat: an instance that dies leaves no
    /// ghost for longer than this. At least twice the heartbeat interval. Default 15,000 ms.
    pub presence_ttl_ms: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            outbound_queue_len_max: 256,
            inbound_message_bytes_max: 16_384,
            inbound_messages_per_second: 20,
            inbound_messages_burst: 40,
            inbound_refusals_max: 20,
            idle_timeout_ms: 60_000,
            ping_interval_ms: 20_000,
            permission_cache_ttl_ms: 10_000,
            permission_cache_entries_max: 100_000,
            permission_check_deadline_ms: 2_000,
            read_buffer_bytes: 1_024,
            write_buffer_bytes: 0,
            write_buffer_bytes_max: 262_144,
            reconnect_jitter_ms: 5_000,
            presence_heartbeat_interval_ms: 5_000,
            presence_ttl_ms: 15_000,
        }
    }
}

/// Which event bus the hub reads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventBusKind {
    /// In process: one gateway instance, publishers in the same process (dev stack, tests).
    #[default]
    Memory,
    /// Redis pub/sub with bounded Streams for history: several instances, backends elsewhere.
    Redis,
}

/// Where WebSocket events come from (`docs/events.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EventBusConfig {
    /// `memory` (default) or `redis`.
    pub kind: EventBusKind,
    /// The Redis bus, used when `kind = "redis"`.
    pub redis: events::redis_bus::RedisBusConfig,
}

/// Where routes come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RoutesConfig {
    /// An encoded `FileDescriptorSet` to route from instead of the built-in contracts
    /// (`protox --include-imports -o` or `protoc --include_imports -o` makes one). Default: none.
    pub descriptor_set_path: Option<std::path::PathBuf>,
    /// Deadlines of route groups, in ms, by gRPC service (`project.v1.ProjectService`) or method
    /// (`project.v1.ProjectService/ListProjects`); a method's entry wins over its service's.
    /// Routes in no group use their backend's `deadline_ms`. Default: none.
    pub deadlines_ms: BTreeMap<String, u64>,
    /// Aggregation routes (`docs/resilience.md`): by the aggregate's path (`/api/dashboard`), its
    /// parts by name, each a GET route's path and query (`/api/projects?page_size=5`), called
    /// in parallel. Default: none.
    pub aggregates: BTreeMap<String, BTreeMap<String, String>>,
}

/// Whether `group` names a gRPC service (`package.Service`) or method (`package.Service/Method`).
fn is_route_group(group: &str) -> bool {
    match group.split_once('/') {
        Some((service, method)) => {
            service.contains('.') && !method.is_empty() && !method.contains('/')
        }
        None => group.contains('.'),
    }
}

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

impl Default for Config {
    fn default() -> Self {
        let backend = |address: &str, service: &str| BackendConfig {
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
        };
        Self {
            listen: ListenConfig::default(),
            backends: BTreeMap::from([
                (
                    "auth".to_owned(),
                    backend("127.0.0.1:9000", "auth.v1.AuthService"),
                ),
                (
                    "project".to_owned(),
                    backend("127.0.0.1:10000", "project.v1.ProjectService"),
                ),
                (
                    "simulation".to_owned(),
                    backend("127.0.0.1:11000", "simulation.v1.SimulationService"),
                ),
            ]),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            health: HealthConfig::default(),
            shutdown: ShutdownConfig::default(),
            routes: RoutesConfig::default(),
            websocket: WebSocketConfig::default(),
            event_bus: EventBusConfig::default(),
            cache: CacheConfig::default(),
            cors: CorsConfig::default(),
            security_headers: SecurityHeadersConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        Self {
            api: any(8000),
            websocket: any(8001),
            health: any(8002),
            metrics: any(8003),
            reuse_port: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            backend: "auth".to_owned(),
            public_methods: vec![
                "auth.v1.AuthService/Login".to_owned(),
                "auth.v1.AuthService/Refresh".to_owned(),
            ],
            token_cache_ttl_ms: 30_000,
            negative_cache_ttl_ms: 5_000,
            token_cache_entries_max: 100_000,
            token_bytes_max: 8_192,
            validation_deadline_ms: 2_000,
            local_verification: true,
            issuer: "mock-auth".to_owned(),
            audience: "simulation-platform".to_owned(),
            clock_leeway_seconds: 5,
            jwks_refresh_interval_ms: 300_000,
            jwks_refresh_min_interval_ms: 10_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_bytes_max: 1_048_576,
            uri_bytes_max: 8_192,
            header_bytes_max: 16_384,
            header_count_max: 64,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            json_depth_max: 32,
            connections_max: 0,
            connections_per_ip_max: 0,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 2_000,
            check_timeout_ms: 1_000,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 10_000,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong shape.
    #[error("cannot load configuration: {0}")]
    Load(Box<figment::Error>),
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// The offending field, dotted (`http.body_bytes_max`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Loads the defaults, then `path` (if given), then `GATEWAY_*` environment variables, and
    /// validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        // `GATEWAY_CONFIG` names the file (read by the binary), not a field.
        let mut config: Config = figment
            .merge(Env::prefixed("GATEWAY_").ignore(&["config"]).split("__"))
            .extract()
            .map_err(|error| ConfigError::Load(Box::new(error)))?;
        // Sources merge into the defaults, so a default backend cannot be deleted from a file;
        // `services = []` switches it off instead.
        config
            .backends
            .retain(|_, backend| !backend.services.is_empty());
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let positive = |field: &str, value: u64| {
            if value == 0 {
                Err(invalid(field, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        if self.backends.is_empty() {
            return Err(invalid("backends", "at least one backend is needed"));
        }
        let mut seen_services = BTreeMap::new();
        for (name, backend) in &self.backends {
            let field = |leaf: &str| format!("backends.{name}.{leaf}");
            for (leaf, address) in std::iter::once(("address", &backend.address))
                .chain(backend.replicas.iter().map(|a| ("replicas", a)))
            {
                match address.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                    _ => return Err(invalid(&field(leaf), "must be host:port")),
                }
            }
            positive(
                &field("pool.min_channels"),
                backend.pool.min_channels as u64,
            )?;
            positive(
                &field("pool.streams_per_channel"),
                backend.pool.streams_per_channel as u64,
            )?;
            if backend.pool.max_channels < backend.pool.min_channels {
                return Err(invalid(
                    &field("pool.max_channels"),
                    "must not be below pool.min_channels",
                ));
            }
            if backend.services.is_empty() {
                return Err(invalid(
                    &field("services"),
                    "must name at least one service",
                ));
            }
            for service in &backend.services {
                if let Some(other) = seen_services.insert(service.clone(), name.clone()) {
                    return Err(invalid(
                        &field("services"),
                        &format!("{service} is already served by backend {other}"),
                    ));
                }
            }
            positive(&field("connect_timeout_ms"), backend.connect_timeout_ms)?;
            positive(&field("deadline_ms"), backend.deadline_ms)?;
            positive(
                &field("keepalive_interval_ms"),
                backend.keepalive_interval_ms,
            )?;
            positive(&field("keepalive_timeout_ms"), backend.keepalive_timeout_ms)?;
            positive(
                &field("reconnect_interval_ms"),
                backend.reconnect_interval_ms,
            )?;
            let share = |leaf: &str, value: f64| {
                if (0.0..=1.0).contains(&value) {
                    Ok(())
                } else {
                    Err(invalid(&field(leaf), "must be between 0.0 and 1.0"))
                }
            };
            let breaker = &backend.breaker;
            share("breaker.failure_ratio", breaker.failure_ratio)?;
            positive(
                &field("breaker.consecutive_failures"),
                breaker.consecutive_failures.into(),
            )?;
            positive(&field("breaker.window_ms"), breaker.window_ms)?;
            positive(&field("breaker.open_ms"), breaker.open_ms)?;
            positive(&field("breaker.open_max_ms"), breaker.open_max_ms)?;
            positive(
                &field("breaker.half_open_probes"),
                breaker.half_open_probes.into(),
            )?;
            let retry = &backend.retry;
            positive(&field("retry.max_attempts"), retry.max_attempts.into())?;
            share("retry.budget_ratio", retry.budget_ratio)?;
            positive(&field("retry.budget_window_ms"), retry.budget_window_ms)?;
            if retry.backoff_initial_ms > retry.backoff_max_ms {
                return Err(invalid(
                    &field("retry.backoff_initial_ms"),
                    "must not exceed retry.backoff_max_ms",
                ));
            }
        }
        for (group, deadline) in &self.routes.deadlines_ms {
            let field = format!("routes.deadlines_ms.{group}");
            if !is_route_group(group) {
                return Err(invalid(
                    &field,
                    "must name a gRPC service (package.Service) or method (package.Service/Method)",
                ));
            }
            positive(&field, *deadline)?;
        }
        for (path, parts) in &self.routes.aggregates {
            crate::aggregate::check_config(path, parts)
                .map_err(|reason| invalid(&format!("routes.aggregates.{path}"), &reason))?;
        }
        for (group, rule) in &self.cache.routes {
            let field = format!("cache.routes.{group}");
            if !is_route_group(group) {
                return Err(invalid(
                    &field,
                    "must name a gRPC service (package.Service) or method (package.Service/Method)",
                ));
            }
            positive(&format!("{field}.ttl_ms"), rule.ttl_ms)?;
        }
        self.cors
            .check()
            .map_err(|reason| invalid("cors.allowed_origins", &reason))?;
        self.tls.check().map_err(|reason| invalid("tls", &reason))?;
        self.rate_limit
            .check()
            .map_err(|(field, reason)| invalid(&field, &reason))?;
        if self.rate_limit.shared && self.event_bus.kind != EventBusKind::Redis {
            return Err(invalid(
                "rate_limit.shared",
                "limits are shared through the event bus's Redis: needs event_bus.kind = \"redis\"",
            ));
        }
        for group in self.rate_limit.groups.keys() {
            if !is_route_group(group) {
                return Err(invalid(
                    &format!("rate_limit.groups.{group}"),
                    "must name a gRPC service (package.Service) or method (package.Service/Method)",
                ));
            }
        }
        self.security_headers
            .headers(true)
            .map_err(|reason| invalid("security_headers", &reason))?;
        if !self.backends.contains_key(&self.auth.backend) {
            return Err(invalid("auth.backend", "must name a configured backend"));
        }
        for method in &self.auth.public_methods {
            if method
                .split_once('/')
                .is_none_or(|(s, m)| s.is_empty() || m.is_empty())
            {
                return Err(invalid(
                    "auth.public_methods",
                    "each entry must be package.Service/Method",
                ));
            }
        }
        positive("auth.token_cache_ttl_ms", self.auth.token_cache_ttl_ms)?;
        positive("auth.token_bytes_max", self.auth.token_bytes_max as u64)?;
        positive(
            "auth.jwks_refresh_interval_ms",
            self.auth.jwks_refresh_interval_ms,
        )?;
        positive(
            "auth.jwks_refresh_min_interval_ms",
            self.auth.jwks_refresh_min_interval_ms,
        )?;
        if self.auth.clock_leeway_seconds < 0 {
            return Err(invalid("auth.clock_leeway_seconds", "must not be negative"));
        }
        positive(
            "auth.validation_deadline_ms",
            self.auth.validation_deadline_ms,
        )?;
        positive("http.body_bytes_max", self.http.body_bytes_max as u64)?;
        positive("http.uri_bytes_max", self.http.uri_bytes_max as u64)?;
        positive("http.header_bytes_max", self.http.header_bytes_max as u64)?;
        positive("http.header_count_max", self.http.header_count_max as u64)?;
        positive(
            "http.header_read_timeout_ms",
            self.http.header_read_timeout_ms,
        )?;
        positive("http.idle_timeout_ms", self.http.idle_timeout_ms)?;
        positive("http.json_depth_max", self.http.json_depth_max as u64)?;
        positive("health.check_interval_ms", self.health.check_interval_ms)?;
        positive("health.check_timeout_ms", self.health.check_timeout_ms)?;
        positive("shutdown.grace_period_ms", self.shutdown.grace_period_ms)?;
        let ws = &self.websocket;
        positive(
            "websocket.outbound_queue_len_max",
            ws.outbound_queue_len_max as u64,
        )?;
        positive(
            "websocket.inbound_message_bytes_max",
            ws.inbound_message_bytes_max as u64,
        )?;
        positive(
            "websocket.inbound_messages_per_second",
            u64::from(ws.inbound_messages_per_second),
        )?;
        positive(
            "websocket.inbound_messages_burst",
            u64::from(ws.inbound_messages_burst),
        )?;
        positive("websocket.idle_timeout_ms", ws.idle_timeout_ms)?;
        positive("websocket.ping_interval_ms", ws.ping_interval_ms)?;
        positive(
            "websocket.permission_check_deadline_ms",
            ws.permission_check_deadline_ms,
        )?;
        positive("websocket.read_buffer_bytes", ws.read_buffer_bytes as u64)?;
        positive(
            "websocket.write_buffer_bytes_max",
            ws.write_buffer_bytes_max as u64,
        )?;
        if self.event_bus.kind == EventBusKind::Redis
            && let Err(error) = self.event_bus.redis.validate()
        {
            return Err(invalid("event_bus.redis", &error.to_string()));
        }
        positive(
            "websocket.presence_heartbeat_interval_ms",
            ws.presence_heartbeat_interval_ms,
        )?;
        if ws.presence_ttl_ms < ws.presence_heartbeat_interval_ms.saturating_mul(2) {
            return Err(invalid(
                "websocket.presence_ttl_ms",
                "must be at least twice websocket.presence_heartbeat_interval_ms",
            ));
        }
        if ws.write_buffer_bytes >= ws.write_buffer_bytes_max {
            return Err(invalid(
                "websocket.write_buffer_bytes",
                "must be less than websocket.write_buffer_bytes_max",
            ));
        }
        Ok(())
    }

    /// The backend that serves a gRPC service, by the service's full name.
    pub fn backend_for_service(&self, service: &str) -> Option<(&str, &BackendConfig)> {
        self.backends
            .iter()
            .find(|(_, backend)| backend.services.iter().any(|s| s == service))
            .map(|(name, backend)| (name.as_str(), backend))
    }
}

/// Milliseconds from config as a `Duration`.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
