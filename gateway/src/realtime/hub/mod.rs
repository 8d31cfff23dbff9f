//! The WebSocket hub: fans bus events out to local connections.
//!
//! - [`protocol`]: the frames, both directions, and the close codes.
//! - [`queue`]: each connection's bounded outbound queue (dedupe, gaps, conflation).
//! - [`connection`]: one connection's task: writes its queue, reads and answers client frames,
//!   pings, enforces the idle timeout and the inbound rate.
//! - [`presence`]: this instance's collaboration connections in the shared presence store.
//!
//! The hub holds one bus subscription per channel while at least one local connection needs it
//! (`events::members::ChannelMembers`: subscribe on the first, unsubscribe after the last, as
//! the Redis bus counts its own subscriptions). One pump task per
//! channel reads the subscription, serialises each event once, and offers the shared frame to
//! every connection's queue, filtered by the event's audience. After a bus interruption the pump
//! catches up from history, so connections receive what they missed in order, once.

pub mod connection;
pub mod presence;
pub mod protocol;
pub mod queue;

use std::{
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use events::{
    BusError, BusMessage, ChannelKind, ChannelName, Event, EventBus, History, Subscription,
    members::ChannelMembers,
};
use futures::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use tokio::task::JoinHandle;

use self::{
    protocol::{ServerFrame, event_frame},
    queue::OutQueue,
};

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Member {
    /// The connection's ID.
    pub connection_id: u64,
    /// The user's ID.
    pub user_id: String,
    /// The user's roles (for audience filtering).
    pub roles: Vec<String>,
    /// The ID of the token the connection authenticated with (revocations name it).
    pub token_id: String,
}

struct Subscriber {
    member: Member,
    queue: Arc<OutQueue>,
}

/// The revocations the hub must respect (the revocation log): a token revoked during a bus
/// interruption must close its connections before they are sent anything published after the
/// revocation, and must not open new ones before the gateway has heard of it.
pub trait RevocationGate: Send + Sync {
    /// Brings revocations up to date; a channel awaits it before replaying what its connections
    /// missed.
    fn catch_up(self: Arc<Self>) -> BoxFuture<'static, ()>;
    /// Whether revocations are known to be up to date (false from an interruption of their
    /// stream until they are caught up again). Connections join only while they are.
    fn is_current(&self) -> bool;
}

/// How a catch-up retries reading history the bus could not give
/// (`websocket.history_read_attempts`, `websocket.history_read_backoff_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetry {
    /// Reads before giving up until the next restoration or the next gap.
    pub attempts: u32,
    /// The wait after the first failed read; it doubles after each.
    pub backoff_initial: Duration,
}

/// The hub: channels with local subscribers, and their pumps.
pub struct Hub {
    bus: Arc<dyn EventBus>,
    history_retry: HistoryRetry,
    revocations: OnceLock<Arc<dyn RevocationGate>>,
    /// Time from the bus receiving each event to its being queued for every local subscriber.
    handoff: Histogram,
    /// Each channel's local connections, by connection ID; the first opens the channel's pump
    /// (which holds its one bus subscription), the last aborts it.
    channels: Mutex<ChannelMembers<ChannelName, JoinHandle<()>, Subscriber>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.channel_count())
            .finish_non_exhaustive()
    }
}

/// Where a joining client wants to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The last offset the client received.
    pub since: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

impl Hub {
    /// A hub reading from `bus`, recording each event's handoff in `handoff`; catch-ups retry
    /// history as `history_retry` says.
    pub fn new(
        bus: Arc<dyn EventBus>,
        handoff: Histogram,
        history_retry: HistoryRetry,
    ) -> Arc<Self> {
        Arc::new(Self {
            bus,
            history_retry,
            revocations: OnceLock::new(),
            handoff,
            channels: Mutex::new(ChannelMembers::default()),
        })
    }

    /// The bus, for publishing from collaboration clients.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    /// What `channel`'s history holds after `last` (epoch, offset): everything after that offset
    /// in the same epoch, or the whole history of a new epoch (the answer's epoch says which).
    /// Retries as configured; `None` when history stays unreachable, and then the next gap
    /// (a live event past the last one, or the next restoration) tries again.
    pub async fn read_missed(
        &self,
        channel: &ChannelName,
        last: Option<&(String, u64)>,
    ) -> Option<History> {
        let HistoryRetry {
            attempts,
            mut backoff_initial,
        } = self.history_retry;
        for attempt in 1..=attempts {
            let after = last.map_or(0, |(_, offset)| *offset);
            let read = match self.bus.history(channel, after).await {
                Ok(history) if last.is_some_and(|(epoch, _)| *epoch != history.epoch) => {
                    self.bus.history(channel, 0).await
                }
                other => other,
            };
            match read {
                Ok(history) => return Some(history),
                Err(error) => {
                    tracing::warn!(%channel, %error, attempt, "reading missed events from history failed");
                    if attempt < attempts {
                        tokio::time::sleep(backoff_initial).await;
                        backoff_initial *= 2;
                    }
                }
            }
        }
        None
    }

    /// Sets the revocations every join checks and every catch-up awaits (once; later calls are
    /// ignored).
    pub fn set_revocation_gate(&self, gate: Arc<dyn RevocationGate>) {
        let _ = self.revocations.set(gate);
    }

    /// How many channels have local subscribers.
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    /// How many local connections are subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.lock()
            .get(channel)
            .map_or(0, |members| members.by_id.len())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, ChannelMembers<ChannelName, JoinHandle<()>, Subscriber>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes a connection: registers it (live events buffer in its queue), sends `welcome`,
    /// replays what it missed since `resume` (or reports the gap), then lets live events flow.
    pub async fn join(
        self: &Arc<Self>,
        channel: &ChannelName,
        member: Member,
        queue: Arc<OutQueue>,
        resume: Option<ResumePoint>,
    ) -> Result<(), BusError> {
        if self
            .revocations
            .get()
            .is_some_and(|gate| !gate.is_current())
        {
            return Err(BusError::Unavailable(
                "revocations are being caught up after a bus interruption".into(),
            ));
        }
        self.register(channel, member.clone(), queue.clone());
        let start_after = resume.as_ref().map_or(u64::MAX, |r| r.since);
        let history = match self
            .bus
            .history(channel, start_after.min(u64::MAX - 1))
            .await
        {
            Ok(history) => history,
            Err(error) => {
                self.leave(channel, member.connection_id);
                return Err(error);
            }
        };
        queue.push_control(&ServerFrame::Welcome {
            connection_id: &member.connection_id.to_string(),
            channel: channel.as_str(),
            epoch: &history.epoch,
            latest_offset: history.latest_offset,
        });
        match resume {
            Some(mut resume) if resume.epoch == history.epoch => {
                // A resume point past the newest offset cannot be real; holding to it would drop
                // the next events as "already delivered". Resume from the newest instead.
                resume.since = resume.since.min(history.latest_offset);
                queue.start_at(&history.epoch, resume.since);
                self.replay(channel, &member, &queue, &history, resume.since);
            }
            Some(resume) => {
                // Nothing of the old epoch can be recovered; the new epoch's history can, from
                // its first offset, so nothing published in it is lost unreported either.
                queue.push_control(&ServerFrame::Gap {
                    channel: channel.as_str(),
                    // The endpoint refuses `since = u64::MAX`; saturating keeps the hub whole
                    // whoever calls it.
                    from_offset: resume.since.saturating_add(1),
                    to_offset: None,
                    reason: "epoch_changed",
                });
                let history = match self.bus.history(channel, 0).await {
                    Ok(history) => history,
                    Err(error) => {
                        self.leave(channel, member.connection_id);
                        return Err(error);
                    }
                };
                queue.start_at(&history.epoch, 0);
                self.replay(channel, &member, &queue, &history, 0);
            }
            None => queue.start_at(&history.epoch, history.latest_offset),
        }
        queue.go_live();
        Ok(())
    }

    /// Queues what `history` holds after `since` (the queue already starts there), reporting
    /// first, as a gap, what it no longer holds.
    fn replay(
        &self,
        channel: &ChannelName,
        member: &Member,
        queue: &OutQueue,
        history: &History,
        since: u64,
    ) {
        if history.oldest_offset > since.saturating_add(1) {
            queue.push_control(&ServerFrame::Gap {
                channel: channel.as_str(),
                from_offset: since + 1,
                to_offset: Some(history.oldest_offset - 1),
                reason: "history_trimmed",
            });
            queue.start_at(&history.epoch, history.oldest_offset - 1);
        }
        for event in history.events.iter().filter(|event| event.offset > since) {
            let frame: Utf8Bytes = event_frame(event).as_ref().into();
            let admitted = event.is_for(&member.user_id, &member.roles);
            queue.push_event(event, &frame, admitted, true);
        }
    }

    fn register(self: &Arc<Self>, channel: &ChannelName, member: Member, queue: Arc<OutQueue>) {
        let id = member.connection_id;
        self.lock()
            .join(channel.clone(), id, Subscriber { member, queue }, || {
                let subscription = self.bus.subscribe(channel);
                tokio::spawn(pump(Arc::downgrade(self), subscription))
            });
    }

    /// Removes a connection; the channel's subscription ends with its last local subscriber.
    pub fn leave(&self, channel: &ChannelName, connection_id: u64) {
        if let Some(pump) = self.lock().leave(channel, connection_id) {
            // Aborting the pump drops the bus subscription, which unsubscribes.
            pump.abort();
        }
    }

    /// Closes every connection for which `condition(channel, member)` holds (revocations).
    /// Returns how many were closed.
    pub fn close_where(
        &self,
        condition: impl Fn(&ChannelName, &Member) -> bool,
        code: u16,
        reason: &'static str,
    ) -> usize {
        let channels = self.lock();
        let mut closed = 0;
        for (channel, members) in channels.iter() {
            for subscriber in members.by_id.values() {
                if condition(channel, &subscriber.member) {
                    subscriber.queue.close(code, reason);
                    closed += 1;
                }
            }
        }
        closed
    }

    /// Offers one event to every local subscriber of its channel, serialised once: what the pump
    /// does with each event from the bus (public for the fan-out benchmark).
    pub fn dispatch(&self, channel: &ChannelName, event: &Arc<Event>) {
        let frame: Utf8Bytes = event_frame(event).as_ref().into();
        let channels = self.lock();
        let Some(members) = channels.get(channel) else {
            return;
        };
        for subscriber in members.by_id.values() {
            let member = &subscriber.member;
            let admitted = event.is_for(&member.user_id, &member.roles);
            subscriber.queue.push_event(event, &frame, admitted, false);
        }
    }

    fn notify_all(&self, channel: &ChannelName, frame: &ServerFrame<'_>) {
        let channels = self.lock();
        if let Some(members) = channels.get(channel) {
            for subscriber in members.by_id.values() {
                subscriber.queue.push_control(frame);
            }
        }
    }
}

/// Whether a channel kind conflates when a client falls behind (only the newest state matters).
pub fn conflates(kind: ChannelKind) -> bool {
    kind == ChannelKind::Simulation
}

/// Reads one channel's subscription until the hub or the subscription goes away.
async fn pump(hub: Weak<Hub>, mut subscription: Subscription) {
    let channel = subscription.channel().clone();
    let mut last: Option<(String, u64)> = None;
    while let Some(message) = subscription.next().await {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        match message {
            BusMessage::Event { event, received_at }
                if last
                    .as_ref()
                    .is_some_and(|(epoch, _)| *epoch != event.epoch) =>
            {
                // Epochs have no order: this may be a stale event of the epoch before the last
                // catch-up (delivered late, queued behind a restoration), or the first of a newer
                // one. History says which epoch is current; its events go out, a stale one never.
                tracing::debug!(%channel, epoch = %event.epoch, "live event of another epoch; catching up from history");
                for event in catch_up(&hub, &channel, last.as_ref()).await {
                    last = Some((event.epoch.clone(), event.offset));
                    hub.dispatch(&channel, &event);
                }
                hub.handoff.observe(received_at.elapsed().as_secs_f64());
            }
            BusMessage::Event { event, received_at } => {
                last = Some((event.epoch.clone(), event.offset));
                hub.dispatch(&channel, &event);
                hub.handoff.observe(received_at.elapsed().as_secs_f64());
            }
            BusMessage::Interrupted => hub.notify_all(
                &channel,
                &ServerFrame::Error {
                    code: "delivery_interrupted",
                    message: "event delivery is interrupted; missed events follow when it resumes",
                },
            ),
            BusMessage::Restored => {
                if let Some(gate) = hub.revocations.get() {
                    gate.clone().catch_up().await;
                }
                // Catch up from history: each queue drops what it already has, and reports what
                // history no longer holds (or an epoch change) as a gap.
                for event in catch_up(&hub, &channel, last.as_ref()).await {
                    last = Some((event.epoch.clone(), event.offset));
                    hub.dispatch(&channel, &event);
                }
            }
        }
    }
}

/// What the channel's history holds after `last`, to dispatch after a bus interruption or an
/// epoch change ([`Hub::read_missed`]); nothing if history stays unreachable, and then the next
/// live event shows each connection the hole as a `missed` gap.
async fn catch_up(
    hub: &Hub,
    channel: &ChannelName,
    last: Option<&(String, u64)>,
) -> Vec<Arc<Event>> {
    hub.read_missed(channel, last)
        .await
        .map_or_else(Vec::new, |history| history.events)
}

#[cfg(test)]
mod tests {
    use events::{MemoryBus, Publisher as _, memory::MemoryBusConfig};
    use serde_json::value::RawValue;

    use super::*;

    fn event(epoch: &str, offset: u64) -> BusMessage {
        let event = serde_json::from_str(&format!(
            r#"{{"channel":"user:u-1","offset":{offset},"epoch":"{epoch}","data":{offset}}}"#
        ))
        .unwrap();
        BusMessage::Event {
            event: Arc::new(event),
            received_at: tokio::time::Instant::now(),
        }
    }

    /// Every text frame queued so far, as JSON.
    fn frames(queue: &OutQueue) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| match queue.try_next() {
            Some(queue::Outbound::Text(text)) => Some(serde_json::from_str(text.as_str()).unwrap()),
            _ => None,
        })
        .collect()
    }

    /// A restoration's catch-up read the current epoch; an event of the epoch before, published
    /// just before Redis lost its data and queued behind the restoration, arrives after it. It
    /// must not take the connections back to the lost epoch (the simulation saw them flip to
    /// it, with a gap, and then back again, receiving the new epoch's events twice).
    #[tokio::test]
    async fn a_late_event_of_an_earlier_epoch_is_dropped_not_delivered() {
        let bus = MemoryBus::new(MemoryBusConfig::default(), "current".to_owned());
        let channel = ChannelName::parse("user:u-1").unwrap();
        for n in 1..=2 {
            let data = RawValue::from_string(n.to_string()).unwrap();
            bus.publish(&channel, None, data).await.unwrap();
        }
        let hub = Hub::new(
            Arc::new(bus),
            Histogram::new([1.0].into_iter()),
            HistoryRetry {
                attempts: 1,
                backoff_initial: Duration::from_millis(1),
            },
        );
        let queue = Arc::new(OutQueue::new(channel.as_str(), 16, false));
        let member = Member {
            connection_id: 1,
            user_id: "u-1".to_owned(),
            roles: Vec::new(),
            token_id: "t-1".to_owned(),
        };
        hub.join(&channel, member, queue.clone(), None)
            .await
            .unwrap();
        assert_eq!(frames(&queue)[0]["type"], "welcome");

        let messages = [event("current", 3), event("lost", 51), event("current", 4)];
        let subscription = Subscription::new(channel.clone(), futures::stream::iter(messages));
        pump(Arc::downgrade(&hub), subscription).await;

        let delivered: Vec<(String, u64)> = frames(&queue)
            .iter()
            .map(|frame| {
                assert_eq!(frame["type"], "event", "{frame}");
                let epoch = frame["epoch"].as_str().unwrap().to_owned();
                (epoch, frame["offset"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            delivered,
            [("current".to_owned(), 3), ("current".to_owned(), 4)]
        );
    }
}
