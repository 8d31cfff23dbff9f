//! The invariants a scenario's trace must satisfy, each a documented function. They judge the
//! whole trace after the run (every observation carries its simulated time, so "during the run"
//! properties are checked at the time they were observed); [`check`] runs them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use crate::{
    scenario::Fault,
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
    violations
}

/// Offsets a user may never see: events whose audience excludes `u-1` (the workload's user).
fn excluded_for_alice(trace: &Trace) -> BTreeSet<(String, String, u64)> {
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Published {
                channel,
                epoch,
                offset,
                audience: Some(users),
            } if !users.iter().any(|u| u == "u-1") => {
                Some((channel.clone(), epoch.clone(), *offset))
            }
            _ => None,
        })
        .collect()
}

/// Where one subscriber stands on its channel.
#[derive(Debug, Default)]
struct Position {
    channel: String,
    /// The epoch and the last offset delivered or reported; `None` until known.
    at: Option<(String, u64)>,
    /// The latest `welcome` (epoch, latest offset).
    welcome: Option<(String, u64)>,
    /// An `epoch_changed` gap was received: the next event starts the welcome's epoch.
    epoch_changed: bool,
}

/// **Per channel, offsets delivered to a client increase by one; every missing offset is either
/// recovered or reported in a `gap` frame; no duplicates after recovery.** Followed across
/// reconnections: a client that resumes with its last offset continues where it was. Offsets
/// whose audience excludes the client are skipped silently, as documented.
pub fn delivery_is_ordered_complete_and_once(trace: &Trace) -> Vec<Violation> {
    const NAME: &str = "delivery is ordered, complete and once";
    let excluded = excluded_for_alice(trace);
    let mut positions: BTreeMap<usize, Position> = BTreeMap::new();
    let mut violations = Vec::new();
    for observed in &trace.observed {
        let Observation::Frame { subscriber, frame } = &observed.what else {
            continue;
        };
        let position = positions.entry(*subscriber).or_default();
        let fail = |detail: String| Violation::new(NAME, observed.at, detail);
        match frame["type"].as_str() {
            Some("welcome") => {
                let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
                let latest = frame["latest_offset"].as_u64().unwrap_or(0);
                position.channel = frame["channel"].as_str().unwrap_or_default().to_owned();
                position.welcome = Some((epoch.clone(), latest));
                if position.at.is_none() {
                    position.at = Some((epoch, latest));
                }
            }
            Some("gap") => {
                let from = frame["from_offset"].as_u64().unwrap_or(0);
                match (frame["to_offset"].as_u64(), &mut position.at) {
                    (None, _) => position.epoch_changed = true,
                    (Some(to), Some((_, last))) => {
                        if from > *last + 1 {
                            violations.push(fail(format!(
                                "subscriber {subscriber}: gap {from}..={to} leaves {}..{from} unreported",
                                *last + 1
                            )));
                        }
                        *last = (*last).max(to);
                    }
                    (Some(_), None) => {}
                }
            }
            Some("event") => {
                let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
                let offset = frame["offset"].as_u64().unwrap_or(0);
                let channel = position.channel.clone();
                let Some((current, last)) = position.at.clone() else {
                    violations.push(fail(format!(
                        "subscriber {subscriber}: event before welcome: {frame}"
                    )));
                    continue;
                };
                let mut expected = if epoch == current {
                    last + 1
                } else if position.epoch_changed {
                    1
                } else {
                    violations.push(fail(format!(
                        "subscriber {subscriber}: epoch {current} became {epoch} without a gap"
                    )));
                    offset
                };
                while expected < offset
                    && excluded.contains(&(channel.clone(), epoch.clone(), expected))
                {
                    expected += 1;
                }
                if offset < expected {
                    violations.push(fail(format!(
                        "subscriber {subscriber}: offset {offset} after {} (duplicate or reordered)",
                        expected - 1
                    )));
                } else if offset > expected {
                    violations.push(fail(format!(
                        "subscriber {subscriber}: offsets {expected}..{offset} of {channel} never delivered nor reported"
                    )));
                }
                position.epoch_changed = false;
                let last = if epoch == current {
                    last.max(offset)
                } else {
                    offset
                };
                position.at = Some((epoch, last));
            }
            _ => {}
        }
    }
    violations
}

/// **No event reaches a connection outside its audience.** Every fifth event the workload
/// publishes on `user:u-1` is addressed to `u-9` only; no subscriber (all are `u-1`) may get one.
pub fn audience_is_respected(trace: &Trace) -> Vec<Violation> {
    let excluded = excluded_for_alice(trace);
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Frame { subscriber, frame } if frame["type"] == "event" => {
                let key = (
                    frame["channel"].as_str().unwrap_or_default().to_owned(),
                    frame["epoch"].as_str().unwrap_or_default().to_owned(),
                    frame["offset"].as_u64().unwrap_or(0),
                );
                excluded.contains(&key).then(|| {
                    Violation::new(
                        "no event outside its audience",
                        o.at,
                        format!("subscriber {subscriber} received {frame}"),
                    )
                })
            }
            _ => None,
        })
        .collect()
}

/// **Everything published is delivered once faults are healed.** Each notification subscriber's
/// last position at the end reaches the last event published for it (the publisher stops two
/// seconds before the end).
pub fn subscribers_catch_up_by_the_end(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    let excluded = excluded_for_alice(trace);
    let last_published = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Published {
                channel,
                epoch,
                offset,
                ..
            } if !excluded.contains(&(channel.clone(), epoch.clone(), *offset)) => {
                Some((epoch.clone(), *offset))
            }
            _ => None,
        })
        .next_back();
    let Some((final_epoch, final_offset)) = last_published else {
        return vec![Violation::new(
            "subscribers catch up by the end",
            expect.duration,
            "nothing was published",
        )];
    };
    let mut reached: BTreeMap<usize, (String, u64)> = BTreeMap::new();
    let mut notification_subscribers = BTreeSet::new();
    for observed in &trace.observed {
        if let Observation::Frame { subscriber, frame } = &observed.what {
            if frame["type"] == "welcome" && frame["channel"] == "user:u-1" {
                notification_subscribers.insert(*subscriber);
            }
            if frame["type"] == "event" && frame["channel"] == "user:u-1" {
                reached.insert(
                    *subscriber,
                    (
                        frame["epoch"].as_str().unwrap_or_default().to_owned(),
                        frame["offset"].as_u64().unwrap_or(0),
                    ),
                );
            }
        }
    }
    notification_subscribers
        .into_iter()
        .filter(|subscriber| {
            reached
                .get(subscriber)
                .is_none_or(|(epoch, offset)| *epoch != final_epoch || *offset < final_offset)
        })
        .map(|subscriber| {
            Violation::new(
                "subscribers catch up by the end",
                expect.duration,
                format!(
                    "subscriber {subscriber} ended at {:?}, the last event is {final_epoch}/{final_offset}",
                    reached.get(&subscriber)
                ),
            )
        })
        .collect()
}

/// **Every HTTP request gets exactly one response, none outlives its deadline, and none is a
/// 500.** (The workload never cuts a client from a gateway, so a missing answer is a failure.)
pub fn every_http_request_gets_one_timely_answer(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "every HTTP request gets one timely answer";
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token,
                gateway,
                sent,
                status,
            } => {
                let took = o.at.saturating_sub(*sent);
                match status {
                    None => Some(format!("{token} token to {gateway}: no response")),
                    Some(500) => Some(format!("{token} token to {gateway}: 500")),
                    Some(_) if took > expect.http_deadline => Some(format!(
                        "{token} token to {gateway}: answered after {took:?}, past {:?}",
                        expect.http_deadline
                    )),
                    Some(_) => None,
                }
                .map(|detail| Violation::new(NAME, o.at, detail))
            }
            _ => None,
        })
        .collect()
}

/// **Invalid tokens get 401, even while Auth is down or partitioned.** A forged token must
/// never be let through nor turned into a 503.
pub fn forged_tokens_always_get_401(trace: &Trace) -> Vec<Violation> {
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token: "invalid",
                gateway,
                status: Some(status),
                ..
            } if *status != 401 => Some(Violation::new(
                "invalid tokens get 401",
                o.at,
                format!("{gateway} answered {status}"),
            )),
            _ => None,
        })
        .collect()
}

/// When each gateway's path to Redis was broken, from the fault schedule.
fn broken_windows(expect: &Expectations) -> BTreeMap<String, Vec<(Duration, Duration)>> {
    let involves = |a: &str, b: &str, gateway: &str| {
        (a == gateway && b == "redis") || (a == "redis" && b == gateway)
    };
    let mut windows: BTreeMap<String, Vec<(Duration, Duration)>> = BTreeMap::new();
    for gateway in &expect.gateways {
        let mut open: Option<Duration> = None;
        for (at, fault) in &expect.faults {
            let (breaks, heals) = match fault {
                Fault::Crash(host) => (host == "redis" || host == gateway, false),
                Fault::Restart(host) => (false, host == "redis" || host == gateway),
                Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Hold(a, b) => {
                    (involves(a, b, gateway), false)
                }
                Fault::Repair(a, b) | Fault::Release(a, b) => (false, involves(a, b, gateway)),
                Fault::ClockSkew { .. } => (false, false),
            };
            if breaks && open.is_none() {
                open = Some(*at);
            }
            if heals && let Some(start) = open.take() {
                windows
                    .entry(gateway.clone())
                    .or_default()
                    .push((start, *at));
            }
        }
        if let Some(start) = open {
            windows
                .entry(gateway.clone())
                .or_default()
                .push((start, expect.duration + Duration::from_secs(3_600)));
        }
    }
    windows
}

/// **Readiness is false whenever end-to-end delivery is broken, and true again after repair.**
/// A gateway whose path to Redis has been broken for 1.5 s must report its event bus unhealthy;
/// one whose path has been whole for 3 s must report it healthy.
pub fn readiness_follows_event_delivery(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const DETECT: Duration = Duration::from_millis(1_500);
    const RECOVER: Duration = Duration::from_secs(3);
    let windows = broken_windows(expect);
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Readiness {
                gateway,
                bus_healthy,
            } => {
                let gateway_windows = windows.get(gateway).map(Vec::as_slice).unwrap_or(&[]);
                let broken_long = gateway_windows
                    .iter()
                    .any(|(from, to)| o.at >= *from + DETECT && o.at < *to);
                let whole_long = o.at >= RECOVER
                    && gateway_windows
                        .iter()
                        .all(|(from, to)| o.at < *from || o.at >= *to + RECOVER);
                if broken_long && *bus_healthy {
                    Some("ready while its path to Redis is broken")
                } else if whole_long && !*bus_healthy {
                    Some("not ready although its path to Redis is whole")
                } else {
                    None
                }
                .map(|detail| {
                    Violation::new(
                        "readiness follows event delivery",
                        o.at,
                        format!("{gateway}: {detail}"),
                    )
                })
            }
            _ => None,
        })
        .collect()
}
