//! What a run observed, in order, and its hash: the same seed must give the same trace, so the
//! hash printed at the end of a run is its fingerprint (see `docs/simulation.md`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

/// One observation, at simulated time `at`, by `host`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Simulated time since the run started.
    pub at: Duration,
    /// The observing host.
    pub host: String,
    /// What happened.
    pub what: Observation,
}

/// The kinds of observation the invariants read.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A WebSocket client of the workload started (after its host logged in): from now on it
    /// tries to connect to `gateway` until it is welcomed.
    ClientStarted {
        /// The logical subscriber.
        subscriber: usize,
        /// The gateway it connects to.
        gateway: String,
    },
    /// A client host could not log in through `gateway` before the run ended, so its workload
    /// never ran.
    LoginFailed {
        /// The gateway it asked.
        gateway: String,
    },
    /// A WebSocket subscriber connected (`resumed`: with a resume point).
    Connected {
        /// The logical subscriber (stable across reconnects).
        subscriber: usize,
        /// Whether it asked to resume.
        resumed: bool,
    },
    /// A frame a subscriber received (as JSON).
    Frame {
        /// The logical subscriber.
        subscriber: usize,
        /// The frame.
        frame: Value,
    },
    /// A subscriber's connection ended or could not be opened.
    Disconnected {
        /// The logical subscriber.
        subscriber: usize,
        /// The close code, when the server sent one.
        code: Option<u16>,
    },
    /// An event the workload published, as stored (observed when the publish returned).
    Published {
        /// When the publish began: nothing published after a revocation may reach its token.
        started: Duration,
        /// Its channel.
        channel: String,
        /// Its epoch.
        epoch: String,
        /// Its offset.
        offset: u64,
        /// The users it was addressed to (`None`: everyone).
        audience: Option<Vec<String>>,
    },
    /// An HTTP request and its outcome.
    Http {
        /// `valid` (a real token) or `invalid` (a forged one).
        token: &'static str,
        /// The path asked (`/api/auth/profile` goes to Auth; `/api/projects` and the cached
        /// `/api/projects/templates` to Project).
        path: &'static str,
        /// The `x-request-id` sent.
        request_id: String,
        /// The gateway asked.
        gateway: String,
        /// When it was sent.
        sent: Duration,
        /// The status, or `None` when no response came (the connection failed).
        status: Option<u16>,
        /// The error body's `code`, when there was one.
        code: Option<String>,
        /// The answer's `x-cache` (`hit`: from the gateway's cache, no backend call).
        cache: Option<String>,
    },
    /// A readiness probe of one gateway, observed when it ended: the answer reflects the gateway
    /// at some moment between `sent` and then.
    Readiness {
        /// The gateway.
        gateway: String,
        /// When the probe was sent.
        sent: Duration,
        /// The `event_bus` dependency's `healthy`; `None` when the probe got no readable answer
        /// (no connection, no answer within the prober's timeout, no health report).
        bus_healthy: Option<bool>,
    },
    /// Auth acknowledged revoking a subscriber's token (its `RevokeToken` returned): it has
    /// published the revocation, or keeps trying until Redis takes it.
    RevocationAcknowledged {
        /// The logical subscriber whose token it is.
        subscriber: usize,
    },
    /// A subscriber's token was revoked, and the revocation was seen (live or in history) on
    /// `auth:revocations` at this observation's time.
    Revoked {
        /// The logical subscriber whose token it was.
        subscriber: usize,
        /// The token's `jti`.
        token_id: String,
    },
    /// A fault the schedule applied.
    Fault(String),
    /// At the end of the run: how many calls a backend received with each of the workload's
    /// request IDs (every attempt of a retried call carries the request's ID).
    BackendAttempts {
        /// The backend's host.
        backend: String,
        /// Attempts by request ID.
        attempts: std::collections::BTreeMap<String, u32>,
    },
}

/// Everything observed in one run, in order.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// The observations, in the order they happened.
    pub observed: Vec<Observed>,
}

impl Trace {
    /// Appends one observation.
    pub fn push(&mut self, at: Duration, host: &str, what: Observation) {
        self.observed.push(Observed {
            at,
            host: host.to_owned(),
            what,
        });
    }

    /// FNV-1a over every observation's debug form: equal traces, equal hashes.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for observed in &self.observed {
            for byte in format!("{observed:?}\n").bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}

/// A run's trace as its hosts share it: the runner and every client host record into it (turmoil
/// runs every host on the runner's thread).
pub(crate) type SharedTrace = Arc<Mutex<Trace>>;

/// Records `what`, observed by `host` now: for a host, which turmoil tells its simulated time.
pub(crate) fn record(trace: &SharedTrace, host: &str, what: Observation) {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    record_at(trace, at, host, what);
}

/// Records `what`, observed by `host` at simulated time `at`: for the runner, which is outside
/// every host, where `turmoil::sim_elapsed` has no answer.
pub(crate) fn record_at(trace: &SharedTrace, at: Duration, host: &str, what: Observation) {
    trace
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(at, host, what);
}
