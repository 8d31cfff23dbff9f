//! Phase 0, the connection: the listeners and their accept loops, caps on open connections,
//! TLS termination, the per-connection HTTP settings, and the open-file limit the binaries
//! derive the connection cap from.

pub mod connections;
pub mod open_files;
pub mod server;
pub mod tls;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::field_check::{InvalidField, positive};

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

impl HttpConfig {
    /// Checks the `[http]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        positive("http.body_bytes_max", self.body_bytes_max as u64)?;
        positive("http.uri_bytes_max", self.uri_bytes_max as u64)?;
        positive("http.header_bytes_max", self.header_bytes_max as u64)?;
        positive("http.header_count_max", self.header_count_max as u64)?;
        positive("http.header_read_timeout_ms", self.header_read_timeout_ms)?;
        positive("http.idle_timeout_ms", self.idle_timeout_ms)?;
        positive("http.json_depth_max", self.json_depth_max as u64)
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM. Default 10,000 ms.
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 10_000,
        }
    }
}

impl ShutdownConfig {
    /// Checks the `[shutdown]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        positive("shutdown.grace_period_ms", self.grace_period_ms)
    }
}
