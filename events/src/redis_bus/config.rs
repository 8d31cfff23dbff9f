//! The `[event_bus.redis]` settings and their validation.

use super::*;

/// Configuration of the Redis bus. Every field has a default; `validate` runs at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisBusConfig {
    /// Redis address, `host:port`, dialled through the `Net` seam. Default `127.0.0.1:6379`.
    pub address: String,
    /// Events kept per channel for recovery (the Stream is trimmed with `MAXLEN ~`, and only
    /// the newest this many count as history). Default 1,000.
    pub history_len_max: usize,
    /// Live events buffered per subscription before it is told it was interrupted (and then
    /// restored, so it catches up from history). Default 1,024.
    pub subscriber_queue_len_max: usize,
    /// Bound on every Redis command, including connecting when needed: publishing and history
    /// answer `BusError::Unavailable` after this long. Default 1,000 ms.
    pub command_timeout_ms: u64,
    /// Bound on establishing a connection (dial and handshake). Default 1,000 ms.
    pub connect_timeout_ms: u64,
    /// First delay before reconnecting the pub/sub connection; doubled per failed attempt.
    /// Default 100 ms.
    pub reconnect_backoff_initial_ms: u64,
    /// Cap on the reconnect delay. Default 5,000 ms.
    pub reconnect_backoff_max_ms: u64,
    /// Interval of the `PING` that detects a silently dead pub/sub connection (its answer is
    /// bounded by `command_timeout_ms`). Default 1,000 ms.
    pub keepalive_interval_ms: u64,
    /// Seeds the epoch generator and the reconnect jitter. Give each process a different seed
    /// (the binary draws it from its seeded RNG; a simulation from its seed): epochs of one
    /// channel must never repeat. Default 0.
    pub rng_seed: u64,
}

impl Default for RedisBusConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:6379".to_owned(),
            history_len_max: 1_000,
            subscriber_queue_len_max: 1_024,
            command_timeout_ms: 1_000,
            connect_timeout_ms: 1_000,
            reconnect_backoff_initial_ms: 100,
            reconnect_backoff_max_ms: 5_000,
            keepalive_interval_ms: 1_000,
            rng_seed: 0,
        }
    }
}

/// Why a [`RedisBusConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis bus configuration: {0}")]
pub struct InvalidRedisBusConfig(&'static str);

impl RedisBusConfig {
    /// Checks the limits once, at start-up.
    pub fn validate(&self) -> Result<(), InvalidRedisBusConfig> {
        let fail = |reason| Err(InvalidRedisBusConfig(reason));
        if self
            .address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return fail("address must be host:port");
        }
        if self.history_len_max == 0 {
            return fail("history_len_max must be at least 1");
        }
        if self.subscriber_queue_len_max == 0 {
            return fail("subscriber_queue_len_max must be at least 1");
        }
        if self.command_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return fail("command_timeout_ms and connect_timeout_ms must be positive");
        }
        if self.reconnect_backoff_initial_ms == 0
            || self.reconnect_backoff_initial_ms > self.reconnect_backoff_max_ms
        {
            return fail("reconnect backoff: 0 < initial <= max");
        }
        if self.keepalive_interval_ms == 0 {
            return fail("keepalive_interval_ms must be positive");
        }
        Ok(())
    }

    pub(super) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
