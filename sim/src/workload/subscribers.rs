//! The WebSocket clients: subscribers on `subscribers-K` hosts and the `collaborators`. Each is one
//! logical subscriber, numbered across the run (subscribers first, then collaborators, then the
//! revoker), that reconnects with its resume point after any disconnect, as the protocol asks.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Run, Workload, login_retrying};
use crate::{
    client::WebSocket,
    faults::Sabotage,
    trace::{Observation, SharedTrace, record},
};

/// Starts the `subscribers-K` hosts, [`Workload::subscribers_per_host`] subscribers each; returns
/// their names.
pub(super) fn spawn_hosts(
    sim: &mut turmoil::Sim<'_>,
    run: &Run,
    workload: &Workload,
) -> Vec<String> {
    let per_host = workload.subscribers_per_host;
    let hosts = workload.subscribers.div_ceil(per_host.max(1));
    let mut names = Vec::new();
    for host_index in 0..hosts {
        let first = host_index * per_host;
        let last = (first + per_host).min(workload.subscribers);
        let host = format!("subscribers-{}", host_index + 1);
        names.push(host.clone());
        sim.client(
            host.clone(),
            subscriber_host(host, first..last, run.clone()),
        );
    }
    names
}

/// One `subscribers-K` host: logs in once through the first gateway, then runs `subscribers`,
/// each on the gateway its number picks, even numbers on `/ws/notifications` and odd ones on
/// `/ws/simulation/s-2`.
async fn subscriber_host(
    host: String,
    subscribers: std::ops::Range<usize>,
    run: Run,
) -> turmoil::Result {
    let Run {
        end,
        gateways,
        trace,
        sabotage,
        ..
    } = run;
    let Some(token) = login_retrying(&gateways[0], end, &trace, &host).await else {
        return Ok(());
    };
    let mut tasks = Vec::new();
    for subscriber in subscribers {
        let gateway = gateways[subscriber % gateways.len()].clone();
        let endpoint = if subscriber % 2 == 0 {
            "/ws/notifications"
        } else {
            "/ws/simulation/s-2"
        };
        tasks.push(tokio::spawn(subscribe(SubscriberPlan {
            subscriber,
            host: host.clone(),
            address: format!("{gateway}:8001"),
            path: format!("{endpoint}?access_token={token}"),
            end,
            trace: trace.clone(),
            drop_event: match sabotage {
                Some(Sabotage::DropEvent(n)) if subscriber == 0 => Some(n),
                _ => None,
            },
            reconnect_on_gap: false,
        })));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Starts the `collaborators` host when the scenario has collaborators; returns its name. They
/// log in once, take the subscriber numbers after the subscribers', and spread over the gateways
/// on `/ws/collaboration/p-1`, reconnecting after a `gap` (their presence set may be stale after
/// one).
pub(super) fn spawn_collaborators(
    sim: &mut turmoil::Sim<'_>,
    run: &Run,
    workload: &Workload,
) -> Option<String> {
    if workload.collaborators == 0 {
        return None;
    }
    let (first, count) = (workload.subscribers, workload.collaborators);
    let (gateways, end, trace) = (run.gateways.clone(), run.end, run.trace.clone());
    sim.client("collaborators", async move {
        let Some(token) = login_retrying(&gateways[0], end, &trace, "collaborators").await else {
            return Ok(());
        };
        let mut tasks = Vec::new();
        for subscriber in first..first + count {
            let gateway = &gateways[subscriber % gateways.len()];
            tasks.push(tokio::spawn(subscribe(SubscriberPlan {
                subscriber,
                host: "collaborators".to_owned(),
                address: format!("{gateway}:8001"),
                path: format!("/ws/collaboration/p-1?access_token={token}"),
                end,
                trace: trace.clone(),
                drop_event: None,
                reconnect_on_gap: true,
            })));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    });
    Some("collaborators".to_owned())
}

/// One logical subscriber's settings.
pub(super) struct SubscriberPlan {
    /// Its number, stable across reconnects.
    pub(super) subscriber: usize,
    /// The host it runs on, which records its observations.
    pub(super) host: String,
    /// The gateway's WebSocket address (`gateway-N:8001`).
    pub(super) address: String,
    /// The path, with its query (the access token); the resume point is appended to it.
    pub(super) path: String,
    /// When the run ends: it stops there.
    pub(super) end: Duration,
    /// Where it records what it sees.
    pub(super) trace: SharedTrace,
    /// The sabotage: pretend the `n`th event never arrived (neither recorded nor resumed from).
    pub(super) drop_event: Option<usize>,
    /// Reconnect after a `gap` (collaborators: their presence set may be stale after one).
    pub(super) reconnect_on_gap: bool,
}

/// A connection that sends nothing (not even the gateway's pings, every second here) for this
/// long is taken for dead: a crashed gateway never closes it.
const SILENCE: Duration = Duration::from_secs(4);

/// How long a subscriber waits before reconnecting.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// One logical subscriber: connects, records every frame, and after any disconnect reconnects
/// with its resume point (the last offset and epoch it holds), until the run ends.
pub(super) async fn subscribe(plan: SubscriberPlan) {
    let subscriber = plan.subscriber;
    let gateway = plan
        .address
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    plan.record(Observation::ClientStarted {
        subscriber,
        gateway,
    });
    let mut position = Position::default();
    let until = Instant::now()
        + plan
            .end
            .saturating_sub(turmoil::sim_elapsed().unwrap_or_default());
    while Instant::now() < until {
        let path = position.path(&plan.path);
        let Ok(mut socket) = crate::client::websocket(&plan.address, &path).await else {
            plan.record(Observation::Disconnected {
                subscriber,
                code: None,
            });
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        let resumed = position.resume.is_some();
        plan.record(Observation::Connected {
            subscriber,
            resumed,
        });
        let code = plan.read(&mut socket, until, &mut position).await;
        if Instant::now() >= until {
            break;
        }
        plan.record(Observation::Disconnected { subscriber, code });
        // The socket is dropped only after the pause, at the end of this iteration: dropping it
        // sends its close, and at another simulated moment that would make another trace.
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

impl SubscriberPlan {
    /// Records `what` as seen by this subscriber's host.
    fn record(&self, what: Observation) {
        record(&self.trace, &self.host, what);
    }

    /// Reads frames until the connection closes or fails, sends nothing for [`SILENCE`], the run
    /// ends (`until`) or, for a client that reconnects on gaps, a `gap` arrives. Records every
    /// frame it keeps and moves `position` along; returns the close code the server sent, if any.
    async fn read(
        &self,
        socket: &mut WebSocket,
        until: Instant,
        position: &mut Position,
    ) -> Option<u16> {
        loop {
            let deadline = until.min(Instant::now() + SILENCE);
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, socket.next()).await else {
                return None;
            };
            match message {
                Ok(Message::Text(text)) => {
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if !position.follow(&frame, self.drop_event) {
                        continue;
                    }
                    let gap = frame["type"] == "gap";
                    self.record(Observation::Frame {
                        subscriber: self.subscriber,
                        frame: checked_fields(frame),
                    });
                    if gap && self.reconnect_on_gap {
                        return None;
                    }
                }
                Ok(Message::Close(close)) => return close.map(|c| u16::from(c.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// Where a subscriber stands in its channel: the point it resumes from after a disconnect.
#[derive(Debug, Default)]
struct Position {
    /// The offset and epoch to resume from (`None`: not welcomed yet, start afresh).
    resume: Option<(u64, String)>,
    /// The latest welcome's offset and epoch.
    welcome: Option<(u64, String)>,
    /// Events received so far (for the sabotage that drops the `n`th).
    events_seen: usize,
}

impl Position {
    /// `path` with the resume point, if there is one, as `since` and `epoch`.
    fn path(&self, path: &str) -> String {
        match &self.resume {
            Some((offset, epoch)) => format!("{path}&since={offset}&epoch={epoch}"),
            None => path.to_owned(),
        }
    }

    /// Moves the resume point past `frame`. Returns `false` for the event the sabotage drops
    /// (`drop_event`: the `n`th), which is then neither resumed from nor recorded.
    fn follow(&mut self, frame: &Value, drop_event: Option<usize>) -> bool {
        match frame["type"].as_str() {
            Some("welcome") => {
                self.welcome = Some((
                    frame["latest_offset"].as_u64().unwrap_or(0),
                    frame["epoch"].as_str().unwrap_or_default().to_owned(),
                ));
                if self.resume.is_none() {
                    self.resume = self.welcome.clone();
                }
            }
            Some("event") => {
                self.events_seen += 1;
                if drop_event == Some(self.events_seen) {
                    return false;
                }
                self.resume = Some((
                    frame["offset"].as_u64().unwrap_or(0),
                    frame["epoch"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            Some("gap") => match frame["to_offset"].as_u64() {
                Some(to) => {
                    if let Some((_, epoch)) = self.resume.clone() {
                        self.resume = Some((to, epoch));
                    }
                }
                // The epoch changed: what follows starts the new epoch, which the welcome
                // named; resume from its beginning until an event arrives.
                None => self.resume = self.welcome.clone().map(|(_, epoch)| (0, epoch)),
            },
            _ => {}
        }
        true
    }
}

/// What the invariants read of a frame: its protocol fields, and of an event's data only the
/// workload's `seq` or a presence change's action and connection. (A scale run keeps millions of
/// frames; payloads would dominate memory.)
fn checked_fields(mut frame: Value) -> Value {
    if let Some(fields) = frame.as_object_mut() {
        fields.remove("connection_id");
        if let Some(data) = fields.remove("data") {
            if let Some(seq) = data.get("seq") {
                fields.insert("data".to_owned(), json!({ "seq": seq }));
            } else if data["type"] == "presence" {
                let change = json!({
                    "type": "presence",
                    "action": data["action"],
                    "member": { "connection": data["member"]["connection"] },
                });
                fields.insert("data".to_owned(), change);
            }
        }
    }
    frame
}
