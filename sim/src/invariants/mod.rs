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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn expect(duration_s: u64, faults: Vec<(Duration, Fault)>) -> Expectations {
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

    fn http(path: &'static str, sent: u64, status: Option<u16>, code: Option<&str>) -> Observation {
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

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn frame(trace: &mut Trace, ms: u64, subscriber: usize, frame: Value) {
        trace.push(at(ms), "c", Observation::Frame { subscriber, frame });
    }

    fn connected(trace: &mut Trace, ms: u64, subscriber: usize) {
        let what = Observation::Connected {
            subscriber,
            resumed: false,
        };
        trace.push(at(ms), "c", what);
    }

    fn presence(ms: u64, offset: u64, action: &str, connection: &str) -> (u64, Value) {
        let event = json!({"type": "event", "channel": "project:p-1", "epoch": "e", "offset": offset,
            "data": {"type": "presence", "action": action, "member": {"connection": connection}}});
        (ms, event)
    }

    /// Two collaborators, `a.1` (0) and `a.2` (1); the second leaves at 2 s.
    fn two_collaborators(first_hears_the_leave: bool) -> Trace {
        let mut trace = Trace::default();
        let welcome =
            json!({"type": "welcome", "channel": "project:p-1", "epoch": "e", "latest_offset": 0});
        connected(&mut trace, 100, 0);
        frame(&mut trace, 110, 0, welcome.clone());
        let state = json!({"type": "presence_state", "epoch": "e", "offset": 1, "you": "a.1",
            "members": [{"connection": "a.1"}]});
        frame(&mut trace, 120, 0, state);
        connected(&mut trace, 200, 1);
        frame(&mut trace, 210, 1, welcome);
        let state = json!({"type": "presence_state", "epoch": "e", "offset": 2, "you": "a.2",
            "members": [{"connection": "a.1"}, {"connection": "a.2"}]});
        frame(&mut trace, 220, 1, state);
        let (ms, join) = presence(230, 2, "join", "a.2");
        frame(&mut trace, ms, 0, join);
        let what = Observation::Disconnected {
            subscriber: 1,
            code: Some(1000),
        };
        trace.push(at(2_000), "c", what);
        if first_hears_the_leave {
            let (ms, leave) = presence(2_010, 3, "leave", "a.2");
            frame(&mut trace, ms, 0, leave);
        }
        trace
    }

    #[test]
    fn presence_holds_when_every_change_arrives_and_catches_a_ghost() {
        let healthy = two_collaborators(true);
        assert_eq!(
            presence_converges_without_ghosts(&healthy, &expect(5, vec![])),
            []
        );
        let ghost = two_collaborators(false);
        let violations = presence_converges_without_ghosts(&ghost, &expect(5, vec![]));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("ghosts [\"a.2\"]"),
            "{violations:?}"
        );
    }

    /// A client resuming from a lost epoch is told so, then that the new epoch's first offsets
    /// cannot be delivered (history trimmed, or a replay cut short), then gets the rest: that is
    /// complete. (The invariant used to apply the second gap to the old epoch and report the new
    /// epoch's first offsets as lost.) A report that starts past the new epoch's first offset
    /// is still caught.
    #[test]
    fn a_bounded_gap_after_an_epoch_change_reports_the_new_epochs_first_offsets() {
        let trace_with_gap_from = |from: u64| {
            let mut trace = Trace::default();
            connected(&mut trace, 100, 3);
            let welcome = json!({"type": "welcome", "channel": "user:u-1", "epoch": "new", "latest_offset": 7});
            frame(&mut trace, 110, 3, welcome);
            let changed = json!({"type": "gap", "channel": "user:u-1", "from_offset": 32, "to_offset": null, "reason": "epoch_changed"});
            frame(&mut trace, 111, 3, changed);
            let missed = json!({"type": "gap", "channel": "user:u-1", "from_offset": from, "to_offset": 7, "reason": "history_trimmed"});
            frame(&mut trace, 112, 3, missed);
            let event = json!({"type": "event", "channel": "user:u-1", "epoch": "new", "offset": 8, "data": {}});
            frame(&mut trace, 113, 3, event);
            trace
        };
        assert_eq!(
            delivery_is_ordered_complete_and_once(&trace_with_gap_from(1)),
            []
        );
        let violations = delivery_is_ordered_complete_and_once(&trace_with_gap_from(3));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("leaves 1..3 unreported"),
            "{violations:?}"
        );
    }

    fn revocation_trace(second_event_started_ms: u64) -> Trace {
        let mut trace = Trace::default();
        connected(&mut trace, 100, 7);
        let welcome =
            json!({"type": "welcome", "channel": "user:u-1", "epoch": "e", "latest_offset": 0});
        frame(&mut trace, 110, 7, welcome);
        for (offset, started) in [(1, 500), (2, second_event_started_ms)] {
            let what = Observation::Published {
                started: at(started),
                channel: "user:u-1".to_owned(),
                epoch: "e".to_owned(),
                offset,
                audience: None,
            };
            trace.push(at(started + 1), "publisher", what);
        }
        let what = Observation::Revoked {
            subscriber: 7,
            token_id: "t".to_owned(),
        };
        trace.push(at(1_000), "revoker", what);
        for offset in [1, 2] {
            let event =
                json!({"type": "event", "channel": "user:u-1", "epoch": "e", "offset": offset});
            frame(&mut trace, second_event_started_ms + 5, 7, event);
        }
        trace
    }

    #[test]
    fn a_revoked_token_may_get_what_was_published_before_but_nothing_after() {
        let revoking = Expectations {
            revoke_at: Some(at(900)),
            ..expect(5, vec![])
        };
        // The second event began within the grace after the revocation: allowed.
        assert_eq!(
            revoked_tokens_get_nothing_new(&revocation_trace(1_200), &revoking),
            []
        );
        let late = revoked_tokens_get_nothing_new(&revocation_trace(2_000), &revoking);
        assert_eq!(late.len(), 1, "{late:?}");
        assert!(late[0].detail.contains("\"offset\":2"), "{late:?}");
        // A revocation the workload asked for but never saw stored is a violation too.
        let never = revoked_tokens_get_nothing_new(&Trace::default(), &revoking);
        assert_eq!(never.len(), 1, "{never:?}");
    }

    fn probe(trace: &mut Trace, sent_ms: u64, answered_ms: u64, bus_healthy: Option<bool>) {
        let what = Observation::Readiness {
            gateway: "gateway-1".to_owned(),
            sent: at(sent_ms),
            bus_healthy,
        };
        trace.push(at(answered_ms), "prober", what);
    }

    /// Probes every 500 ms of `[from_ms, to_ms)`, each answered 100 ms later with `answer(sent)`.
    fn probes(trace: &mut Trace, from_ms: u64, to_ms: u64, answer: impl Fn(u64) -> Option<bool>) {
        for sent in (from_ms..to_ms).step_by(500) {
            probe(trace, sent, sent + 100, answer(sent));
        }
    }

    #[test]
    fn readiness_is_judged_on_answers_and_on_probes_left_unanswered() {
        // gateway-1 cut from Redis from 5 s to 10 s, in a 20 s run.
        let faults = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(10_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        let healthy = |sent: u64| Some(!(6_500..10_000).contains(&sent));
        let mut trace = Trace::default();
        probes(&mut trace, 0, 20_000, healthy);
        assert_eq!(
            readiness_follows_event_delivery(&trace, &expect(20, faults.clone())),
            []
        );
        // A probe that got no answer while the path was whole is a failure; while broken, not.
        let mut unanswered = trace.clone();
        probe(&mut unanswered, 15_050, 16_050, None);
        probe(&mut unanswered, 7_050, 8_050, None);
        let violations = readiness_follows_event_delivery(&unanswered, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("no answer"), "{violations:?}");
        // Healthy while broken: caught.
        let mut lying = Trace::default();
        probes(&mut lying, 0, 20_000, |_| Some(true));
        let violations = readiness_follows_event_delivery(&lying, &expect(20, faults));
        assert!(!violations.is_empty());
        assert!(
            violations
                .iter()
                .all(|v| v.detail.contains("ready while its path to Redis is broken")),
            "{violations:?}"
        );
    }

    #[test]
    fn readiness_over_a_stretch_without_probes_is_a_violation() {
        let faults = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(10_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        // Probes only before the cut and after the recovery: the broken stretch (6.5 s to 10 s)
        // has none, so the check would pass for want of samples.
        let mut trace = Trace::default();
        probes(&mut trace, 0, 5_000, |_| Some(true));
        probes(&mut trace, 13_000, 20_000, |_| Some(true));
        let violations = readiness_follows_event_delivery(&trace, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(6_500));
        assert!(violations[0].detail.contains("broken"), "{violations:?}");
        // No probe at all: every stretch is empty (whole before, broken, whole after).
        let violations = readiness_follows_event_delivery(&Trace::default(), &expect(20, faults));
        assert_eq!(violations.len(), 2, "{violations:?}");
        // A stretch shorter than READINESS_STRETCH_JUDGED is not required to hold a probe: the
        // 2 s stretch from 3 s to 5 s here.
        let late = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(12_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        let mut trace = Trace::default();
        probes(&mut trace, 6_500, 12_000, |_| Some(false));
        probes(&mut trace, 15_000, 20_000, |_| Some(true));
        assert_eq!(
            readiness_follows_event_delivery(&trace, &expect(20, late)),
            []
        );
    }

    fn started(trace: &mut Trace, ms: u64, subscriber: usize) {
        let what = Observation::ClientStarted {
            subscriber,
            gateway: "gateway-1".to_owned(),
        };
        trace.push(at(ms), "subscribers-1", what);
    }

    fn welcomed(trace: &mut Trace, ms: u64, subscriber: usize) {
        let welcome =
            json!({"type": "welcome", "channel": "user:u-1", "epoch": "e", "latest_offset": 0});
        frame(trace, ms, subscriber, welcome);
    }

    #[test]
    fn a_started_client_never_welcomed_is_caught_unless_faults_kept_it_out() {
        let served = every_started_client_is_served;
        // Three clients start at 1 s; 0 and 1 are welcomed, 2 never is.
        let mut trace = Trace::default();
        for subscriber in 0..3 {
            started(&mut trace, 1_000, subscriber);
        }
        welcomed(&mut trace, 1_400, 0);
        welcomed(&mut trace, 1_500, 1);
        let violations = served(&trace, &expect(20, Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0]
                .detail
                .starts_with("client 2 (subscribers-1) on gateway-1"),
            "{violations:?}"
        );
        // Its gateway crashed at 2 s and restarted at 12 s, in a 20 s run: from 1 s to 2 s was
        // too short for a welcome, and after the restart (free from 16 s: the second of startup
        // and the recovery) too short for an attempt in flight plus a welcome. Excused.
        let crash = |restart_ms| {
            vec![
                (at(2_000), Fault::Crash("gateway-1".into())),
                (at(restart_ms), Fault::Restart("gateway-1".into())),
            ]
        };
        assert_eq!(served(&trace, &expect(20, crash(12_000))), []);
        // Restarted at 7 s, the gateway was free from 11 s: 9 s, enough for an attempt in
        // flight (5.25 s) and a welcome (3 s). Caught. (Restarted at 8 s, 8 s would not be.)
        assert_eq!(served(&trace, &expect(20, crash(8_000))), []);
        let violations = served(&trace, &expect(20, crash(7_000)));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("from 11s to 20s"),
            "{violations:?}"
        );
        // Cut from Redis, or Auth unreachable, from 4.5 s to the end: 1 s to 4.5 s was free
        // long enough. Caught either way.
        for fault in [
            Fault::Partition("gateway-1".into(), "redis".into()),
            Fault::Hold("gateway-1".into(), "auth".into()),
        ] {
            let violations = served(&trace, &expect(20, vec![(at(4_500), fault)]));
            assert_eq!(violations.len(), 1, "{violations:?}");
        }
        // A fault on the other gateway or between other hosts excuses nothing.
        let elsewhere = vec![
            (at(1_500), Fault::Crash("gateway-2".into())),
            (at(1_600), Fault::Partition("auth".into(), "project".into())),
        ];
        assert_eq!(served(&trace, &expect(20, elsewhere)).len(), 1);
    }

    /// Auth acknowledged the revocation, and Redis crashed before anyone saw it: Redis lost it, so
    /// it is judged from the restart (the gateways then treat the lost epoch as revocations
    /// missed). Without the crash, a revocation never seen is still a violation.
    #[test]
    fn a_revocation_redis_lost_in_a_crash_counts_from_the_restart() {
        let mut trace = Trace::default();
        let welcome =
            json!({"type": "welcome", "channel": "user:u-1", "epoch": "e", "latest_offset": 0});
        frame(&mut trace, 100, 7, welcome);
        let what = Observation::RevocationAcknowledged { subscriber: 7 };
        trace.push(at(5_600), "revoker", what);
        let published = |offset, started_ms| Observation::Published {
            started: at(started_ms),
            channel: "user:u-1".to_owned(),
            epoch: "e".to_owned(),
            offset,
            audience: None,
        };
        trace.push(at(5_700), "publisher", published(1, 5_700));
        trace.push(at(7_100), "publisher", published(2, 7_100));
        let event = |offset| json!({"type": "event", "channel": "user:u-1", "epoch": "e", "offset": offset, "data": {}});
        frame(&mut trace, 5_750, 7, event(1));
        let crash = vec![
            (at(5_800), Fault::Crash("redis".into())),
            (at(6_500), Fault::Restart("redis".into())),
        ];
        let revoking = |faults| Expectations {
            revoke_at: Some(at(5_600)),
            ..expect(20, faults)
        };
        // Lost in the crash: what was published before the restart may arrive; nothing after.
        assert_eq!(
            revoked_tokens_get_nothing_new(&trace, &revoking(crash.clone())),
            []
        );
        let mut late = trace.clone();
        frame(&mut late, 7_150, 7, event(2));
        let violations = revoked_tokens_get_nothing_new(&late, &revoking(crash));
        assert_eq!(violations.len(), 1, "{violations:?}");
        // No crash: a revocation nobody saw is a violation.
        let violations = revoked_tokens_get_nothing_new(&trace, &revoking(Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("never appeared"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_revoked_client_is_judged_until_its_revocation_and_a_failed_login_always() {
        let mut trace = Trace::default();
        started(&mut trace, 1_000, 7);
        let what = Observation::Revoked {
            subscriber: 7,
            token_id: "t".to_owned(),
        };
        trace.push(at(4_200), "revoker", what);
        let revoking = |revoke_ms| Expectations {
            revoke_at: Some(at(revoke_ms)),
            ..expect(20, Vec::new())
        };
        // Revoked 3.5 s after it started and never welcomed: it had its chance.
        assert_eq!(
            every_started_client_is_served(&trace, &revoking(4_500)).len(),
            1
        );
        // Revoked 2.5 s after it started: too short to judge.
        assert_eq!(every_started_client_is_served(&trace, &revoking(3_500)), []);
        let what = Observation::LoginFailed {
            gateway: "gateway-1".to_owned(),
        };
        trace.push(at(20_000), "http", what);
        let violations = every_started_client_is_served(&trace, &revoking(3_500));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.starts_with("http could not log in"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_request_unanswered_while_its_gateway_was_down_is_excused_and_only_then() {
        let crash = vec![
            (at(1_000), Fault::Crash("gateway-1".to_owned())),
            (at(3_000), Fault::Restart("gateway-1".to_owned())),
        ];
        let mut trace = Trace::default();
        for sent in [900, 5_000] {
            trace.push(
                at(sent + 100),
                "http",
                http("/api/auth/profile", sent, None, None),
            );
        }
        let violations = every_http_request_gets_one_timely_answer(&trace, &expect(10, crash));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(5_100));
    }

    #[test]
    fn a_breaker_that_refuses_long_after_repair_is_caught() {
        let down = Fault::Backend {
            host: "auth".to_owned(),
            faults: mock_backends::FaultSettings {
                down: true,
                ..Default::default()
            },
        };
        let healed = Fault::Backend {
            host: "auth".to_owned(),
            faults: Default::default(),
        };
        let faults = vec![(at(1_000), down), (at(3_000), healed)];
        let mut trace = Trace::default();
        for (sent, code) in [
            (1_100, "unavailable"),
            (1_600, "circuit_open"),
            (4_000, "circuit_open"),
            (9_000, "circuit_open"),
        ] {
            let what = http("/api/auth/profile", sent, Some(503), Some(code));
            trace.push(at(sent + 10), "http", what);
        }
        let violations =
            breakers_open_on_failure_and_close_after_repair(&trace, &expect(12, faults));
        // Refusing at 1.6 s (Auth down) and at 4 s (within the longest open period after the
        // repair) is right; at 9 s Auth had been healthy for six seconds.
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(9_010));
    }

    #[test]
    fn more_retries_than_the_budget_allows_are_caught() {
        let mut trace = Trace::default();
        for n in 0..10 {
            let mut what = http("/api/projects", 1_000 + n * 250, Some(200), None);
            if let Observation::Http { request_id, .. } = &mut what {
                *request_id = format!("h-{n}");
            }
            trace.push(at(1_010 + n * 250), "http", what);
        }
        let attempts = |per_request: &[u32]| Observation::BackendAttempts {
            backend: "project".to_owned(),
            attempts: per_request
                .iter()
                .enumerate()
                .map(|(n, attempts)| (format!("h-{n}"), *attempts))
                .collect(),
        };
        // Ten requests at a ratio of 0.2: two retries are within the budget, three are not.
        let mut within = trace.clone();
        within.push(
            at(20_000),
            "runner",
            attempts(&[2, 2, 1, 1, 1, 1, 1, 1, 1, 1]),
        );
        assert!(retries_stay_within_the_budget(&within, &expect(20, Vec::new())).is_empty());
        let mut over = trace.clone();
        over.push(
            at(20_000),
            "runner",
            attempts(&[3, 2, 1, 1, 1, 1, 1, 1, 1, 1]),
        );
        let violations = retries_stay_within_the_budget(&over, &expect(20, Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("3 retries for 10 requests"),
            "{violations:?}"
        );
    }

    #[test]
    fn requests_that_never_reached_project_do_not_widen_the_retry_budget() {
        let mut trace = Trace::default();
        let push = |trace: &mut Trace, n: u64, mut what: Observation| {
            if let Observation::Http { request_id, .. } = &mut what {
                *request_id = format!("h-{n}");
            }
            trace.push(at(1_010 + n * 100), "http", what);
        };
        // Ten Project calls that reached it, and three retries among them: over the budget (2).
        for n in 0..10 {
            push(
                &mut trace,
                n,
                http("/api/projects", n * 100, Some(200), None),
            );
        }
        // Twenty answers that never reached Project: the limited client's Simulation route,
        // template lists from the gateway's cache, a refusal before the call.
        for n in 10..20 {
            let mut limited = http(LIMITED_PATH, n * 100, Some(429), None);
            if let Observation::Http { request_id, .. } = &mut limited {
                *request_id = format!("l-{n}");
            }
            trace.push(at(1_010 + n * 100), "limited", limited);
        }
        for n in 20..29 {
            let mut cached = http("/api/projects/templates", n * 100, Some(200), None);
            if let Observation::Http { cache, .. } = &mut cached {
                *cache = Some("hit".to_owned());
            }
            push(&mut trace, n, cached);
        }
        let refused = http("/api/projects", 2_900, Some(503), Some("auth_unavailable"));
        push(&mut trace, 29, refused);
        let per_request = [2, 2, 2, 1, 1, 1, 1, 1, 1, 1];
        let attempts = |per_request: &[u32]| Observation::BackendAttempts {
            backend: "project".to_owned(),
            attempts: per_request
                .iter()
                .enumerate()
                .map(|(n, attempts)| (format!("h-{n}"), *attempts))
                .collect(),
        };
        let mut judged = trace.clone();
        judged.push(at(20_000), "runner", attempts(&per_request));
        let violations = retries_stay_within_the_budget(&judged, &expect(20, Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("3 retries for 10 requests"),
            "{violations:?}"
        );
        // Five calls the gateway sent towards Project without reaching it (refused by its open
        // breaker) count as calls, as the budget counts them: 15 calls allow 3 retries.
        for n in 30..35 {
            let what = http("/api/projects", n * 100, Some(503), Some("circuit_open"));
            push(&mut trace, n, what);
        }
        trace.push(at(20_000), "runner", attempts(&per_request));
        assert!(retries_stay_within_the_budget(&trace, &expect(20, Vec::new())).is_empty());
    }

    #[test]
    fn a_valid_token_refused_while_auth_is_partitioned_is_caught_unless_excused() {
        let cut = |at_ms, fault: fn(String, String) -> Fault| {
            (at(at_ms), fault("gateway-1".to_owned(), "auth".to_owned()))
        };
        let mut faults = vec![cut(6_000, Fault::Partition), cut(12_000, Fault::Repair)];
        let mut trace = Trace::default();
        for (sent, status, code) in [
            (5_000, 200, None),
            (7_000, 200, None),
            (8_000, 503, Some("auth_unavailable")),
            (13_000, 503, Some("unavailable")),
        ] {
            let what = http("/api/projects/templates", sent, Some(status), code);
            trace.push(at(sent + 1_000), "http", what);
        }
        // The 503 at 8 s is the one violation; the one at 13 s came after the repair.
        let violations =
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(9_000));
        // Excused while Project was in trouble too, or before the gateway could fetch Auth's keys.
        let mut with_project = faults.clone();
        with_project.push((at(7_500), Fault::Crash("project".to_owned())));
        with_project.push((at(8_500), Fault::Restart("project".to_owned())));
        with_project.sort_by_key(|(at, _)| *at);
        assert!(
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, with_project))
                .is_empty()
        );
        faults.insert(0, cut(1_000, Fault::Partition));
        faults.insert(1, cut(2_000, Fault::Repair));
        faults.insert(2, cut(2_500, Fault::Partition));
        faults.insert(3, cut(3_000, Fault::Repair));
        // Auth answered only from 3 s on: keys by 5 s, so 8 s is still judged.
        assert_eq!(
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, faults)).len(),
            1
        );
    }

    #[test]
    fn a_shared_limit_is_judged_over_the_whole_window_with_cuts_excused() {
        let limited = |trace: &mut Trace, sent: u64, status: u16| {
            let mut what = http(LIMITED_PATH, sent, Some(status), None);
            if let Observation::Http { request_id, .. } = &mut what {
                *request_id = format!("l-{sent}");
            }
            trace.push(at(sent + 10), "limited", what);
        };
        let shared = SharedLimit {
            limit: gateway::edge::rate_limit::Limit {
                per_second: 2.0,
                burst: 4,
            },
            retry_interval: Duration::from_secs(1),
        };
        // Ten seconds (0 to 10.01 s): 4 + 2 × 10.01 = 24.02, × 1.02 = 24.5 may pass.
        let run = |admitted: u64| {
            let mut trace = Trace::default();
            for n in 0..=100 {
                let status = if n < admitted { 200 } else { 429 };
                limited(&mut trace, n * 100, status);
            }
            trace
        };
        let mut expectations = expect(20, Vec::new());
        expectations.shared_limit = Some(shared);
        assert!(shared_limits_hold_across_instances(&run(24), &expectations).is_empty());
        let violations = shared_limits_hold_across_instances(&run(25), &expectations);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.starts_with("25 of 101"),
            "{violations:?}"
        );
        // One gateway cut from Redis for 2 s: it may admit alone over 2 + 1 + 1 s (4 + 8 more).
        expectations.faults = vec![
            (
                at(3_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (at(5_000), Fault::Repair("gateway-1".into(), "redis".into())),
        ];
        assert!(shared_limits_hold_across_instances(&run(36), &expectations).is_empty());
        assert_eq!(
            shared_limits_hold_across_instances(&run(37), &expectations).len(),
            1
        );
        // Without the limited client nothing is judged.
        expectations.shared_limit = None;
        assert!(shared_limits_hold_across_instances(&run(100), &expectations).is_empty());
    }

    /// Seed 58872828: a skewed gateway clock made two requests 401 before the limit was asked.
    /// Answers given before the limit (authentication: 401, 503 `auth_unavailable`) were not
    /// admitted by it; a backend's error after it was.
    #[test]
    fn only_requests_past_the_limit_count_as_admitted() {
        let shared = SharedLimit {
            limit: gateway::edge::rate_limit::Limit {
                per_second: 2.0,
                burst: 4,
            },
            retry_interval: Duration::from_secs(1),
        };
        let mut expectations = expect(20, Vec::new());
        expectations.shared_limit = Some(shared);
        // 24 admitted fill the bound (24.5); more answers that never reached the limit add none.
        let run = |before_limit: &[(u16, &str)], after_limit: Option<(u16, &str)>| {
            let mut trace = Trace::default();
            let mut answers: Vec<(u16, Option<&str>)> = vec![(200, None); 24];
            answers.extend(before_limit.iter().map(|(s, c)| (*s, Some(*c))));
            answers.extend(after_limit.map(|(s, c)| (s, Some(c))));
            answers.resize(101, (429, Some("rate_limited")));
            for (n, (status, code)) in answers.into_iter().enumerate() {
                let sent = n as u64 * 100;
                let what = http(LIMITED_PATH, sent, Some(status), code);
                trace.push(at(sent + 10), "limited", what);
            }
            trace
        };
        let before = [(401, "unauthenticated"), (503, "auth_unavailable")];
        let judged = shared_limits_hold_across_instances(&run(&before, None), &expectations);
        assert!(judged.is_empty(), "{judged:?}");
        let judged = shared_limits_hold_across_instances(
            &run(&before, Some((503, "backend_unavailable"))),
            &expectations,
        );
        assert_eq!(judged.len(), 1, "{judged:?}");
    }
}
