//! This instance's side of presence on collaboration channels (the store and its events are
//! `events::presence`): it joins each collaboration connection, heartbeats every connection it
//! holds, and leaves when the connection ends.
//!
//! Joins, leaves and heartbeats of one channel are serialised by a per-channel lock held across
//! the store call. Without it, a heartbeat that read the member list just before a connection
//! left could reach the store after the leave and bring the member back as a ghost.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use events::{BusError, ChannelName, EventBus, PresenceMember, PresenceState};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::drain::Drain;

/// How many channels' heartbeats are in flight at once.
const HEARTBEATS_IN_FLIGHT: usize = 32;

/// The collaboration connections of one channel on this instance.
#[derive(Default)]
struct LocalMembers {
    members: BTreeMap<u64, PresenceMember>,
    /// Set, under the lock, when the empty entry is dropped from the map: a join that fetched
    /// it just before must fetch a fresh one, or its member would never be heartbeated.
    retired: bool,
}

type ChannelMembers = Arc<tokio::sync::Mutex<LocalMembers>>;

/// Presence of this instance's collaboration connections.
pub struct PresenceTracker {
    bus: Arc<dyn EventBus>,
    instance_id: String,
    ttl: Duration,
    channels: Mutex<BTreeMap<ChannelName, ChannelMembers>>,
}

impl std::fmt::Debug for PresenceTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceTracker")
            .field("instance_id", &self.instance_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PresenceTracker {
    /// A tracker whose entries are named `<instance_id>.<connection id>` and live `ttl` without a
    /// heartbeat.
    pub fn new(bus: Arc<dyn EventBus>, instance_id: String, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            bus,
            instance_id,
            ttl,
            channels: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ChannelName, ChannelMembers>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How a local connection is named in presence: `<instance>.<connection id>`.
    pub fn connection_name(&self, connection_id: u64) -> String {
        format!("{}.{connection_id}", self.instance_id)
    }

    /// Adds a connection to the channel's presence (announced to everyone as a `join` event) and
    /// returns the state as of that event.
    pub async fn join(
        &self,
        channel: &ChannelName,
        connection_id: u64,
        user_id: &str,
        username: &str,
    ) -> Result<PresenceState, BusError> {
        let member = PresenceMember {
            connection: self.connection_name(connection_id),
            user_id: user_id.to_owned(),
            username: username.to_owned(),
        };
        loop {
            let entry = self.lock().entry(channel.clone()).or_default().clone();
            let mut local = entry.lock().await;
            if local.retired {
                continue;
            }
            let state = self
                .bus
                .presence_join(channel, member.clone(), self.ttl)
                .await?;
            local.members.insert(connection_id, member);
            return Ok(state);
        }
    }

    /// Removes a connection (announced as `leave`). If the store cannot be reached, the entry
    /// expires on its own, announced as `expire`.
    pub async fn leave(&self, channel: &ChannelName, connection_id: u64) {
        let Some(entry) = self.lock().get(channel).cloned() else {
            return;
        };
        let mut local = entry.lock().await;
        let Some(member) = local.members.remove(&connection_id) else {
            return;
        };
        if let Err(error) = self.bus.presence_leave(channel, &member.connection).await {
            tracing::warn!(%channel, %error, "presence leave failed; the entry will expire");
        }
    }

    /// How many connections this instance holds present on `channel`.
    pub async fn local_count(&self, channel: &ChannelName) -> usize {
        let entry = self.lock().get(channel).cloned();
        match entry {
            Some(entry) => entry.lock().await.members.len(),
            None => 0,
        }
    }

    /// Extends every entry this instance holds (restoring any that expired meanwhile), and drops
    /// channels left without local members.
    pub async fn heartbeat(&self) {
        let channels: Vec<(ChannelName, ChannelMembers)> = self
            .lock()
            .iter()
            .map(|(channel, entry)| (channel.clone(), entry.clone()))
            .collect();
        futures::stream::iter(channels)
            .for_each_concurrent(HEARTBEATS_IN_FLIGHT, |(channel, entry)| async move {
                let mut local = entry.lock().await;
                if local.members.is_empty() {
                    local.retired = true;
                    let mut channels = self.lock();
                    if channels
                        .get(&channel)
                        .is_some_and(|current| Arc::ptr_eq(current, &entry))
                    {
                        channels.remove(&channel);
                    }
                    return;
                }
                let members = local.members.values().cloned().collect();
                if let Err(error) = self
                    .bus
                    .presence_heartbeat(&channel, members, self.ttl)
                    .await
                {
                    tracing::warn!(%channel, %error, "presence heartbeat failed");
                }
            })
            .await;
    }

    /// Heartbeats every `interval` until the tracker is dropped or the drain starts.
    pub fn spawn_heartbeats(
        self: &Arc<Self>,
        interval: Duration,
        mut drain: Drain,
    ) -> JoinHandle<()> {
        let tracker: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // The first tick is immediate; entries were just written.
            loop {
                tokio::select! {
                    biased;
                    () = drain.started() => return,
                    _ = ticks.tick() => {}
                }
                let Some(tracker) = tracker.upgrade() else {
                    return;
                };
                tracker.heartbeat().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use events::{EventBus, MemoryBus, memory::MemoryBusConfig};

    use super::*;

    fn tracker(ttl: Duration) -> (Arc<PresenceTracker>, Arc<dyn EventBus>) {
        let bus: Arc<dyn EventBus> =
            Arc::new(MemoryBus::new(MemoryBusConfig::default(), "e".into()));
        (PresenceTracker::new(bus.clone(), "i1".into(), ttl), bus)
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_members_present_and_leave_removes_them() {
        let (tracker, bus) = tracker(Duration::from_secs(3));
        let channel = ChannelName::parse("project:p-1").unwrap();
        let state = tracker.join(&channel, 7, "u-1", "alice").await.unwrap();
        assert_eq!(state.members[0].connection, "i1.7");
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(2)).await;
            tracker.heartbeat().await;
        }
        assert_eq!(bus.presence_state(&channel).await.unwrap().members.len(), 1);
        tracker.leave(&channel, 7).await;
        assert!(
            bus.presence_state(&channel)
                .await
                .unwrap()
                .members
                .is_empty()
        );
        assert_eq!(tracker.local_count(&channel).await, 0);
        // The next heartbeat retires the empty channel; a later join works on a fresh entry.
        tracker.heartbeat().await;
        assert!(tracker.lock().is_empty());
        tracker.join(&channel, 8, "u-1", "alice").await.unwrap();
        assert_eq!(tracker.local_count(&channel).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_heartbeats_members_expire() {
        let (tracker, bus) = tracker(Duration::from_secs(3));
        let channel = ChannelName::parse("project:p-1").unwrap();
        tracker.join(&channel, 1, "u-1", "alice").await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(
            bus.presence_state(&channel)
                .await
                .unwrap()
                .members
                .is_empty()
        );
        // The next heartbeat brings the live connection back.
        tracker.heartbeat().await;
        assert_eq!(bus.presence_state(&channel).await.unwrap().members.len(), 1);
    }
}
