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
