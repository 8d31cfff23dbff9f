//! The WebSocket port: the endpoints and their checks before the upgrade (`websocket`), the hub
//! that fans bus events out to connections (`hub`: queues, recovery, presence, the frame
//! protocol), and the revocation feed that closes connections and drops cached answers.

pub mod hub;
pub mod revocations;
pub mod websocket;

use serde::{Deserialize, Serialize};

use crate::field_check::{InvalidField, positive};

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
    /// Reads of a channel's history a catch-up makes (after a bus interruption, or for events a
    /// live one shows were missed) before giving up until the next gap. Default 5.
    pub history_read_attempts: u32,
    /// The wait after a catch-up's first failed history read; it doubles after each. Default 100 ms.
    pub history_read_backoff_ms: u64,
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
            history_read_attempts: 5,
            history_read_backoff_ms: 100,
        }
    }
}

impl WebSocketConfig {
    /// Checks the `[websocket]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        positive(
            "websocket.outbound_queue_len_max",
            self.outbound_queue_len_max as u64,
        )?;
        positive(
            "websocket.inbound_message_bytes_max",
            self.inbound_message_bytes_max as u64,
        )?;
        positive(
            "websocket.inbound_messages_per_second",
            self.inbound_messages_per_second.into(),
        )?;
        positive(
            "websocket.inbound_messages_burst",
            self.inbound_messages_burst.into(),
        )?;
        positive("websocket.idle_timeout_ms", self.idle_timeout_ms)?;
        positive("websocket.ping_interval_ms", self.ping_interval_ms)?;
        positive(
            "websocket.permission_check_deadline_ms",
            self.permission_check_deadline_ms,
        )?;
        positive("websocket.read_buffer_bytes", self.read_buffer_bytes as u64)?;
        positive(
            "websocket.write_buffer_bytes_max",
            self.write_buffer_bytes_max as u64,
        )?;
        if self.write_buffer_bytes >= self.write_buffer_bytes_max {
            return Err(InvalidField::new(
                "websocket.write_buffer_bytes",
                "must be less than websocket.write_buffer_bytes_max",
            ));
        }
        positive(
            "websocket.history_read_attempts",
            self.history_read_attempts.into(),
        )?;
        positive(
            "websocket.presence_heartbeat_interval_ms",
            self.presence_heartbeat_interval_ms,
        )?;
        if self.presence_ttl_ms < self.presence_heartbeat_interval_ms.saturating_mul(2) {
            return Err(InvalidField::new(
                "websocket.presence_ttl_ms",
                "must be at least twice websocket.presence_heartbeat_interval_ms",
            ));
        }
        Ok(())
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

impl EventBusConfig {
    /// Checks the `[event_bus]` section: the Redis settings when Redis is the bus.
    pub fn check(&self) -> Result<(), InvalidField> {
        if self.kind == EventBusKind::Redis {
            self.redis
                .validate()
                .map_err(|error| InvalidField::new("event_bus.redis", error.to_string()))?;
        }
        Ok(())
    }
}
