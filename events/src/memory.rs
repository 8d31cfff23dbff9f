//! The embedded, single-process bus: bounded history per channel and broadcast to live
//! subscribers, all in memory. It follows exactly the contract the Redis bus follows.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use serde_json::value::RawValue;
use tokio::{
    sync::{broadcast, watch},
    time::Instant,
};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use crate::{
    Audience, BusError, BusMessage, BusStatus, ChannelName, Event, EventBus, History, Publisher,
    Subscription,
    presence::{Presence, PresenceAction, PresenceChange, PresenceMember, PresenceState},
};

/// Sizes of the in-memory bus.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBusConfig {
    /// Events kept per channel for recovery.
    pub history_len_max: usize,
    /// Live events buffered per subscriber before it is told it was interrupted.
    pub subscriber_queue_len_max: usize,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        Self {
            history_len_max: 1_000,
            subscriber_queue_len_max: 1_024,
        }
    }
}

struct ChannelState {
    next_offset: u64,
    history: VecDeque<Arc<Event>>,
    /// Live events, stamped with when they were published.
    live: broadcast::Sender<(Arc<Event>, Instant)>,
    /// Presence entries by connection: when each expires, and who it is.
    presence: BTreeMap<String, (Instant, PresenceMember)>,
}

impl ChannelState {
    /// The publishing step: next offset, history append, broadcast. Called under the bus lock,
    /// so it is atomic as the Redis script is.
    fn append(
        &mut self,
        channel: &ChannelName,
        epoch: &str,
        audience: Option<Audience>,
        data: Box<RawValue>,
        history_len_max: usize,
    ) -> Arc<Event> {
        let event = Arc::new(Event {
            channel: channel.as_str().to_owned(),
            offset: self.next_offset,
            epoch: epoch.to_owned(),
            audience,
            data,
        });
        self.next_offset += 1;
        self.history.push_back(event.clone());
        while self.history.len() > history_len_max {
            self.history.pop_front();
        }
        // No live subscriber is not an error: the event is in history.
        let _ = self.live.send((event.clone(), Instant::now()));
        event
    }

    /// Removes expired presence entries, announcing each (`expire`).
    fn sweep_presence(&mut self, channel: &ChannelName, epoch: &str, history_len_max: usize) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .presence
            .iter()
            .filter(|(_, (expiry, _))| *expiry <= now)
            .map(|(connection, _)| connection.clone())
            .collect();
        for connection in expired {
            if let Some((_, member)) = self.presence.remove(&connection) {
                let data = PresenceChange::data(PresenceAction::Expire, &member);
                self.append(channel, epoch, None, data, history_len_max);
            }
        }
    }

    fn presence_state(&self, epoch: &str) -> PresenceState {
        PresenceState {
            epoch: epoch.to_owned(),
            offset: self.next_offset - 1,
            members: self.presence.values().map(|(_, m)| m.clone()).collect(),
        }
    }
}

/// The in-memory bus. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: MemoryBusConfig,
    epoch: String,
    channels: Mutex<BTreeMap<ChannelName, ChannelState>>,
    status: watch::Sender<BusStatus>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("epoch", &self.inner.epoch)
            .finish_non_exhaustive()
    }
}

impl MemoryBus {
    /// A bus whose channels all start in `epoch` (derive it from the seeded RNG: a new process
    /// has lost every history, so it must not reuse an old epoch).
    pub fn new(config: MemoryBusConfig, epoch: String) -> Self {
        let (status, _) = watch::channel(BusStatus::Delivering);
        Self {
            inner: Arc::new(Inner {
                config,
                epoch,
                channels: Mutex::new(BTreeMap::new()),
                status,
            }),
        }
    }

    fn with_channel<T>(&self, channel: &ChannelName, f: impl FnOnce(&mut ChannelState) -> T) -> T {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let state = channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelState {
                next_offset: 1,
                history: VecDeque::new(),
                live: broadcast::channel(self.inner.config.subscriber_queue_len_max.max(1)).0,
                presence: BTreeMap::new(),
            });
        f(state)
    }
}

impl Publisher for MemoryBus {
    fn publish(
        &self,
        channel: &ChannelName,
        audience: Option<Audience>,
        data: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Arc<Event>, BusError>> {
        let history_len_max = self.inner.config.history_len_max;
        let epoch = self.inner.epoch.clone();
        // Offset assignment, history append and broadcast happen under one lock: atomic, as the
        // Redis script is.
        let event = self.with_channel(channel, |state| {
            state.append(channel, &epoch, audience, data, history_len_max)
        });
        Box::pin(async move { Ok(event) })
    }
}

impl EventBus for MemoryBus {
    fn subscribe(&self, channel: &ChannelName) -> Subscription {
        let receiver = self.with_channel(channel, |state| state.live.subscribe());
        let messages = BroadcastStream::new(receiver).flat_map(|item| {
            let messages = match item {
                Ok((event, received_at)) => vec![BusMessage::Event { event, received_at }],
                // The subscriber fell behind and the oldest live events were dropped: tell it,
                // and let it catch up from history at once (delivery itself is fine).
                Err(BroadcastStreamRecvError::Lagged(_)) => {
                    vec![BusMessage::Interrupted, BusMessage::Restored]
                }
            };
            futures::stream::iter(messages)
        });
        Subscription::new(channel.clone(), messages)
    }

    fn history(
        &self,
        channel: &ChannelName,
        after_offset: u64,
    ) -> BoxFuture<'static, Result<History, BusError>> {
        let epoch = self.inner.epoch.clone();
        let history = self.with_channel(channel, |state| History {
            epoch,
            events: state
                .history
                .iter()
                .filter(|event| event.offset > after_offset)
                .cloned()
                .collect(),
            oldest_offset: state.history.front().map_or(0, |event| event.offset),
            latest_offset: state.next_offset - 1,
        });
        Box::pin(async move { Ok(history) })
    }

    fn status(&self) -> watch::Receiver<BusStatus> {
        self.inner.status.subscribe()
    }
}

impl Presence for MemoryBus {
    fn presence_join(
        &self,
        channel: &ChannelName,
        member: PresenceMember,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        let (epoch, len) = (self.inner.epoch.clone(), self.inner.config.history_len_max);
        let state = self.with_channel(channel, |state| {
            state.sweep_presence(channel, &epoch, len);
            let data = PresenceChange::data(PresenceAction::Join, &member);
            state
                .presence
                .insert(member.connection.clone(), (Instant::now() + ttl, member));
            state.append(channel, &epoch, None, data, len);
            state.presence_state(&epoch)
        });
        Box::pin(async move { Ok(state) })
    }

    fn presence_leave(
        &self,
        channel: &ChannelName,
        connection: &str,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let (epoch, len) = (self.inner.epoch.clone(), self.inner.config.history_len_max);
        self.with_channel(channel, |state| {
            state.sweep_presence(channel, &epoch, len);
            if let Some((_, member)) = state.presence.remove(connection) {
                let data = PresenceChange::data(PresenceAction::Leave, &member);
                state.append(channel, &epoch, None, data, len);
            }
        });
        Box::pin(async move { Ok(()) })
    }

    fn presence_heartbeat(
        &self,
        channel: &ChannelName,
        members: Vec<PresenceMember>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let (epoch, len) = (self.inner.epoch.clone(), self.inner.config.history_len_max);
        self.with_channel(channel, |state| {
            state.sweep_presence(channel, &epoch, len);
            let expiry = Instant::now() + ttl;
            for member in members {
                match state.presence.get_mut(&member.connection) {
                    Some(entry) => entry.0 = expiry,
                    None => {
                        let data = PresenceChange::data(PresenceAction::Join, &member);
                        state
                            .presence
                            .insert(member.connection.clone(), (expiry, member));
                        state.append(channel, &epoch, None, data, len);
                    }
                }
            }
        });
        Box::pin(async move { Ok(()) })
    }

    fn presence_state(
        &self,
        channel: &ChannelName,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        let (epoch, len) = (self.inner.epoch.clone(), self.inner.config.history_len_max);
        let state = self.with_channel(channel, |state| {
            state.sweep_presence(channel, &epoch, len);
            state.presence_state(&epoch)
        });
        Box::pin(async move { Ok(state) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn offsets_increase_by_one_and_history_is_bounded() {
        let bus = MemoryBus::new(
            MemoryBusConfig {
                history_len_max: 3,
                subscriber_queue_len_max: 8,
            },
            "e1".into(),
        );
        let channel = ChannelName::parse("simulation:s-1").unwrap();
        for index in 1..=5u64 {
            let event = bus
                .publish(&channel, None, data(&index.to_string()))
                .await
                .unwrap();
            assert_eq!(event.offset, index);
            assert_eq!(event.epoch, "e1");
        }
        let history = bus.history(&channel, 0).await.unwrap();
        assert_eq!(history.oldest_offset, 3);
        assert_eq!(history.latest_offset, 5);
        let offsets: Vec<u64> = history.events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        let after_four = bus.history(&channel, 4).await.unwrap();
        assert_eq!(after_four.events.len(), 1);
    }

    #[tokio::test]
    async fn subscribers_receive_live_events_and_are_told_when_they_lag() {
        let bus = MemoryBus::new(
            MemoryBusConfig {
                history_len_max: 100,
                subscriber_queue_len_max: 2,
            },
            "e1".into(),
        );
        let channel = ChannelName::parse("user:u-1").unwrap();
        let mut subscription = bus.subscribe(&channel);
        bus.publish(&channel, None, data("1")).await.unwrap();
        match subscription.next().await {
            Some(BusMessage::Event { event, .. }) => assert_eq!(event.offset, 1),
            other => panic!("expected event 1, got {other:?}"),
        }
        for index in 2..=6 {
            bus.publish(&channel, None, data(&index.to_string()))
                .await
                .unwrap();
        }
        assert!(matches!(
            subscription.next().await,
            Some(BusMessage::Interrupted)
        ));
        assert!(matches!(
            subscription.next().await,
            Some(BusMessage::Restored)
        ));
    }

    fn member(connection: &str, user_id: &str) -> PresenceMember {
        PresenceMember {
            connection: connection.into(),
            user_id: user_id.into(),
            username: user_id.into(),
        }
    }

    async fn presence_data(subscription: &mut Subscription) -> PresenceChange {
        match subscription.next().await {
            Some(BusMessage::Event { event, .. }) => {
                serde_json::from_str(event.data.get()).unwrap()
            }
            other => panic!("expected a presence event, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn presence_joins_leaves_and_expires_with_an_event_for_each_change() {
        let bus = MemoryBus::new(MemoryBusConfig::default(), "e1".into());
        let channel = ChannelName::parse("project:p-1").unwrap();
        let mut events = bus.subscribe(&channel);
        let ttl = Duration::from_secs(3);

        let state = bus
            .presence_join(&channel, member("a.1", "u-1"), ttl)
            .await
            .unwrap();
        assert_eq!(state.members, [member("a.1", "u-1")]);
        assert_eq!(state.offset, 1, "the state is as of the join event");
        assert_eq!(
            presence_data(&mut events).await.action,
            PresenceAction::Join
        );
        let state = bus
            .presence_join(&channel, member("b.1", "u-2"), ttl)
            .await
            .unwrap();
        assert_eq!(state.members.len(), 2);
        assert_eq!(
            presence_data(&mut events).await.action,
            PresenceAction::Join
        );

        // a.1 keeps heartbeating, b.1 does not: b.1 expires and is announced once.
        tokio::time::advance(Duration::from_secs(2)).await;
        bus.presence_heartbeat(&channel, vec![member("a.1", "u-1")], ttl)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let state = bus.presence_state(&channel).await.unwrap();
        assert_eq!(state.members, [member("a.1", "u-1")]);
        let expired = presence_data(&mut events).await;
        assert_eq!(
            (expired.action, expired.member),
            (PresenceAction::Expire, member("b.1", "u-2"))
        );

        // A heartbeat for an entry that is gone brings it back, announced.
        bus.presence_heartbeat(&channel, vec![member("b.1", "u-2")], ttl)
            .await
            .unwrap();
        assert_eq!(
            presence_data(&mut events).await.action,
            PresenceAction::Join
        );

        bus.presence_leave(&channel, "a.1").await.unwrap();
        let left = presence_data(&mut events).await;
        assert_eq!(
            (left.action, left.member),
            (PresenceAction::Leave, member("a.1", "u-1"))
        );
        // Leaving twice announces nothing more.
        bus.presence_leave(&channel, "a.1").await.unwrap();
        let state = bus.presence_state(&channel).await.unwrap();
        assert_eq!(state.members, [member("b.1", "u-2")]);
        assert_eq!(state.offset, 5, "join, join, expire, join, leave");
    }
}
