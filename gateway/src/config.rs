//! The gateway's configuration: a TOML file plus `GATEWAY_`-prefixed environment overrides,
//! validated once at start-up into a typed error. Every field and its default is documented in
//! `docs/configuration.md`.
//!
//! Environment overrides use `__` between levels: `GATEWAY_HTTP__BODY_BYTES_MAX=65536`,
//! `GATEWAY_BACKENDS__AUTH__ADDRESS=auth.internal:9000`.

use std::{collections::BTreeMap, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::{
    auth::AuthConfig,
    backends::BackendConfig,
    edge::{
        browser::{CorsConfig, SecurityHeadersConfig},
        rate_limit::RateLimitConfig,
    },
    ops::health::HealthConfig,
    proxy::{aggregate, cache::CacheConfig},
    realtime::{EventBusConfig, EventBusKind, WebSocketConfig},
    routing::{RoutesConfig, check_route_group},
    serve::{HttpConfig, ListenConfig, ShutdownConfig, tls::TlsConfig},
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

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            backends: BTreeMap::from([
                (
                    "auth".to_owned(),
                    BackendConfig::new("127.0.0.1:9000", "auth.v1.AuthService"),
                ),
                (
                    "project".to_owned(),
                    BackendConfig::new("127.0.0.1:10000", "project.v1.ProjectService"),
                ),
                (
                    "simulation".to_owned(),
                    BackendConfig::new("127.0.0.1:11000", "simulation.v1.SimulationService"),
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
            check_route_group(group).map_err(|reason| invalid(&field, &reason))?;
            positive(&field, *deadline)?;
        }
        for (path, parts) in &self.routes.aggregates {
            aggregate::check_config(path, parts)
                .map_err(|reason| invalid(&format!("routes.aggregates.{path}"), &reason))?;
        }
        for (group, rule) in &self.cache.routes {
            let field = format!("cache.routes.{group}");
            check_route_group(group).map_err(|reason| invalid(&field, &reason))?;
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
            check_route_group(group)
                .map_err(|reason| invalid(&format!("rate_limit.groups.{group}"), &reason))?;
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
