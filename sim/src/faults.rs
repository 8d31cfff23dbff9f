//! What a scenario does to the system under test: [`Fault`]s on hosts and links at scheduled
//! times (applied by `inject_fault`), and [`Sabotage`] of the observations, which proves the
//! invariants catch what they claim.

use mock_backends::FaultSettings;

use crate::{SimClock, hosts::FaultKnobs};

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

/// Applies `fault` to the running simulation: links and hosts through turmoil, a backend's knobs
/// through `knobs`, a gateway's skew through its clock in `clocks`. `hosts` are every host of the
/// run (a crash cuts the crashed host from each of them, a restart heals those links).
pub(crate) fn inject_fault(
    sim: &mut turmoil::Sim<'_>,
    hosts: &[String],
    clocks: &[(String, SimClock)],
    knobs: &FaultKnobs,
    fault: &Fault,
) {
    match fault {
        Fault::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
        Fault::PartitionOneWay(a, b) => sim.partition_oneway(a.as_str(), b.as_str()),
        Fault::Repair(a, b) => {
            sim.repair(a.as_str(), b.as_str());
        }
        Fault::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
        Fault::Release(a, b) => sim.release(a.as_str(), b.as_str()),
        // A crashed host vanishes: it is cut from every other host before its runtime is dropped,
        // so the connections it held send nothing (no FIN, no RST; peers notice by silence and
        // timeouts, as after a power loss). This also keeps runs deterministic: tokio drops a
        // runtime's tasks in an order that depends on process-wide task IDs, and every segment
        // those drops sent would draw latency from the seeded RNG in that order.
        Fault::Crash(host) => {
            for other in hosts.iter().filter(|other| *other != host) {
                sim.partition(host.as_str(), other.as_str());
            }
            sim.crash(host.as_str());
        }
        Fault::Restart(host) => {
            sim.bounce(host.as_str());
            for other in hosts.iter().filter(|other| *other != host) {
                sim.repair(host.as_str(), other.as_str());
            }
        }
        Fault::Backend { host, faults } => {
            let knobs = knobs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(knob) = knobs.get(host)
                && let Err(error) = knob.set(*faults)
            {
                tracing::warn!(%host, %error, "fault knobs refused");
            }
        }
        Fault::ClockSkew { host, ms } => {
            if let Some((_, clock)) = clocks.iter().find(|(name, _)| name == host) {
                clock.set_skew_ms(*ms);
            }
        }
    }
}
