//! A revoked token gets nothing new, also when the revocation was missed or lost in a crash.

use super::*;

/// The subscribers whose token was revoked, and when the revocation was seen on `auth:revocations`.
pub(super) fn revoked_subscribers(
    trace: &Trace,
    expect: &Expectations,
) -> BTreeMap<usize, Duration> {
    let mut revoked: BTreeMap<usize, Duration> = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Revoked { subscriber, .. } => Some((*subscriber, o.at)),
            _ => None,
        })
        .collect();
    for (subscriber, lost_until) in revocations_lost_in_a_crash(trace, expect) {
        revoked.entry(subscriber).or_insert(lost_until);
    }
    revoked
}

/// Revocations Auth acknowledged that nobody ever saw on `auth:revocations`, with a Redis crash
/// after the acknowledgement: Redis lost them with its data, as it may without persistence. The
/// gateways cannot hear of them; what they do instead is treat the new epoch of
/// `auth:revocations` as revocations missed (every connection closed, every token judged by Auth
/// afresh), once Redis is back. So each such subscriber counts as revoked from the restart after
/// the crash (the end of the run if there is none).
pub(super) fn revocations_lost_in_a_crash(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<(usize, Duration)> {
    let seen: BTreeSet<usize> = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Revoked { subscriber, .. } => Some(*subscriber),
            _ => None,
        })
        .collect();
    let redis = |fault: &Fault, crash: bool| match (fault, crash) {
        (Fault::Crash(host), true) | (Fault::Restart(host), false) => host == "redis",
        _ => false,
    };
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::RevocationAcknowledged { subscriber } if !seen.contains(subscriber) => {
                let crash = expect
                    .faults
                    .iter()
                    .find(|(at, fault)| *at >= o.at && redis(fault, true))?
                    .0;
                let restart = expect
                    .faults
                    .iter()
                    .find(|(at, fault)| *at >= crash && redis(fault, false))
                    .map_or(expect.duration, |(at, _)| *at);
                Some((*subscriber, restart))
            }
            _ => None,
        })
        .collect()
}

/// **No event reaches a connection without permission, including after a revocation.** Once the
/// revoker's token is revoked (seen on `auth:revocations`, live or in history), nothing published more than
/// half a second later reaches it, and no new connection of it is welcomed (joins a channel). The half second is the
/// revocation's way through Redis pub/sub to the gateway; after a bus outage the gateway reads
/// missed revocations before it replays missed events, so the bound holds across faults. A
/// revocation Redis lost in a crash before anyone saw it counts from Redis's restart (see
/// `revocations_lost_in_a_crash`); one that never appeared otherwise is a violation.
pub fn revoked_tokens_get_nothing_new(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "a revoked token gets nothing new";
    const GRACE: Duration = Duration::from_millis(500);
    let revoked = revoked_subscribers(trace, expect);
    if let Some(at) = expect.revoke_at
        && revoked.is_empty()
    {
        return vec![Violation::new(
            NAME,
            at,
            "the revocation never appeared on auth:revocations (nor did Redis lose it in a crash)",
        )];
    }
    let published_at: BTreeMap<(&str, &str, u64), Duration> = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Published {
                started,
                channel,
                epoch,
                offset,
                ..
            } => Some(((channel.as_str(), epoch.as_str(), *offset), *started)),
            _ => None,
        })
        .collect();
    let mut violations = Vec::new();
    for observed in &trace.observed {
        match &observed.what {
            Observation::Frame { subscriber, frame } if frame["type"] == "event" => {
                let Some(revoked_at) = revoked.get(subscriber) else {
                    continue;
                };
                let key = (
                    frame["channel"].as_str().unwrap_or_default(),
                    frame["epoch"].as_str().unwrap_or_default(),
                    frame["offset"].as_u64().unwrap_or(0),
                );
                if published_at
                    .get(&key)
                    .is_some_and(|started| *started > *revoked_at + GRACE)
                {
                    violations.push(Violation::new(
                        NAME,
                        observed.at,
                        format!(
                            "subscriber {subscriber}, revoked at {revoked_at:?}, received {frame}"
                        ),
                    ));
                }
            }
            Observation::Frame { subscriber, frame } if frame["type"] == "welcome" => {
                if let Some(revoked_at) = revoked.get(subscriber)
                    && observed.at > *revoked_at + GRACE
                {
                    violations.push(Violation::new(
                        NAME,
                        observed.at,
                        format!("subscriber {subscriber}, revoked at {revoked_at:?}, was welcomed on a new connection"),
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
}
