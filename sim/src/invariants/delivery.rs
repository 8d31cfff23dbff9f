//! Events reach the subscribers they are for: in order, complete and once, within
//! their audience, and caught up by the end of the run.

use super::*;

/// Offsets a user may never see: events whose audience excludes `u-1` (the workload's user).
pub(super) fn excluded_for_alice(trace: &Trace) -> BTreeSet<(String, String, u64)> {
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
pub(super) struct Position {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::invariants::test_support::*;

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
}
