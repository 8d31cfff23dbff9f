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
