//! What a scenario does to the system under test: [`Fault`]s on hosts and links at scheduled
//! times, and [`Sabotage`] of the observations, which proves the invariants catch what they claim.

use mock_backends::FaultSettings;

/// A fault, applied at a scheduled time.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cut both directions between two hosts.
    Partition(String, String),
    /// Cut one direction, from the first host to the second.
    PartitionOneWay(String, String),
    /// Heal both directions between two hosts.
    Repair(String, String),
    /// Hold messages between two hosts (a latency spike) until released.
    Hold(String, String),
    /// Deliver what was held.
    Release(String, String),
    /// Stop a host; its state is lost. It is cut from every host until it restarts, so its
    /// peers get no FIN or RST: they notice by silence and timeouts.
    Crash(String),
    /// Start a crashed host again, empty, and heal its links (any partition involving it too).
    Restart(String),
    /// Set a mock backend's fault knobs (latency, error rate, hang, down); all zero turns them off.
    Backend {
        /// The backend's host (`auth`, `project`, `simulation`).
        host: String,
        /// The knobs.
        faults: FaultSettings,
    },
    /// Set a gateway's wall-clock skew through its `Clock`.
    ClockSkew {
        /// The gateway.
        host: String,
        /// Milliseconds ahead (negative: behind).
        ms: i64,
    },
}

/// Deliberate damage to the observations, to prove the invariants catch what they claim to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Subscriber 0 pretends it never received its `n`th event.
    DropEvent(usize),
    /// The gateways' retry budget for Project never runs out (a floor of 1,000 retries a second).
    NoRetryBudget,
    /// The gateways do not verify tokens locally when Auth cannot answer.
    NoLocalVerification,
    /// The gateways keep their rate limits to themselves instead of sharing them through Redis.
    LocalLimits,
    /// The gateways refuse every WebSocket upgrade: the sim's WebSocket clients present an
    /// `Origin` ([`crate::client::WEBSOCKET_ORIGIN`]), as browsers do, and this takes it off the
    /// gateways' `websocket.allowed_origins`, so the gateway's own origin check answers every
    /// upgrade 403 `origin_not_allowed`.
    RefuseUpgrades,
}
