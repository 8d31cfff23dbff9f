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
