//! Configuration of the mock backends: one root [`MockConfig`] with a section per service, every
//! field defaulted and documented, validated once at start-up by [`MockConfig::validate`].

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Serialize};

pub use crate::config_error::ConfigError;
use crate::faults::FaultSettings;

/// One of the three backends.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// `auth.v1.AuthService`, default port 9000.
    #[default]
    Auth,
    /// `project.v1.ProjectService`, default port 10000.
    Project,
    /// `simulation.v1.SimulationService`, default port 11000.
    Simulation,
}

impl ServiceKind {
    /// All three, in start-up order (Auth first: the others call it).
    pub const ALL: [ServiceKind; 3] = [Self::Auth, Self::Project, Self::Simulation];

    /// The lowercase name used in config, CLI flags and the control service.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Project => "project",
            Self::Simulation => "simulation",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auth" => Ok(Self::Auth),
            "project" => Ok(Self::Project),
            "simulation" => Ok(Self::Simulation),
            other => Err(ConfigError::new(
                "service",
                format!("unknown service {other:?} (expected auth, project or simulation)"),
            )),
        }
    }
}

/// The algorithm Auth signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JwtAlgorithm {
    /// Ed25519 signatures; public keys published as a JWKS and rotatable. The default.
    #[default]
    EdDsa,
    /// HMAC-SHA256 with [`AuthConfig::hs256_secret`]; nothing is published and keys do not rotate.
    Hs256,
}

impl FromStr for JwtAlgorithm {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" => Ok(Self::EdDsa),
            "hs256" => Ok(Self::Hs256),
            other => Err(ConfigError::new(
                "auth.jwt_algorithm",
                format!("unknown algorithm {other:?} (expected eddsa or hs256)"),
            )),
        }
    }
}

/// The whole configuration of the mock backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MockConfig {
    /// Seed of every random choice: signing keys, token IDs, refresh tokens, injected errors.
    /// Default 0. The same seed and the same calls give the same results.
    pub seed: u64,
    /// The Auth service.
    pub auth: AuthConfig,
    /// The Project service.
    pub project: ProjectConfig,
    /// The Simulation service.
    pub simulation: SimulationConfig,
    /// How Project and Simulation call Auth.
    pub upstream: UpstreamConfig,
    /// gRPC server settings shared by all three.
    pub server: ServerConfig,
    /// Publishing events (when the backends are given a publisher).
    pub events: EventsConfig,
}

impl MockConfig {
    /// Checks every field; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        self.project.validate()?;
        self.simulation.validate()?;
        self.upstream.validate()?;
        self.server.validate()?;
        self.events.validate()
    }

    /// A configuration for tests: every service on `127.0.0.1:0` (a free port each).
    pub fn for_tests() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Self::default();
        config.auth.addr = any_port;
        config.project.addr = any_port;
        config.simulation.addr = any_port;
        config
    }

    /// The initial fault settings of one service.
    pub fn faults_mut(&mut self, kind: ServiceKind) -> &mut FaultSettings {
        match kind {
            ServiceKind::Auth => &mut self.auth.faults,
            ServiceKind::Project => &mut self.project.faults,
            ServiceKind::Simulation => &mut self.simulation.faults,
        }
    }

    /// The address a service binds.
    pub fn addr_mut(&mut self, kind: ServiceKind) -> &mut SocketAddr {
        match kind {
            ServiceKind::Auth => &mut self.auth.addr,
            ServiceKind::Project => &mut self.project.addr,
            ServiceKind::Simulation => &mut self.simulation.addr,
        }
    }
}

/// The Auth service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Address to bind. Default `127.0.0.1:9000`.
    pub addr: SocketAddr,
    /// Lifetime of an access token. Default 900 s.
    pub token_ttl_seconds: u64,
    /// Lifetime of a refresh token. Default 86,400 s (one day).
    pub refresh_ttl_seconds: u64,
    /// Signing algorithm. Default EdDSA.
    pub jwt_algorithm: JwtAlgorithm,
    /// The HS256 secret, at least 32 bytes. Only used with HS256. The default is a fixed
    /// development secret: never use it outside tests.
    pub hs256_secret: String,
    /// Signing keys kept after rotation (the current one included); tokens signed by older keys
    /// stop verifying. Default 3.
    pub signing_keys_max: usize,
    /// Live refresh tokens kept; the oldest is forgotten first. Default 100,000.
    pub refresh_tokens_max: usize,
    /// Revoked token IDs remembered; the oldest is forgotten first. Default 100,000.
    pub revoked_tokens_max: usize,
    /// Issued access-token IDs remembered with their user, so a revocation event can name the
    /// user; the oldest is forgotten first. Default 100,000.
    pub issued_tokens_max: usize,
    /// Permission grants kept; further grants fail RESOURCE_EXHAUSTED. Default 1,000,000.
    pub permissions_max: usize,
    /// Fault settings at start. Default none.
    pub faults: FaultSettings,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
            token_ttl_seconds: 900,
            refresh_ttl_seconds: 86_400,
            jwt_algorithm: JwtAlgorithm::EdDsa,
            hs256_secret: "mock-backends-development-secret-not-for-production".to_owned(),
            signing_keys_max: 3,
            refresh_tokens_max: 100_000,
            revoked_tokens_max: 100_000,
            issued_tokens_max: 100_000,
            permissions_max: 1_000_000,
            faults: FaultSettings::default(),
        }
    }
}

/// Below this an HMAC-SHA256 key is weaker than its own output (RFC 7518 section 3.2).
const HS256_SECRET_LEN_MIN: usize = 32;

impl AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("auth.token_ttl_seconds", self.token_ttl_seconds)?;
        positive("auth.refresh_ttl_seconds", self.refresh_ttl_seconds)?;
        positive("auth.signing_keys_max", self.signing_keys_max as u64)?;
        positive("auth.refresh_tokens_max", self.refresh_tokens_max as u64)?;
        positive("auth.revoked_tokens_max", self.revoked_tokens_max as u64)?;
        positive("auth.issued_tokens_max", self.issued_tokens_max as u64)?;
        positive("auth.permissions_max", self.permissions_max as u64)?;
        if i64::try_from(self.token_ttl_seconds).is_err()
            || i64::try_from(self.refresh_ttl_seconds).is_err()
        {
            return Err(ConfigError::new("auth.token_ttl_seconds", "too large"));
        }
        if self.jwt_algorithm == JwtAlgorithm::Hs256
            && self.hs256_secret.len() < HS256_SECRET_LEN_MIN
        {
            return Err(ConfigError::new(
                "auth.hs256_secret",
                format!("must be at least {HS256_SECRET_LEN_MIN} bytes"),
            ));
        }
        self.faults.validate("auth.faults")
    }
}

/// The Project service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectConfig {
    /// Address to bind. Default `127.0.0.1:10000`.
    pub addr: SocketAddr,
    /// Projects kept; further creates fail RESOURCE_EXHAUSTED. Default 100,000.
    pub projects_max: usize,
    /// Fault settings at start. Default none.
    pub faults: FaultSettings,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 10000)),
            projects_max: 100_000,
            faults: FaultSettings::default(),
        }
    }
}

impl ProjectConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("project.projects_max", self.projects_max as u64)?;
        self.faults.validate("project.faults")
    }
}

/// The Simulation service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationConfig {
    /// Address to bind. Default `127.0.0.1:11000`.
    pub addr: SocketAddr,
    /// Time one simulation step takes, in `tokio::time`. Default 10 ms, so the default 1,000
    /// steps run for 10 s.
    pub step_ms: u64,
    /// Simulations that may run at once; starts beyond it fail RESOURCE_EXHAUSTED. Default 64.
    pub capacity: usize,
    /// Simulations kept, finished ones included; further starts fail RESOURCE_EXHAUSTED.
    /// Default 100,000.
    pub simulations_max: usize,
    /// Progress events published per second on `simulation:{id}` for each running simulation,
    /// when events are published. 1 to 1,000; default 10.
    pub updates_per_second: u32,
    /// Fault settings at start. Default none.
    pub faults: FaultSettings,
}

/// Most progress updates per second per simulation.
pub const UPDATES_PER_SECOND_MAX: u32 = 1_000;

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 11000)),
            step_ms: 10,
            capacity: 64,
            simulations_max: 100_000,
            updates_per_second: 10,
            faults: FaultSettings::default(),
        }
    }
}

impl SimulationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("simulation.step_ms", self.step_ms)?;
        positive("simulation.capacity", self.capacity as u64)?;
        positive("simulation.simulations_max", self.simulations_max as u64)?;
        if i32::try_from(self.capacity).is_err() {
            return Err(ConfigError::new("simulation.capacity", "too large"));
        }
        if !(1..=UPDATES_PER_SECOND_MAX).contains(&self.updates_per_second) {
            return Err(ConfigError::new(
                "simulation.updates_per_second",
                format!("must be 1 to {UPDATES_PER_SECOND_MAX}"),
            ));
        }
        self.faults.validate("simulation.faults")
    }
}

/// Publishing events on the bus the backends were started with (see `docs/mock-backends.md`,
/// "Events published"). Without a publisher nothing is published and these are unused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// How long one publish may take before it is abandoned and logged; bounds how long an RPC
    /// that publishes can be held up by a slow or unreachable bus. Default 1,000 ms.
    pub publish_timeout_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            publish_timeout_ms: 1_000,
        }
    }
}

impl EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("events.publish_timeout_ms", self.publish_timeout_ms)
    }
}

/// How Project and Simulation reach Auth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Auth's address as `host:port`. Default unset: the Auth started alongside, or
    /// [`AuthConfig::addr`] when Auth runs elsewhere.
    pub auth_addr: Option<String>,
    /// Limit on establishing a connection to Auth. Default 1,000 ms.
    pub connect_timeout_ms: u64,
    /// Deadline of each call to Auth. Default 2,000 ms.
    pub timeout_ms: u64,
    /// HTTP/2 keepalive ping interval on the Auth channel. Default 30,000 ms.
    pub keepalive_interval_ms: u64,
    /// How long a keepalive ping may go unanswered before the connection is dropped.
    /// Default 10,000 ms.
    pub keepalive_timeout_ms: u64,
    /// How long Project and Simulation count on Auth's "allowed" for the same user, resource
    /// and action before asking again; 0 asks every time. A permission revoked on Auth, and
    /// Auth's fault knobs, reach those calls within this time. Default 1,000 ms.
    pub permission_cache_ttl_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            auth_addr: None,
            connect_timeout_ms: 1_000,
            timeout_ms: 2_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            permission_cache_ttl_ms: 1_000,
        }
    }
}

impl UpstreamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("upstream.connect_timeout_ms", self.connect_timeout_ms)?;
        positive("upstream.timeout_ms", self.timeout_ms)?;
        positive("upstream.keepalive_interval_ms", self.keepalive_interval_ms)?;
        positive("upstream.keepalive_timeout_ms", self.keepalive_timeout_ms)?;
        if self.auth_addr.as_deref() == Some("") {
            return Err(ConfigError::new("upstream.auth_addr", "must not be empty"));
        }
        Ok(())
    }
}

/// gRPC server settings shared by the three services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// After the shutdown signal, how long in-flight calls may finish before every connection
    /// is reset. Default 5,000 ms.
    pub shutdown_grace_ms: u64,
    /// HTTP/2 keepalive ping interval on accepted connections. Default 30,000 ms.
    pub http2_keepalive_interval_ms: u64,
    /// How long a keepalive ping may go unanswered before the connection is dropped.
    /// Default 10,000 ms.
    pub http2_keepalive_timeout_ms: u64,
    /// Concurrent HTTP/2 streams (calls) per connection. Default 1,024.
    pub max_concurrent_streams: u32,
    /// `x-request-id` values remembered per service. Default 1,000.
    pub request_log_len_max: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: 5_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
            max_concurrent_streams: 1_024,
            request_log_len_max: 1_000,
        }
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(
            "server.http2_keepalive_interval_ms",
            self.http2_keepalive_interval_ms,
        )?;
        positive(
            "server.http2_keepalive_timeout_ms",
            self.http2_keepalive_timeout_ms,
        )?;
        positive(
            "server.max_concurrent_streams",
            u64::from(self.max_concurrent_streams),
        )?;
        positive(
            "server.request_log_len_max",
            self.request_log_len_max as u64,
        )
    }
}

fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_the_documented_ports() {
        let config = MockConfig::default();
        config.validate().unwrap();
        assert_eq!(config.auth.addr.port(), 9000);
        assert_eq!(config.project.addr.port(), 10000);
        assert_eq!(config.simulation.addr.port(), 11000);
        assert_eq!(config.auth.token_ttl_seconds, 900);
    }

    #[test]
    fn short_hs256_secret_is_rejected_only_when_hs256_is_used() {
        let mut config = MockConfig::default();
        config.auth.hs256_secret = "short".to_owned();
        config.validate().unwrap();
        config.auth.jwt_algorithm = JwtAlgorithm::Hs256;
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "auth.hs256_secret");
    }

    #[test]
    fn error_rate_outside_zero_to_one_is_rejected() {
        let mut config = MockConfig::default();
        config.project.faults.error_rate = 1.5;
        assert_eq!(
            config.validate().unwrap_err().field,
            "project.faults.error_rate"
        );
    }

    #[test]
    fn updates_per_second_must_be_1_to_1000() {
        let mut config = MockConfig::default();
        assert_eq!(config.simulation.updates_per_second, 10);
        for bad in [0, 1_001] {
            config.simulation.updates_per_second = bad;
            assert_eq!(
                config.validate().unwrap_err().field,
                "simulation.updates_per_second"
            );
        }
        for good in [1, 1_000] {
            config.simulation.updates_per_second = good;
            config.validate().unwrap();
        }
    }

    #[test]
    fn names_parse_back() {
        for kind in ServiceKind::ALL {
            assert_eq!(kind.as_str().parse::<ServiceKind>().unwrap(), kind);
        }
        assert_eq!(
            "HS256".parse::<JwtAlgorithm>().unwrap(),
            JwtAlgorithm::Hs256
        );
    }
}
