//! The invariants a scenario's trace must satisfy, each a documented function. They judge the
//! whole trace after the run (every observation carries its simulated time, so "during the run"
//! properties are checked at the time they were observed); [`check`] runs them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

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
    pub limit: gateway::rate_limit::Limit,
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

/// The subscribers whose token was revoked, and when the revocation was seen on `auth:revocations`.
fn revoked_subscribers(trace: &Trace, expect: &Expectations) -> BTreeMap<usize, Duration> {
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
fn revocations_lost_in_a_crash(trace: &Trace, expect: &Expectations) -> Vec<(usize, Duration)> {
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
                ..
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
                    // Right after an epoch change, a bounded gap reports offsets of the new
                    // epoch (the welcome's) that cannot be delivered, from its first.
                    (Some(to), _) if position.epoch_changed => {
                        if from > 1 {
                            violations.push(fail(format!(
                                "subscriber {subscriber}: gap {from}..={to} after an epoch change leaves 1..{from} unreported"
                            )));
                        }
                        let epoch = position.welcome.as_ref().map(|(epoch, _)| epoch.clone());
                        position.at = Some((epoch.unwrap_or_default(), to));
                        position.epoch_changed = false;
                    }
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
    let revoked = revoked_subscribers(trace, expect);
    let mut reached: BTreeMap<usize, (String, u64)> = BTreeMap::new();
    let mut notification_subscribers = BTreeSet::new();
    for observed in &trace.observed {
        if let Observation::Frame { subscriber, frame } = &observed.what {
            if frame["type"] == "welcome"
                && frame["channel"] == "user:u-1"
                && !revoked.contains_key(subscriber)
            {
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

/// When each gateway was down (crashed until restarted, plus a second to start listening).
fn down_windows(expect: &Expectations) -> BTreeMap<String, Vec<(Duration, Duration)>> {
    const STARTUP: Duration = Duration::from_secs(1);
    let mut windows: BTreeMap<String, Vec<(Duration, Duration)>> = BTreeMap::new();
    let mut crashed: BTreeMap<&str, Duration> = BTreeMap::new();
    for (at, fault) in &expect.faults {
        match fault {
            Fault::Crash(host) => {
                crashed.insert(host, *at);
            }
            Fault::Restart(host) => {
                if let Some(from) = crashed.remove(host.as_str()) {
                    windows
                        .entry(host.clone())
                        .or_default()
                        .push((from, *at + STARTUP));
                }
            }
            _ => {}
        }
    }
    for (host, from) in crashed {
        windows
            .entry(host.to_owned())
            .or_default()
            .push((from, Duration::MAX));
    }
    windows
}

/// **Every HTTP request gets exactly one response, none outlives its deadline, and none is a
/// 500.** The workload never cuts a client from a gateway, so a missing or late answer is a
/// failure, unless the gateway asked was crashed (or starting again) while the request was out.
pub fn every_http_request_gets_one_timely_answer(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "every HTTP request gets one timely answer";
    let down = down_windows(expect);
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token,
                path,
                gateway,
                sent,
                status,
                ..
            } => {
                let took = o.at.saturating_sub(*sent);
                let gateway_was_down = down.get(gateway).is_some_and(|windows| {
                    windows
                        .iter()
                        .any(|(from, to)| *sent < *to && o.at >= *from)
                });
                if gateway_was_down && status.is_none_or(|_| took > expect.http_deadline) {
                    return None;
                }
                match status {
                    None => Some(format!("{path}, {token} token, to {gateway}: no response")),
                    Some(500) => Some(format!("{path}, {token} token, to {gateway}: 500")),
                    Some(_) if took > expect.http_deadline => Some(format!(
                        "{path}, {token} token, to {gateway}: answered after {took:?}, past {:?}",
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
                Fault::ClockSkew { .. } | Fault::Backend { .. } => (false, false),
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

/// The stretches of the run over which a gateway's readiness is judged, from its broken windows:
/// (from, to, whether its path to Redis is broken then). Broken: from `detect` after a break
/// until the repair. Whole: from `recover` after the run's start or a repair until the next
/// break (or the run's end).
fn readiness_stretches(
    windows: &[(Duration, Duration)],
    duration: Duration,
    detect: Duration,
    recover: Duration,
) -> Vec<(Duration, Duration, bool)> {
    let mut stretches = Vec::new();
    let mut whole_from = recover;
    for (from, to) in windows {
        if *from > whole_from {
            stretches.push((whole_from, *from, false));
        }
        stretches.push((*from + detect, (*to).min(duration), true));
        whole_from = whole_from.max(to.saturating_add(recover));
    }
    stretches.push((whole_from, duration, false));
    stretches.retain(|(from, to, _)| from < to);
    stretches
}

/// **Readiness is false whenever end-to-end delivery is broken, and true again after repair.**
/// A gateway whose path to Redis has been broken for 1.5 s must not report its event bus healthy;
/// one whose path has been whole for 3 s must report it healthy (an unanswered probe then is a
/// violation too). A probe is judged over its whole span, from sent to answered (or given up).
/// And the check must not pass for want of samples: every such stretch at least
/// [`READINESS_STRETCH_JUDGED`] long holds at least one probe of that gateway, answered or not.
pub fn readiness_follows_event_delivery(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "readiness follows event delivery";
    const DETECT: Duration = Duration::from_millis(1_500);
    const RECOVER: Duration = Duration::from_secs(3);
    let windows = broken_windows(expect);
    let mut violations = Vec::new();
    let mut probes: BTreeMap<&str, Vec<(Duration, Duration)>> = BTreeMap::new();
    for o in &trace.observed {
        let Observation::Readiness {
            gateway,
            sent,
            bus_healthy,
        } = &o.what
        else {
            continue;
        };
        probes.entry(gateway).or_default().push((*sent, o.at));
        let gateway_windows = windows.get(gateway).map(Vec::as_slice).unwrap_or(&[]);
        let broken_long = gateway_windows
            .iter()
            .any(|(from, to)| *sent >= *from + DETECT && o.at < *to);
        let whole_long = *sent >= RECOVER
            && gateway_windows
                .iter()
                .all(|(from, to)| o.at < *from || *sent >= to.saturating_add(RECOVER));
        let detail = match bus_healthy {
            Some(true) if broken_long => Some("ready while its path to Redis is broken"),
            Some(false) if whole_long => Some("not ready although its path to Redis is whole"),
            None if whole_long => Some("no answer to its readiness probe although whole"),
            _ => None,
        };
        if let Some(detail) = detail {
            violations.push(Violation::new(NAME, o.at, format!("{gateway}: {detail}")));
        }
    }
    for gateway in &expect.gateways {
        let gateway_windows = windows.get(gateway).map(Vec::as_slice).unwrap_or(&[]);
        let sampled = probes
            .get(gateway.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (from, to, broken) in
            readiness_stretches(gateway_windows, expect.duration, DETECT, RECOVER)
        {
            let judged = to.saturating_sub(from) >= READINESS_STRETCH_JUDGED;
            let empty = !sampled
                .iter()
                .any(|(sent, answered)| *sent >= from && *answered <= to);
            if judged && empty {
                let state = if broken { "broken" } else { "whole" };
                violations.push(Violation::new(
                    NAME,
                    from,
                    format!(
                        "{gateway}: no readiness probe from {from:?} to {to:?} (path to Redis {state}), nothing to judge"
                    ),
                ));
            }
        }
    }
    violations
}

/// The shortest stretch of a run in which `readiness_follows_event_delivery` requires a probe:
/// a probe takes at most `scenario::PROBE_TIMEOUT` (1 s), then the prober waits 200 ms, so any
/// stretch longer than two such cycles holds a whole probe.
pub const READINESS_STRETCH_JUDGED: Duration = Duration::from_millis(2_500);

/// One collaborator's presence set, kept as `docs/protocol.md` tells clients to keep it.
#[derive(Debug, Default)]
struct PresenceView {
    /// Whether its latest connection is open, and since when.
    open_since: Option<Duration>,
    /// Its own entry (`presence_state.you`).
    you: Option<String>,
    /// The set, once `presence_state` arrived.
    members: Option<BTreeSet<String>>,
    /// The state's epoch and offset: changes at or below it are already in the set.
    state_at: (String, u64),
    /// Changes that arrived before the state: (epoch, offset, action, connection).
    early: Vec<(String, u64, String, String)>,
}

impl PresenceView {
    fn change(&mut self, epoch: &str, offset: u64, action: &str, connection: &str) {
        let Some(members) = &mut self.members else {
            self.early.push((
                epoch.to_owned(),
                offset,
                action.to_owned(),
                connection.to_owned(),
            ));
            return;
        };
        if epoch == self.state_at.0 && offset <= self.state_at.1 {
            return;
        }
        if action == "join" {
            members.insert(connection.to_owned());
        } else {
            members.remove(connection);
        }
    }
}

/// **Presence converges after faults heal, with no ghosts.** At the end of the run, every open
/// collaboration connection's presence set (its `presence_state`, then the changes after it)
/// holds exactly the open collaboration connections. Connections opened in the last second are
/// allowed to be missing from others' sets (their join may still be on its way).
pub fn presence_converges_without_ghosts(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "presence converges, with no ghosts";
    const FRESH: Duration = Duration::from_secs(1);
    let mut views: BTreeMap<usize, PresenceView> = BTreeMap::new();
    let mut collaborators = BTreeSet::new();
    for observed in &trace.observed {
        match &observed.what {
            Observation::Connected { subscriber, .. } => {
                views.insert(
                    *subscriber,
                    PresenceView {
                        open_since: Some(observed.at),
                        ..PresenceView::default()
                    },
                );
            }
            Observation::Disconnected { subscriber, .. } => {
                if let Some(view) = views.get_mut(subscriber) {
                    view.open_since = None;
                }
            }
            Observation::Frame { subscriber, frame } => {
                let Some(view) = views.get_mut(subscriber) else {
                    continue;
                };
                if frame["type"] == "welcome"
                    && frame["channel"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("project:"))
                {
                    collaborators.insert(*subscriber);
                }
                if frame["type"] == "presence_state" {
                    let members = frame["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|member| member["connection"].as_str().map(str::to_owned))
                        .collect();
                    view.members = Some(members);
                    view.you = frame["you"].as_str().map(str::to_owned);
                    view.state_at = (
                        frame["epoch"].as_str().unwrap_or_default().to_owned(),
                        frame["offset"].as_u64().unwrap_or(0),
                    );
                    for (epoch, offset, action, connection) in std::mem::take(&mut view.early) {
                        view.change(&epoch, offset, &action, &connection);
                    }
                } else if frame["type"] == "event" && frame["data"]["type"] == "presence" {
                    view.change(
                        frame["epoch"].as_str().unwrap_or_default(),
                        frame["offset"].as_u64().unwrap_or(0),
                        frame["data"]["action"].as_str().unwrap_or_default(),
                        frame["data"]["member"]["connection"]
                            .as_str()
                            .unwrap_or_default(),
                    );
                }
            }
            _ => {}
        }
    }
    let settled = |view: &PresenceView| {
        view.open_since
            .is_some_and(|at| at + FRESH <= expect.duration)
    };
    let open: Vec<(&usize, &PresenceView)> = views
        .iter()
        .filter(|(subscriber, view)| {
            collaborators.contains(subscriber) && view.open_since.is_some()
        })
        .collect();
    let truth: BTreeSet<&str> = open
        .iter()
        .filter(|(_, view)| settled(view))
        .filter_map(|(_, view)| view.you.as_deref())
        .collect();
    let fresh: BTreeSet<&str> = open
        .iter()
        .filter(|(_, view)| !settled(view))
        .filter_map(|(_, view)| view.you.as_deref())
        .collect();
    let mut violations = Vec::new();
    for (subscriber, view) in open.iter().filter(|(_, view)| settled(view)) {
        let Some(members) = &view.members else {
            violations.push(Violation::new(
                NAME,
                expect.duration,
                format!("collaborator {subscriber} never received presence_state"),
            ));
            continue;
        };
        let ghosts: Vec<&String> = members
            .iter()
            .filter(|m| !truth.contains(m.as_str()) && !fresh.contains(m.as_str()))
            .collect();
        let missing: Vec<&&str> = truth.iter().filter(|m| !members.contains(**m)).collect();
        if !ghosts.is_empty() || !missing.is_empty() {
            violations.push(Violation::new(
                NAME,
                expect.duration,
                format!(
                    "collaborator {subscriber} ({:?}) sees ghosts {ghosts:?} and misses {missing:?}",
                    view.you
                ),
            ));
        }
    }
    violations
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

/// When a gateway's calls to a backend were failing or at risk, from the fault schedule: the
/// backend's fault knobs set (any knob; `down` when every call fails at once), the backend
/// crashed, or the link between the gateway and the backend cut or held. (from, to, down).
fn backend_trouble(
    expect: &Expectations,
    gateway: &str,
    backend: &str,
) -> Vec<(Duration, Duration, bool)> {
    let mut windows = Vec::new();
    let mut knobs: Option<(Duration, bool)> = None;
    let mut link: Option<Duration> = None;
    let on_link =
        |a: &str, b: &str| (a == gateway && b == backend) || (a == backend && b == gateway);
    for (at, fault) in &expect.faults {
        match fault {
            Fault::Backend { host, faults } if host == backend => {
                if let Some((from, down)) = knobs.take() {
                    windows.push((from, *at, down));
                }
                if *faults != mock_backends::FaultSettings::default() {
                    knobs = Some((*at, faults.down || faults.error_rate >= 1.0));
                }
            }
            Fault::Crash(host) if host == backend => link = link.or(Some(*at)),
            Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Hold(a, b)
                if on_link(a, b) =>
            {
                link = link.or(Some(*at));
            }
            Fault::Restart(host) if host == backend => {
                if let Some(from) = link.take() {
                    windows.push((from, *at, false));
                }
            }
            Fault::Repair(a, b) | Fault::Release(a, b) if on_link(a, b) => {
                if let Some(from) = link.take() {
                    windows.push((from, *at, false));
                }
            }
            _ => {}
        }
    }
    windows.extend(knobs.map(|(from, down)| (from, Duration::MAX, down)));
    windows.extend(link.map(|from| (from, Duration::MAX, false)));
    windows
}

/// **A circuit breaker opens on failure and closes after repair.** Valid-token profile calls
/// go to Auth's `GetProfile`. While Auth is down, a gateway that receives four or more of them
/// answers at least one with 503 `circuit_open` (five failures in a row open it; each call makes
/// up to three attempts). And no gateway answers `circuit_open` when its calls to Auth have been
/// untroubled (no knob, crash, partition or hold) for longer than the longest open period plus a
/// second for a probe: the breaker closes again.
pub fn breakers_open_on_failure_and_close_after_repair(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "breakers open on failure and close after repair";
    let valid_calls = |gateway: &str| {
        trace
            .observed
            .iter()
            .filter_map(|o| match &o.what {
                Observation::Http {
                    token: "valid",
                    path: "/api/auth/profile",
                    gateway: asked,
                    sent,
                    code,
                    ..
                } if asked == gateway => Some((o.at, *sent, code.as_deref())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut violations = Vec::new();
    for gateway in &expect.gateways {
        let windows = backend_trouble(expect, gateway, "auth");
        let calls = valid_calls(gateway);
        for (at, sent, code) in &calls {
            let near_trouble = windows.iter().any(|(from, to, _)| {
                *sent >= *from
                    && *sent < to.saturating_add(BREAKER_OPEN_MAX + Duration::from_secs(1))
            });
            if *code == Some("circuit_open") && !near_trouble {
                violations.push(Violation::new(
                    NAME,
                    *at,
                    format!("{gateway} refused a call (circuit_open) with Auth healthy since long"),
                ));
            }
        }
        for (from, to, _) in windows.iter().filter(|(_, _, down)| *down) {
            let during: Vec<Option<&str>> = calls
                .iter()
                .filter(|(_, sent, _)| sent >= from && sent < to)
                .map(|(_, _, code)| *code)
                .collect();
            if during.len() >= 4 && !during.contains(&Some("circuit_open")) {
                violations.push(Violation::new(
                    NAME,
                    *from,
                    format!(
                        "{gateway} never opened its breaker for Auth over {} calls while Auth was down",
                        during.len()
                    ),
                ));
            }
        }
    }
    violations
}

/// Whether the workload request observed as `what` went to Project: a valid-token request to
/// one of Project's routes that Project received (its request ID is in `received`), or that the
/// gateway may have sent towards it without reaching it (refused by its open breaker, or every
/// attempt lost: the budget counts those calls too). Not: answers from the gateway's fresh cache
/// (`x-cache: hit`), requests refused before any backend call (401, 403, 429,
/// `auth_unavailable`), and other backends' routes (the `limited` client's Simulation route).
fn reached_project(what: &Observation, received: &BTreeMap<String, u32>) -> bool {
    let Observation::Http {
        token: "valid",
        path,
        request_id,
        status,
        code,
        cache,
        ..
    } = what
    else {
        return false;
    };
    if !path.starts_with("/api/projects") {
        return false;
    }
    if received.contains_key(request_id) {
        return true;
    }
    let from_cache = cache.as_deref() == Some("hit");
    let refused_before_the_call =
        matches!(status, Some(401 | 403 | 429)) || code.as_deref() == Some("auth_unavailable");
    !from_cache && !refused_before_the_call
}

/// **Retries never exceed the budget.** The attempts Project received beyond the first of each
/// of the workload's requests number at most `retry_budget_ratio` × the workload's requests that
/// reached Project (see `reached_project`: the calls the gateways made to it, not the cache's
/// answers nor other backends' requests). In scenarios the budget's window outlasts the run and
/// has no floor, so this is the budget's own guarantee, summed over every gateway process; it is
/// checked at the backend, so a failing backend is never hit harder than its load times
/// (1 + ratio).
pub fn retries_stay_within_the_budget(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    let mut violations = Vec::new();
    for o in &trace.observed {
        let Observation::BackendAttempts { backend, attempts } = &o.what else {
            continue;
        };
        let reached = trace
            .observed
            .iter()
            .filter(|request| reached_project(&request.what, attempts))
            .count();
        let retries: u64 = attempts
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
        let allowed = expect.retry_budget_ratio * reached as f64;
        if retries as f64 > allowed {
            let most = attempts.values().max().copied().unwrap_or(0);
            violations.push(Violation::new(
                "retries stay within the budget",
                o.at,
                format!(
                    "{backend} received {retries} retries for {reached} requests that reached it (budget {allowed:.1}; up to {most} attempts for one request)"
                ),
            ));
        }
    }
    violations
}

/// The end of the latest start of `gateway` at or before `at` (zero when it never restarted).
fn started_before(down: &[(Duration, Duration)], at: Duration) -> Duration {
    down.iter()
        .filter(|(_, to)| *to <= at)
        .map(|(_, to)| *to)
        .max()
        .unwrap_or_default()
}

/// When a gateway started at `start` has Auth's keys: once Auth has answered it for two seconds
/// running (the JWKS is fetched at start and retried every half second until it is).
fn keys_known_from(start: Duration, auth: &[(Duration, Duration, bool)]) -> Duration {
    const CLEAN: Duration = Duration::from_secs(2);
    let mut from = start;
    while let Some((_, to, _)) = auth
        .iter()
        .find(|(begin, to, _)| *begin < from + CLEAN && *to > from)
    {
        from = *to;
        if from == Duration::MAX {
            return Duration::MAX;
        }
    }
    from + CLEAN
}

/// **While Auth cannot answer, valid tokens keep working on other backends' routes.** A request
/// with the workload's valid token to a Project route (`/api/projects`, and the cached
/// `/api/projects/templates`) sent to a gateway while its calls to Auth are in trouble (partition,
/// hold, crash, knobs) gets 200: the token is verified locally from Auth's keys (validations are
/// cached for one second only in scenarios, so it really is). Excused: a gateway that has not
/// yet fetched Auth's keys since it started, one whose clock was skewed, and requests while the
/// gateway was down or Project itself in trouble (or within three seconds of it, while its
/// breaker and connections recover).
pub fn project_traffic_flows_while_auth_cannot_answer(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "valid tokens keep working while Auth cannot answer";
    const RECOVERY: Duration = Duration::from_secs(3);
    let down = down_windows(expect);
    let mut violations = Vec::new();
    for gateway in &expect.gateways {
        let skewed = expect
            .faults
            .iter()
            .any(|(_, fault)| matches!(fault, Fault::ClockSkew { host, .. } if host == gateway));
        if skewed {
            continue;
        }
        let auth = backend_trouble(expect, gateway, "auth");
        let project = backend_trouble(expect, gateway, "project");
        let gateway_down = down.get(gateway).cloned().unwrap_or_default();
        for o in &trace.observed {
            let Observation::Http {
                token: "valid",
                path,
                gateway: asked,
                sent,
                status,
                code,
                ..
            } = &o.what
            else {
                continue;
            };
            // Project's routes only (not Auth's profile, nor the limited client's Simulation
            // route, which refuses most requests by design).
            if asked != gateway || !path.starts_with("/api/projects") {
                continue;
            }
            let auth_in_trouble = auth.iter().any(|(from, to, _)| sent >= from && sent < to);
            let excused = gateway_down
                .iter()
                .any(|(from, to)| *from <= o.at && *to > *sent)
                || project
                    .iter()
                    .any(|(from, to, _)| *from <= o.at && to.saturating_add(RECOVERY) > *sent)
                || *sent < keys_known_from(started_before(&gateway_down, *sent), &auth);
            if auth_in_trouble && !excused && *status != Some(200) {
                violations.push(Violation::new(
                    NAME,
                    o.at,
                    format!(
                        "{gateway} answered {path} with {status:?} {code:?} while Auth could not answer"
                    ),
                ));
            }
        }
    }
    violations
}

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
fn welcome_blocked(expect: &Expectations, gateway: &str) -> Vec<(Duration, Duration)> {
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
fn first_chance(
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

/// How far the shared limit may be exceeded: timing at the edges of the window.
const SHARED_LIMIT_EPSILON: f64 = 0.02;

/// The times a gateway could not reach Redis: (gateways affected, from, to, Redis lost its data).
/// A Redis crash affects every gateway and empties Redis; a partition or hold between Redis and
/// a gateway, that gateway. Unhealed faults last until the run is over.
fn redis_cuts(expect: &Expectations) -> Vec<(usize, Duration, Duration, bool)> {
    let mut open: BTreeMap<(String, String), (usize, Duration, bool)> = BTreeMap::new();
    let mut cuts = Vec::new();
    let pair = |a: &str, b: &str| {
        let mut pair = [a.to_owned(), b.to_owned()];
        pair.sort();
        (pair[0].clone(), pair[1].clone())
    };
    for (at, fault) in &expect.faults {
        match fault {
            Fault::Crash(host) if host == "redis" => {
                open.insert(pair("redis", "redis"), (expect.gateways.len(), *at, true));
            }
            Fault::Restart(host) if host == "redis" => {
                if let Some((gateways, from, lost)) = open.remove(&pair("redis", "redis")) {
                    cuts.push((gateways, from, *at, lost));
                }
            }
            Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Hold(a, b)
                if a == "redis" || b == "redis" =>
            {
                open.entry(pair(a, b)).or_insert((1, *at, false));
            }
            Fault::Repair(a, b) | Fault::Release(a, b) => {
                if let Some((gateways, from, lost)) = open.remove(&pair(a, b)) {
                    cuts.push((gateways, from, *at, lost));
                }
            }
            _ => {}
        }
    }
    let end = expect.duration + Duration::from_secs(30);
    cuts.extend(
        open.into_values()
            .map(|(gateways, from, lost)| (gateways, from, end, lost)),
    );
    cuts
}

/// **Across instances, a shared limit admits at most limit × (1 + ε).** The `limited` client
/// asks one route group, round robin over every gateway, far faster than its limit; the requests
/// not refused with 429 number at most (burst + rate × the time from the first request sent to
/// the last answered) × 1.02. GCRA in Redis admits exactly that many; the 2 % covers timing at
/// the window's edges. While a gateway cannot reach Redis it decides alone, admitting up to the
/// full limit itself: each such time adds, per gateway affected, the burst and the rate over the
/// cut plus the retry interval and a second; a Redis that lost its data adds a burst more.
/// Requests that got no answer are not counted (they may or may not have been admitted), nor
/// those answered before the limit was asked (401, or 503 `auth_unavailable`: authentication
/// comes first, so a skewed clock or an Auth outage refuses them without charging the limit).
pub fn shared_limits_hold_across_instances(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "shared limits hold across instances";
    let Some(shared) = expect.shared_limit else {
        return Vec::new();
    };
    // (sent, answered, admitted by the limit)
    let limited: Vec<(Duration, Duration, bool)> = trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                path,
                sent,
                status: Some(status),
                code,
                ..
            } if *path == LIMITED_PATH => {
                // Refused by the limit, or answered before it was asked (authentication).
                let not_admitted = *status == 429
                    || matches!(
                        code.as_deref(),
                        Some("unauthenticated" | "auth_unavailable")
                    );
                Some((*sent, o.at, !not_admitted))
            }
            _ => None,
        })
        .collect();
    let (Some(from), Some(to)) = (
        limited.iter().map(|(sent, _, _)| *sent).min(),
        limited.iter().map(|(_, answered, _)| *answered).max(),
    ) else {
        return Vec::new();
    };
    let limit = shared.limit;
    let allowance = |span: Duration| f64::from(limit.burst) + limit.per_second * span.as_secs_f64();
    let shared_bound = allowance(to.saturating_sub(from)) * (1.0 + SHARED_LIMIT_EPSILON);
    let local_bound: f64 = redis_cuts(expect)
        .into_iter()
        .filter(|(_, cut_from, cut_to, _)| *cut_from < to && *cut_to > from)
        .map(|(gateways, cut_from, cut_to, lost)| {
            let span = cut_to.min(to).saturating_sub(cut_from.max(from))
                + shared.retry_interval
                + Duration::from_secs(1);
            gateways as f64 * allowance(span) + if lost { f64::from(limit.burst) } else { 0.0 }
        })
        .sum();
    let admitted = limited.iter().filter(|(_, _, admitted)| *admitted).count();
    let bound = shared_bound + local_bound;
    if admitted as f64 <= bound {
        return Vec::new();
    }
    vec![Violation::new(
        NAME,
        to,
        format!(
            "{admitted} of {} requests admitted from {from:?} to {to:?}; the limit ({} a second, \
             burst {}) allows {bound:.1} ({shared_bound:.1} shared, {local_bound:.1} while cut \
             from Redis)",
            limited.len(),
            limit.per_second,
            limit.burst
        ),
    )]
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
            limit: gateway::rate_limit::Limit {
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
            limit: gateway::rate_limit::Limit {
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
