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
    backends::{BackendConfig, check_backends},
    edge::{
        browser::{CorsConfig, SecurityHeadersConfig},
        rate_limit::RateLimitConfig,
    },
    field_check::InvalidField,
    ops::{health::HealthConfig, logs::LogConfig},
    proxy::{aggregate, cache::CacheConfig},
    realtime::{EventBusConfig, EventBusKind, WebSocketConfig},
    routing::RoutesConfig,
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
    /// The binary's log lines.
    pub log: LogConfig,
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
            log: LogConfig::default(),
        }
    }
}

impl From<InvalidField> for ConfigError {
    fn from(InvalidField { field, reason }: InvalidField) -> Self {
        Self::Invalid { field, reason }
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

    /// Checks every section (each by its owner), then what spans two sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_backends(&self.backends)?;
        self.auth.check()?;
        self.http.check()?;
        self.health.check()?;
        self.shutdown.check()?;
        self.routes.check()?;
        for (path, parts) in &self.routes.aggregates {
            aggregate::check_config(path, parts)
                .map_err(|reason| InvalidField::new(format!("routes.aggregates.{path}"), reason))?;
        }
        self.websocket.check()?;
        self.event_bus.check()?;
        self.cache.check()?;
        self.cors.check()?;
        self.security_headers.check()?;
        self.rate_limit.check()?;
        self.tls.check()?;
        self.check_cross_references()?;
        Ok(())
    }

    /// What one section says about another.
    fn check_cross_references(&self) -> Result<(), InvalidField> {
        if !self.backends.contains_key(&self.auth.backend) {
            return Err(InvalidField::new(
                "auth.backend",
                "must name a configured backend",
            ));
        }
        if self.rate_limit.shared && self.event_bus.kind != EventBusKind::Redis {
            return Err(InvalidField::new(
                "rate_limit.shared",
                "limits are shared through the event bus's Redis: needs event_bus.kind = \"redis\"",
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
