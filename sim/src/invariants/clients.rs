//! Every started client is served: welcomed in time, or in time once what blocked it ends.

use super::*;

/// The longest a welcome takes on a gateway nothing blocks: the handshake, the token's validation
/// (a 1 s deadline, then local verification), the channel's permission check and the join on the
/// bus, each a few turmoil messages of up to 100 ms.
pub const WELCOME_TIME_MAX: Duration = Duration::from_secs(3);

/// After a fault that blocks welcomes heals, how long the gateway may still turn clients away:
/// its bus reconnecting and catching up with revocations, its breaker for Auth closing (open for
/// 2 s at most, then a probe), a restarted gateway fetching Auth's keys.
pub const WELCOME_RECOVERY: Duration = Duration::from_secs(3);

/// A client whose gateway just became able to welcome it may still be waiting on an attempt sent
/// into the fault (a handshake to a crashed gateway waits out the client's 5 s timeout), then
/// pauses 250 ms before the next.
pub const WELCOME_RETRY_CYCLE: Duration = Duration::from_millis(5_250);

/// When `gateway` could not welcome a client, from the fault schedule, merged and each extended by
/// [`WELCOME_RECOVERY`]: the gateway down (crashed, and the second after its restart), its path
/// to Redis broken (partitioned or held either way, Redis crashed: joins need the bus), or its
/// calls to Auth in trouble (knobs, partition, hold: tokens and channel permissions need Auth).
pub(super) fn welcome_blocked(expect: &Expectations, gateway: &str) -> Vec<(Duration, Duration)> {
    let mut blocked: Vec<(Duration, Duration)> = down_windows(expect)
        .remove(gateway)
        .unwrap_or_default()
        .into_iter()
        .chain(broken_windows(expect).remove(gateway).unwrap_or_default())
        .chain(
            backend_trouble(expect, gateway, "auth")
                .into_iter()
                .map(|(from, to, _)| (from, to)),
        )
        .map(|(from, to)| (from, to.saturating_add(WELCOME_RECOVERY)))
        .collect();
    blocked.sort();
    let mut merged: Vec<(Duration, Duration)> = Vec::new();
    for (from, to) in blocked {
        match merged.last_mut() {
            Some((_, last_to)) if from <= *last_to => *last_to = (*last_to).max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// The first stretch of `[started, until)` in which nothing in `blocked` kept a client out long
/// enough for a welcome: [`WELCOME_TIME_MAX`] from its start, or, after a blocking fault healed,
/// [`WELCOME_RETRY_CYCLE`] more for the attempt it may have had in flight.
pub(super) fn first_chance(
    started: Duration,
    until: Duration,
    blocked: &[(Duration, Duration)],
) -> Option<(Duration, Duration)> {
    let mut cursor = started;
    let mut after_fault = false;
    let long_enough = |from: Duration, to: Duration, after_fault: bool| {
        let needed = if after_fault {
            WELCOME_RETRY_CYCLE + WELCOME_TIME_MAX
        } else {
            WELCOME_TIME_MAX
        };
        to.saturating_sub(from) >= needed
    };
    for (from, to) in blocked {
        if *to <= cursor {
            continue;
        }
        if cursor >= until {
            return None;
        }
        let free_until = (*from).min(until);
        if *from > cursor && long_enough(cursor, free_until, after_fault) {
            return Some((cursor, free_until));
        }
        cursor = cursor.max(*to);
        after_fault = true;
    }
    (cursor < until && long_enough(cursor, until, after_fault)).then_some((cursor, until))
}

/// **Every client the workload started is served.** Every WebSocket client (subscriber,
/// collaborator, revoker) is welcomed at least once, unless the fault schedule kept it out for
/// its whole window: from when it started (after its host logged in) to the end of the run (for
/// the revoker, to the revocation, after which it must be refused), its gateway never went
/// [`WELCOME_TIME_MAX`] (3 s) without being down, cut from Redis or unable to reach Auth (each
/// until [`WELCOME_RECOVERY`], 3 s, after it healed), nor [`WELCOME_RETRY_CYCLE`] (5.25 s) more
/// after such a fault, for the attempt the client may have had in flight. And every client host
/// logs in: a login that never succeeded (each is retried until the run ends) is a violation,
/// never excused, since the workload behind it never ran and every schedule heals its faults
/// well before the end.
pub fn every_started_client_is_served(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "every started client is served";
    let revoked = revoked_subscribers(trace, expect);
    let welcomed: BTreeSet<usize> = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Frame { subscriber, frame } if frame["type"] == "welcome" => {
                Some(*subscriber)
            }
            _ => None,
        })
        .collect();
    let mut violations = Vec::new();
    for o in &trace.observed {
        match &o.what {
            Observation::LoginFailed { gateway } => violations.push(Violation::new(
                NAME,
                o.at,
                format!(
                    "{} could not log in through {gateway} within the run: its workload never ran",
                    o.host
                ),
            )),
            Observation::ClientStarted {
                subscriber,
                gateway,
            } if !welcomed.contains(subscriber) => {
                let until = match (revoked.contains_key(subscriber), expect.revoke_at) {
                    (true, Some(revoke_at)) => revoke_at.min(expect.duration),
                    _ => expect.duration,
                };
                let blocked = welcome_blocked(expect, gateway);
                if let Some((from, to)) = first_chance(o.at, until, &blocked) {
                    violations.push(Violation::new(
                        NAME,
                        o.at,
                        format!(
                            "client {subscriber} ({}) on {gateway} was never welcomed, though nothing in the fault schedule kept it out from {from:?} to {to:?}",
                            o.host
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::invariants::test_support::*;

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
}
