//! The invariants a scenario's trace must satisfy, each a documented function. They judge the
//! whole trace after the run (every observation carries its simulated time, so "during the run"
//! properties are checked at the time they were observed); [`check`] runs them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

mod clients;
mod delivery;
mod http;
mod limits;
mod presence;
mod readiness;
mod resilience;
mod revocation;

pub use clients::*;
pub use delivery::*;
pub use http::*;
pub use limits::*;
pub use presence::*;
pub use readiness::*;
pub use resilience::*;
pub use revocation::*;

use crate::{
    faults::Fault,
    topology::{BREAKER_OPEN_MAX, LIMITED_PATH},
    trace::{Observation, Trace},
};

/// What the invariants need to know about the scenario.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The run's length; subscribers and the prober stop there.
    pub duration: Duration,
    /// The gateway hosts.
    pub gateways: Vec<String>,
    /// The fault schedule.
    pub faults: Vec<(Duration, Fault)>,
    /// The longest an HTTP request may take.
    pub http_deadline: Duration,
    /// When the workload revokes the revoker's token, if it does.
    pub revoke_at: Option<Duration>,
    /// The gateways' retry budget: retries per call (their window outlasts the run and the
    /// per-second floor is zero; see `topology::fit_retry_budget_window`).
    pub retry_budget_ratio: f64,
    /// The limit shared through Redis that the `limited` client runs into, when it runs.
    pub shared_limit: Option<SharedLimit>,
}

/// A rate limit the gateways share through Redis, as the invariants need it.
#[derive(Debug, Clone, Copy)]
pub struct SharedLimit {
    /// The limit.
    pub limit: gateway::edge::rate_limit::Limit,
    /// How long a gateway decides locally after Redis failed to answer.
    pub retry_interval: Duration,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant.
    pub invariant: &'static str,
    /// Simulated time of the observation that broke it.
    pub at: Duration,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` at `at`.
    pub fn new(invariant: &'static str, at: Duration, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            at,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}: {}", self.at, self.invariant, self.detail)
    }
}

/// Runs every invariant.
pub fn check(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    let mut violations = Vec::new();
    violations.extend(delivery_is_ordered_complete_and_once(trace));
    violations.extend(audience_is_respected(trace));
    violations.extend(subscribers_catch_up_by_the_end(trace, expect));
    violations.extend(every_http_request_gets_one_timely_answer(trace, expect));
    violations.extend(forged_tokens_always_get_401(trace));
    violations.extend(readiness_follows_event_delivery(trace, expect));
    violations.extend(presence_converges_without_ghosts(trace, expect));
    violations.extend(revoked_tokens_get_nothing_new(trace, expect));
    violations.extend(breakers_open_on_failure_and_close_after_repair(
        trace, expect,
    ));
    violations.extend(retries_stay_within_the_budget(trace, expect));
    violations.extend(project_traffic_flows_while_auth_cannot_answer(
        trace, expect,
    ));
    violations.extend(shared_limits_hold_across_instances(trace, expect));
    violations.extend(every_started_client_is_served(trace, expect));
    violations
}

/// What the families' unit tests share: expectations, and observations to build traces from.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    use super::*;

    /// Expectations for a run of `duration_s` seconds with `faults`, on `gateway-1` alone.
    pub(crate) fn expect(duration_s: u64, faults: Vec<(Duration, Fault)>) -> Expectations {
        Expectations {
            duration: Duration::from_secs(duration_s),
            gateways: vec!["gateway-1".to_owned()],
            faults,
            http_deadline: Duration::from_secs(2),
            revoke_at: None,
            retry_budget_ratio: 0.2,
            shared_limit: None,
        }
    }

    /// A valid-token request of `path` sent at `sent` ms to `gateway-1`, and its answer.
    pub(crate) fn http(
        path: &'static str,
        sent: u64,
        status: Option<u16>,
        code: Option<&str>,
    ) -> Observation {
        Observation::Http {
            token: "valid",
            path,
            request_id: format!("h-{sent}"),
            gateway: "gateway-1".to_owned(),
            sent: at(sent),
            status,
            code: code.map(str::to_owned),
            cache: None,
        }
    }

    /// `ms` milliseconds.
    pub(crate) fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Records `frame` as received by `subscriber` at `ms`.
    pub(crate) fn frame(trace: &mut Trace, ms: u64, subscriber: usize, frame: Value) {
        trace.push(at(ms), "c", Observation::Frame { subscriber, frame });
    }

    /// Records that `subscriber` connected (without a resume point) at `ms`.
    pub(crate) fn connected(trace: &mut Trace, ms: u64, subscriber: usize) {
        let what = Observation::Connected {
            subscriber,
            resumed: false,
        };
        trace.push(at(ms), "c", what);
    }
}
