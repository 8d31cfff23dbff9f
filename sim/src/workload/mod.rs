//! The workload: the client hosts a scenario spawns and what each records in the trace. One file
//! per kind of client:
//!
//! - `publisher`: events on `user:u-1` through the Redis bus, every fifth addressed to `u-9`.
//! - `requests`: the `http` client's rounds of profile and Project calls (a forged token among
//!   them), and the `limited` client against the limit the gateways share through Redis.
//! - `prober`: readiness of every gateway, one prober per gateway.
//! - `subscribers`: WebSocket subscribers on `subscribers-K` hosts and the `collaborators`, each
//!   reconnecting with its resume point.
//! - `revoker`: a subscriber whose token Auth revokes mid-run, recording when the revocation shows.
//!
//! Every client host but the publisher and the prober logs in first (`login_retrying`).

use std::time::Duration;

use crate::{
    faults::Sabotage,
    topology::connections_max_for,
    trace::{Observation, SharedTrace, record},
};

mod prober;
mod publisher;
mod requests;
mod revoker;
mod subscribers;

pub use prober::{PROBE_INTERVAL, PROBE_TIMEOUT};
pub(crate) use requests::workload_attempts;

/// The clients a scenario runs: how many of each kind, and how often they ask.
#[derive(Debug, Clone)]
pub struct Workload {
    /// WebSocket subscribers, spread over the gateways (half on `user:u-1` notifications, half
    /// on simulation `s-2`).
    pub subscribers: usize,
    /// How many subscribers share one `subscribers-K` host (and its login).
    pub subscribers_per_host: usize,
    /// Collaborators on `/ws/collaboration/p-1`, numbered after the subscribers.
    pub collaborators: usize,
    /// When Auth revokes the revoker's token (`None`: no revoker).
    pub revoke_at: Option<Duration>,
    /// How long the `limited` client waits between two requests (`None`: no `limited` client).
    pub limited_interval: Option<Duration>,
    /// How often the publisher publishes.
    pub publish_interval: Duration,
    /// How long the `http` client waits between two rounds.
    pub http_interval: Duration,
}

/// What every client host of one run shares.
#[derive(Clone)]
pub(crate) struct Run {
    /// The run's seed (the publisher's and the revoker's Redis buses derive theirs from it).
    pub(crate) seed: u64,
    /// When the run ends: clients stop there.
    pub(crate) end: Duration,
    /// The gateways, `gateway-1` first: clients spread over them.
    pub(crate) gateways: Vec<String>,
    /// Where every client records what it sees.
    pub(crate) trace: SharedTrace,
    /// The scenario's sabotage, if any (subscriber 0 honours [`Sabotage::DropEvent`]).
    pub(crate) sabotage: Option<Sabotage>,
}

impl Workload {
    /// Starts the client hosts; returns their names, in the order they were created.
    ///
    /// The order is part of the run, as are the seeded draws each host makes: turmoil steps hosts
    /// in the order they were created, so any other order gives another trace. The always-there
    /// clients come first, then the subscriber hosts, the collaborators, the revoker and the
    /// `limited` client.
    pub(crate) fn spawn(&self, sim: &mut turmoil::Sim<'_>, run: &Run) -> Vec<String> {
        let mut names: Vec<String> = ["publisher", "http", "prober"].map(str::to_owned).into();
        publisher::spawn(sim, run, self.publish_interval);
        requests::spawn(sim, run, self.http_interval);
        prober::spawn(sim, run);
        names.extend(subscribers::spawn_hosts(sim, run, self));
        names.extend(subscribers::spawn_collaborators(sim, run, self));
        names.extend(revoker::spawn(sim, run, self));
        names.extend(requests::spawn_limited(sim, run, self.limited_interval));
        names
    }

    /// The connections this workload may hold on one gateway, as [`connections_max_for`] counts
    /// them: every WebSocket client (subscribers, collaborators, the revoker), and one HTTP
    /// connection for each of the `http` and `limited` clients and each client host's login.
    pub fn connections_max(&self) -> usize {
        let revoker = usize::from(self.revoke_at.is_some());
        let websockets = self.subscribers + self.collaborators + revoker;
        let subscriber_hosts = self.subscribers.div_ceil(self.subscribers_per_host.max(1));
        let logins = subscriber_hosts + usize::from(self.collaborators > 0) + revoker;
        let http_clients = 1 + usize::from(self.limited_interval.is_some()) + logins;
        connections_max_for(websockets, http_clients)
    }
}

/// Logs in as alice, retrying until the gateway and Auth answer or the run ends; a login that
/// never succeeds is recorded as [`Observation::LoginFailed`] by `host` (the invariants count it:
/// the host's workload never ran).
pub(crate) async fn login_retrying(
    gateway: &str,
    end: Duration,
    trace: &SharedTrace,
    host: &str,
) -> Option<String> {
    while turmoil::sim_elapsed().unwrap_or_default() < end {
        if let Ok(token) = crate::client::login(&format!("{gateway}:8000"), "alice").await {
            return Some(token);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let what = Observation::LoginFailed {
        gateway: gateway.to_owned(),
    };
    record(trace, host, what);
    None
}
