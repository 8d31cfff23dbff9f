//! Presence converges, and leaves no ghost behind a closed connection or a dead instance.

use super::*;

/// One collaborator's presence set, kept as `docs/protocol.md` tells clients to keep it.
#[derive(Debug, Default)]
pub(super) struct PresenceView {
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
    pub(super) fn change(&mut self, epoch: &str, offset: u64, action: &str, connection: &str) {
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::invariants::test_support::*;

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
}
