//! The Redis bus: the production [`EventBus`], shared by every gateway instance through one Redis.
//!
//! - Publishing is one Lua script ([`PUBLISH_SCRIPT`], `redis_bus/publish.lua`): assign the next
//!   offset of the channel's epoch, append to the channel's bounded Stream, `PUBLISH` the
//!   envelope. Backends in other languages run the same script (see `docs/events.md`).
//! - History is read by a second script ([`HISTORY_SCRIPT`]) so epoch, newest offset and events
//!   come from one snapshot.
//! - Presence is a third script ([`PRESENCE_SCRIPT`]): a sorted set of expiries (Redis `TIME`)
//!   and a hash of members per channel, each change announced through the publishing step.
//! - Live events arrive on one pub/sub connection per bus. A channel is `SUBSCRIBE`d while at
//!   least one local [`Subscription`] needs it; each message is parsed once into an
//!   `Arc<Event>` and handed to every local subscriber's bounded queue.
//! - Every connection is dialled through the [`Net`] seam ([`RedisLink`]), so the same code runs
//!   in simulation.
//! - The connection task reconnects without limit (capped exponential backoff with seeded
//!   jitter). While it is down the status is [`BusStatus::Broken`] and every subscription has
//!   been told [`BusMessage::Interrupted`]; once every channel is subscribed again the status is
//!   [`BusStatus::Delivering`] and every subscription gets [`BusMessage::Restored`].
//! - The task stops when the last clone of the [`RedisBus`] is dropped; subscriptions then end.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use redis::{
    Script,
    aio::{PubSub, PubSubSink},
};
use seams::Net;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use crate::{
    Audience, BusError, BusMessage, BusStatus, ChannelName, Event, EventBus, History, Publisher,
    Subscription,
    presence::{Presence, PresenceMember, PresenceState},
};

pub mod link;

pub use link::RedisLink;

/// The publishing step, verbatim; `docs/events.md` documents its keys and arguments.
pub const PUBLISH_SCRIPT: &str = include_str!("redis_bus/publish.lua");

/// The history read, verbatim.
pub const HISTORY_SCRIPT: &str = include_str!("redis_bus/history.lua");

/// Presence (`redis_bus/presence.lua`), with the publishing step in front of it as a local
/// function: Lua scripts cannot call each other, and presence changes must be announced by the
/// very same step every publisher runs. Parameters named `KEYS` and `ARGV` shadow the globals,
/// so `publish.lua` runs unchanged inside the function.
pub const PRESENCE_SCRIPT: &str = concat!(
    "local function publish_event(KEYS, ARGV)\n",
    include_str!("redis_bus/publish.lua"),
    "end\n",
    include_str!("redis_bus/presence.lua"),
);

/// The key holding a channel's current epoch. The channel sits in a hash tag (`{...}`), so all
/// of a channel's keys and its pub/sub channel hash to one Redis Cluster slot.
pub fn epoch_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:epoch")
}

/// The key holding a channel's newest offset in its epoch.
pub fn offset_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:offset")
}

/// The Stream holding a channel's bounded history.
pub fn history_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:history")
}

/// The sorted set of a channel's presence entries: connection → expiry (ms, Redis `TIME`).
pub fn presence_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:presence")
}

/// The hash of a channel's present members: connection → member JSON.
pub fn presence_members_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:presence:members")
}

/// The pub/sub channel a channel's envelopes are published on.
pub fn pubsub_channel(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}")
}

/// The channel name inside a pub/sub channel name, if it is one of ours.
fn channel_of_pubsub(name: &str) -> Option<&str> {
    name.strip_prefix("events:{")?.strip_suffix('}')
}

/// Configuration of the Redis bus. Every field has a default; `validate` runs at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisBusConfig {
    /// Redis address, `host:port`, dialled through the `Net` seam. Default `127.0.0.1:6379`.
    pub address: String,
    /// Events kept per channel for recovery (the Stream is trimmed with `MAXLEN ~`, and only
    /// the newest this many count as history). Default 1,000.
    pub history_len_max: usize,
    /// Live events buffered per subscription before it is told it was interrupted (and then
    /// restored, so it catches up from history). Default 1,024.
    pub subscriber_queue_len_max: usize,
    /// Bound on every Redis command, including connecting when needed: publishing and history
    /// answer `BusError::Unavailable` after this long. Default 1,000 ms.
    pub command_timeout_ms: u64,
    /// Bound on establishing a connection (dial and handshake). Default 1,000 ms.
    pub connect_timeout_ms: u64,
    /// First delay before reconnecting the pub/sub connection; doubled per failed attempt.
    /// Default 100 ms.
    pub reconnect_backoff_initial_ms: u64,
    /// Cap on the reconnect delay. Default 5,000 ms.
    pub reconnect_backoff_max_ms: u64,
    /// Interval of the `PING` that detects a silently dead pub/sub connection (its answer is
    /// bounded by `command_timeout_ms`). Default 1,000 ms.
    pub keepalive_interval_ms: u64,
    /// Seeds the epoch generator and the reconnect jitter. Give each process a different seed
    /// (the binary draws it from its seeded RNG; a simulation from its seed): epochs of one
    /// channel must never repeat. Default 0.
    pub rng_seed: u64,
}

impl Default for RedisBusConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:6379".to_owned(),
            history_len_max: 1_000,
            subscriber_queue_len_max: 1_024,
            command_timeout_ms: 1_000,
            connect_timeout_ms: 1_000,
            reconnect_backoff_initial_ms: 100,
            reconnect_backoff_max_ms: 5_000,
            keepalive_interval_ms: 1_000,
            rng_seed: 0,
        }
    }
}

/// Why a [`RedisBusConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis bus configuration: {0}")]
pub struct InvalidRedisBusConfig(&'static str);

impl RedisBusConfig {
    /// Checks the limits once, at start-up.
    pub fn validate(&self) -> Result<(), InvalidRedisBusConfig> {
        let fail = |reason| Err(InvalidRedisBusConfig(reason));
        if self
            .address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return fail("address must be host:port");
        }
        if self.history_len_max == 0 {
            return fail("history_len_max must be at least 1");
        }
        if self.subscriber_queue_len_max == 0 {
            return fail("subscriber_queue_len_max must be at least 1");
        }
        if self.command_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return fail("command_timeout_ms and connect_timeout_ms must be positive");
        }
        if self.reconnect_backoff_initial_ms == 0
            || self.reconnect_backoff_initial_ms > self.reconnect_backoff_max_ms
        {
            return fail("reconnect backoff: 0 < initial <= max");
        }
        if self.keepalive_interval_ms == 0 {
            return fail("keepalive_interval_ms must be positive");
        }
        Ok(())
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// The Redis bus. Cheap to clone; clones share one pub/sub connection and one command
/// connection. The connection task stops when the last clone is dropped.
pub struct RedisBus<N: Net> {
    shared: Arc<Shared<N>>,
    _owner: Arc<Owner>,
}

impl<N: Net> Clone for RedisBus<N> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<N: Net> std::fmt::Debug for RedisBus<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("address", &self.shared.config.address)
            .finish_non_exhaustive()
    }
}

/// Held by every clone of the bus; dropping the last one closes `stop` and the task ends.
struct Owner {
    _stop: watch::Sender<()>,
}

struct Shared<N> {
    /// Dials Redis and holds the command connection.
    link: RedisLink<N>,
    config: RedisBusConfig,
    publish_script: Script,
    history_script: Script,
    presence_script: Script,
    registry: Arc<Registry>,
    /// Epochs and jitter come from here: seeded, never a global RNG.
    rng: Mutex<SmallRng>,
}

/// The local subscribers, by channel, and the bus status. Subscriptions hold it to unregister.
struct Registry {
    state: Mutex<RegistryState>,
    /// Wakes the connection task when a channel gains its first or loses its last subscriber.
    changed: Notify,
    next_subscriber_id: AtomicU64,
    status: watch::Sender<BusStatus>,
    subscriber_queue_len_max: usize,
}

struct RegistryState {
    channels: BTreeMap<String, LocalChannel>,
    /// The connection task has ended: new subscriptions end at once.
    closed: bool,
}

struct LocalChannel {
    subscribers: BTreeMap<u64, Arc<Mailbox>>,
    /// Whether Redis has confirmed `SUBSCRIBE` for this channel on the current connection.
    subscribed: watch::Sender<bool>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks delivery broken and tells every subscription, under one lock so a subscription
    /// created concurrently is either told here or starts out interrupted.
    fn interrupt_all(&self) {
        let state = self.lock();
        self.status.send_replace(BusStatus::Broken);
        for channel in state.channels.values() {
            channel.subscribed.send_replace(false);
            for mailbox in channel.subscribers.values() {
                mailbox.interrupt();
            }
        }
    }

    /// Marks delivery restored and tells every subscription.
    fn restore_all(&self) {
        let state = self.lock();
        self.status.send_replace(BusStatus::Delivering);
        for channel in state.channels.values() {
            for mailbox in channel.subscribers.values() {
                mailbox.restore();
            }
        }
    }

    fn close_all(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.status.send_replace(BusStatus::Broken);
        for channel in std::mem::take(&mut state.channels).into_values() {
            for mailbox in channel.subscribers.into_values() {
                mailbox.close();
            }
        }
    }

    fn register(self: &Arc<Self>, channel: &ChannelName) -> SubscriberGuard {
        let mailbox = Arc::new(Mailbox::new(self.subscriber_queue_len_max));
        let id = self.next_subscriber_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.closed {
            mailbox.close();
        } else {
            if *self.status.borrow() == BusStatus::Broken {
                mailbox.interrupt();
            }
            let first = !state.channels.contains_key(channel.as_str());
            state
                .channels
                .entry(channel.as_str().to_owned())
                .or_insert_with(|| LocalChannel {
                    subscribers: BTreeMap::new(),
                    subscribed: watch::channel(false).0,
                })
                .subscribers
                .insert(id, mailbox.clone());
            if first {
                self.changed.notify_one();
            }
        }
        SubscriberGuard {
            registry: self.clone(),
            channel: channel.as_str().to_owned(),
            id,
            mailbox,
        }
    }

    /// The channels with local subscribers.
    fn wanted(&self) -> BTreeSet<String> {
        self.lock().channels.keys().cloned().collect()
    }

    fn mark_subscribed(&self, subscribed: &BTreeSet<String>) {
        let state = self.lock();
        for (name, channel) in &state.channels {
            if subscribed.contains(name) {
                channel
                    .subscribed
                    .send_if_modified(|value| !std::mem::replace(value, true));
            }
        }
    }

    fn deliver(&self, channel: &str, event: &Arc<Event>, received_at: Instant) {
        let state = self.lock();
        if let Some(channel) = state.channels.get(channel) {
            for mailbox in channel.subscribers.values() {
                mailbox.push_event(event, received_at);
            }
        }
    }
}

/// Removes its subscriber when the subscription is dropped.
struct SubscriberGuard {
    registry: Arc<Registry>,
    channel: String,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        if let Some(channel) = state.channels.get_mut(&self.channel) {
            channel.subscribers.remove(&self.id);
            if channel.subscribers.is_empty() {
                state.channels.remove(&self.channel);
                self.registry.changed.notify_one();
            }
        }
    }
}

/// One subscription's bounded queue. Events beyond `event_len_max` are dropped and the
/// subscriber is told `Interrupted` then `Restored` (it catches up from history, which holds
/// every dropped event because it reads history only after taking `Restored`).
struct Mailbox {
    state: Mutex<MailboxState>,
    ready: Notify,
    event_len_max: usize,
}

struct MailboxState {
    queue: VecDeque<BusMessage>,
    events_queued: usize,
    /// The last status message queued is `Interrupted` (delivery broken for this subscriber).
    interrupted: bool,
    /// Events were dropped and `Interrupted, Restored` is queued; no event since.
    lagged: bool,
    closed: bool,
}

impl Mailbox {
    fn new(event_len_max: usize) -> Self {
        Self {
            state: Mutex::new(MailboxState {
                queue: VecDeque::new(),
                events_queued: 0,
                interrupted: false,
                lagged: false,
                closed: false,
            }),
            ready: Notify::new(),
            event_len_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_event(&self, event: &Arc<Event>, received_at: Instant) {
        let mut state = self.lock();
        if state.events_queued < self.event_len_max {
            state.queue.push_back(BusMessage::Event {
                event: event.clone(),
                received_at,
            });
            state.events_queued += 1;
            state.lagged = false;
        } else if !state.lagged && !state.interrupted {
            state.queue.push_back(BusMessage::Interrupted);
            state.queue.push_back(BusMessage::Restored);
            state.lagged = true;
        } else {
            // Already told (and not yet caught up): the event is in history.
            return;
        }
        drop(state);
        self.ready.notify_one();
    }

    fn interrupt(&self) {
        let mut state = self.lock();
        if state.interrupted {
            return;
        }
        state.interrupted = true;
        state.queue.push_back(BusMessage::Interrupted);
        drop(state);
        self.ready.notify_one();
    }

    fn restore(&self) {
        let mut state = self.lock();
        if !state.interrupted {
            return;
        }
        state.interrupted = false;
        state.queue.push_back(BusMessage::Restored);
        drop(state);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    async fn next(&self) -> Option<BusMessage> {
        loop {
            {
                let mut state = self.lock();
                if let Some(message) = state.queue.pop_front() {
                    if matches!(message, BusMessage::Event { .. }) {
                        state.events_queued -= 1;
                    }
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            // One consumer: `notify_one` stores a permit when no one waits, so no wake-up is lost.
            self.ready.notified().await;
        }
    }
}

impl<N: Net> RedisBus<N> {
    /// Validates `config` and starts the bus: spawns its connection task (on the current tokio
    /// runtime), which dials Redis through `net` and keeps the pub/sub connection up. The
    /// status is [`BusStatus::Broken`] until the first connection is established.
    pub fn new(net: N, config: RedisBusConfig) -> Result<Self, InvalidRedisBusConfig> {
        config.validate()?;
        let (status, _) = watch::channel(BusStatus::Broken);
        let registry = Arc::new(Registry {
            state: Mutex::new(RegistryState {
                channels: BTreeMap::new(),
                closed: false,
            }),
            changed: Notify::new(),
            next_subscriber_id: AtomicU64::new(0),
            status,
            subscriber_queue_len_max: config.subscriber_queue_len_max,
        });
        let link = RedisLink::new(
            net,
            config.address.clone(),
            config.connect_timeout(),
            config.command_timeout(),
        );
        let shared = Arc::new(Shared {
            link,
            rng: Mutex::new(SmallRng::seed_from_u64(config.rng_seed)),
            config,
            publish_script: Script::new(PUBLISH_SCRIPT),
            history_script: Script::new(HISTORY_SCRIPT),
            presence_script: Script::new(PRESENCE_SCRIPT),
            registry,
        });
        let (stop, stopped) = watch::channel(());
        tokio::spawn(run_pubsub(shared.clone(), stopped));
        Ok(Self {
            shared,
            _owner: Arc::new(Owner { _stop: stop }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedisBusConfig {
        &self.shared.config
    }
}

impl<N: Net> Shared<N> {
    /// A fresh epoch, used by the scripts only when a channel has none.
    fn new_epoch(&self) -> String {
        let value: u64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        format!("{value:016x}")
    }

    /// A reconnect delay: capped exponential, with "equal jitter" (half fixed, half random).
    fn backoff(&self, attempt: u32) -> Duration {
        let config = &self.config;
        let base = config
            .reconnect_backoff_initial_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(config.reconnect_backoff_max_ms);
        let jitter = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(0..=base / 2);
        Duration::from_millis(base - base / 2 + jitter)
    }

    /// Runs one script invocation through the link, bounded by the command timeout.
    async fn run_script<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, BusError> {
        self.link
            .run_script(invocation)
            .await
            .map_err(BusError::Unavailable)
    }
}

impl<N: Net> Publisher for RedisBus<N> {
    fn publish(
        &self,
        channel: &ChannelName,
        audience: Option<Audience>,
        data: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Arc<Event>, BusError>> {
        let shared = self.shared.clone();
        let channel = channel.clone();
        Box::pin(async move {
            let audience = match audience {
                Some(audience) => serde_json::to_string(&audience)
                    .map_err(|error| BusError::Invalid(error.to_string()))?,
                None => String::new(),
            };
            let mut invocation = shared.publish_script.prepare_invoke();
            invocation
                .key(epoch_key(&channel))
                .key(offset_key(&channel))
                .key(history_key(&channel))
                .arg(channel.as_str())
                .arg(shared.new_epoch())
                .arg(shared.config.history_len_max)
                .arg(data.get())
                .arg(audience);
            let envelope: String = shared.run_script(invocation).await?;
            let event: Event = serde_json::from_str(&envelope).map_err(|error| {
                BusError::Invalid(format!(
                    "the publishing step returned a bad envelope: {error}"
                ))
            })?;
            Ok(Arc::new(event))
        })
    }
}

impl<N: Net> EventBus for RedisBus<N> {
    fn subscribe(&self, channel: &ChannelName) -> Subscription {
        let guard = self.shared.registry.register(channel);
        let messages = futures::stream::unfold(guard, |guard| async move {
            let message = guard.mailbox.next().await?;
            Some((message, guard))
        });
        Subscription::new(channel.clone(), messages)
    }

    fn history(
        &self,
        channel: &ChannelName,
        after_offset: u64,
    ) -> BoxFuture<'static, Result<History, BusError>> {
        let shared = self.shared.clone();
        let channel = channel.clone();
        // If a local subscription to this channel is waiting for Redis to confirm `SUBSCRIBE`,
        // read history only after that: an event published in between then arrives live, so
        // "subscribe, then read history" misses nothing, as with the in-memory bus.
        let pending_subscribe = {
            let state = shared.registry.lock();
            let delivering = *shared.registry.status.borrow() == BusStatus::Delivering;
            state
                .channels
                .get(channel.as_str())
                .filter(|_| delivering)
                .map(|local| local.subscribed.subscribe())
        };
        Box::pin(async move {
            if let Some(mut subscribed) = pending_subscribe {
                let _ = tokio::time::timeout(
                    shared.config.command_timeout(),
                    subscribed.wait_for(|subscribed| *subscribed),
                )
                .await;
            }
            let mut invocation = shared.history_script.prepare_invoke();
            invocation
                .key(epoch_key(&channel))
                .key(offset_key(&channel))
                .key(history_key(&channel))
                .arg(shared.new_epoch())
                .arg(shared.config.history_len_max)
                .arg(after_offset);
            let reply: Vec<String> = shared.run_script(invocation).await?;
            let bad = |what: &str| BusError::Invalid(format!("history read returned {what}"));
            let mut fields = reply.into_iter();
            let epoch = fields.next().ok_or_else(|| bad("no epoch"))?;
            let latest_offset = fields
                .next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| bad("no latest offset"))?;
            let oldest_offset = fields
                .next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| bad("no oldest offset"))?;
            let events = fields
                .map(|envelope| {
                    serde_json::from_str::<Event>(&envelope)
                        .map(Arc::new)
                        .map_err(|error| bad(&format!("a bad envelope: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(History {
                epoch,
                events,
                oldest_offset,
                latest_offset,
            })
        })
    }

    fn status(&self) -> watch::Receiver<BusStatus> {
        self.shared.registry.status.subscribe()
    }
}

/// One presence operation (`presence.lua`): `args` follow the operation name and the TTL.
fn presence_call<N: Net>(
    shared: &Arc<Shared<N>>,
    channel: &ChannelName,
    operation: &'static str,
    ttl: Duration,
    args: Vec<String>,
) -> BoxFuture<'static, Result<PresenceState, BusError>> {
    let shared = shared.clone();
    let channel = channel.clone();
    Box::pin(async move {
        let mut invocation = shared.presence_script.prepare_invoke();
        invocation
            .key(epoch_key(&channel))
            .key(offset_key(&channel))
            .key(history_key(&channel))
            .key(presence_key(&channel))
            .key(presence_members_key(&channel))
            .arg(channel.as_str())
            .arg(shared.new_epoch())
            .arg(shared.config.history_len_max)
            .arg(operation)
            .arg(ttl.as_millis().max(1) as u64);
        for arg in &args {
            invocation.arg(arg.as_str());
        }
        let reply: Vec<String> = shared.run_script(invocation).await?;
        let bad = |what: &str| BusError::Invalid(format!("presence returned {what}"));
        let mut fields = reply.into_iter();
        let epoch = fields.next().ok_or_else(|| bad("no epoch"))?;
        let offset = fields
            .next()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| bad("no offset"))?;
        let mut members = fields
            .map(|member| {
                serde_json::from_str::<PresenceMember>(&member)
                    .map_err(|error| bad(&format!("a bad member: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by(|a, b| a.connection.cmp(&b.connection));
        Ok(PresenceState {
            epoch,
            offset,
            members,
        })
    })
}

fn member_json(member: &PresenceMember) -> Result<String, BusError> {
    serde_json::to_string(member).map_err(|error| BusError::Invalid(error.to_string()))
}

impl<N: Net> Presence for RedisBus<N> {
    fn presence_join(
        &self,
        channel: &ChannelName,
        member: PresenceMember,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        match member_json(&member) {
            Ok(json) => presence_call(
                &self.shared,
                channel,
                "join",
                ttl,
                vec![member.connection, json],
            ),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn presence_leave(
        &self,
        channel: &ChannelName,
        connection: &str,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        // The TTL is unused by `leave`; any positive value passes the script's check.
        let call = presence_call(
            &self.shared,
            channel,
            "leave",
            Duration::from_millis(1),
            vec![connection.to_owned()],
        );
        Box::pin(async move { call.await.map(drop) })
    }

    fn presence_heartbeat(
        &self,
        channel: &ChannelName,
        members: Vec<PresenceMember>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let mut args = Vec::with_capacity(members.len() * 2);
        for member in members {
            match member_json(&member) {
                Ok(json) => args.extend([member.connection, json]),
                Err(error) => return Box::pin(async move { Err(error) }),
            }
        }
        let call = presence_call(&self.shared, channel, "heartbeat", ttl, args);
        Box::pin(async move { call.await.map(drop) })
    }

    fn presence_state(
        &self,
        channel: &ChannelName,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        presence_call(
            &self.shared,
            channel,
            "state",
            Duration::from_millis(1),
            Vec::new(),
        )
    }
}

/// Why a connected session ended.
enum SessionEnd {
    Stopped,
    Broken(String),
}

/// The connection task: keeps one pub/sub connection up until the bus is dropped.
async fn run_pubsub<N: Net>(shared: Arc<Shared<N>>, mut stopped: watch::Receiver<()>) {
    let mut failed_attempts: u32 = 0;
    loop {
        let connected = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            connected = shared.link.dial(|stream, info| async move { PubSub::new(&info, stream).await }) => connected,
        };
        let end = match connected {
            Ok(pubsub) => {
                failed_attempts = 0;
                run_session(&shared, pubsub, &mut stopped).await
            }
            Err(error) => SessionEnd::Broken(error),
        };
        match end {
            SessionEnd::Stopped => break,
            SessionEnd::Broken(error) => {
                if *shared.registry.status.borrow() == BusStatus::Delivering {
                    tracing::warn!(%error, "event bus: Redis connection lost; reconnecting");
                } else {
                    tracing::debug!(%error, failed_attempts, "event bus: Redis still unreachable");
                }
                shared.registry.interrupt_all();
            }
        }
        let delay = shared.backoff(failed_attempts);
        failed_attempts = failed_attempts.saturating_add(1);
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    shared.registry.close_all();
}

/// One connected session: subscribe what is wanted, report delivery, then fan messages out and
/// follow subscription changes until the connection fails or the bus is dropped.
async fn run_session<N: Net>(
    shared: &Shared<N>,
    pubsub: PubSub,
    stopped: &mut watch::Receiver<()>,
) -> SessionEnd {
    let registry = &shared.registry;
    let (mut sink, mut messages) = pubsub.split();
    let mut subscribed = BTreeSet::new();
    if let Err(error) = reconcile(shared, &mut sink, &mut subscribed).await {
        return SessionEnd::Broken(error);
    }
    if *registry.status.borrow() == BusStatus::Broken {
        tracing::info!(address = %shared.config.address, "event bus: delivering");
    }
    registry.restore_all();
    let keepalive_interval = Duration::from_millis(shared.config.keepalive_interval_ms);
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive_interval,
        keepalive_interval,
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return SessionEnd::Stopped,
            () = registry.changed.notified() => {
                if let Err(error) = reconcile(shared, &mut sink, &mut subscribed).await {
                    return SessionEnd::Broken(error);
                }
            }
            message = messages.next() => {
                let Some(message) = message else {
                    return SessionEnd::Broken("connection closed".to_owned());
                };
                deliver(registry, &message);
            }
            _ = keepalive.tick() => {
                let ping = tokio::time::timeout(
                    shared.config.command_timeout(),
                    sink.ping::<redis::Value>(),
                );
                match ping.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return SessionEnd::Broken(format!("ping: {error}")),
                    Err(_) => return SessionEnd::Broken("ping: no answer".to_owned()),
                }
            }
        }
    }
}

/// Brings Redis's subscriptions in line with the channels that have local subscribers.
async fn reconcile<N: Net>(
    shared: &Shared<N>,
    sink: &mut PubSubSink,
    subscribed: &mut BTreeSet<String>,
) -> Result<(), String> {
    let timeout = shared.config.command_timeout();
    // Loop: subscribers may come and go while a command is in flight.
    loop {
        let wanted = shared.registry.wanted();
        let to_subscribe: Vec<String> = wanted.difference(subscribed).cloned().collect();
        let to_unsubscribe: Vec<String> = subscribed.difference(&wanted).cloned().collect();
        if to_subscribe.is_empty() && to_unsubscribe.is_empty() {
            shared.registry.mark_subscribed(subscribed);
            return Ok(());
        }
        if !to_subscribe.is_empty() {
            let names: Vec<String> = to_subscribe
                .iter()
                .map(|channel| format!("events:{{{channel}}}"))
                .collect();
            match tokio::time::timeout(timeout, sink.subscribe(names)).await {
                Ok(Ok(())) => subscribed.extend(to_subscribe),
                Ok(Err(error)) => return Err(format!("subscribe: {error}")),
                Err(_) => return Err("subscribe: no answer".to_owned()),
            }
        }
        if !to_unsubscribe.is_empty() {
            let names: Vec<String> = to_unsubscribe
                .iter()
                .map(|channel| format!("events:{{{channel}}}"))
                .collect();
            match tokio::time::timeout(timeout, sink.unsubscribe(names)).await {
                Ok(Ok(())) => {
                    for channel in &to_unsubscribe {
                        subscribed.remove(channel);
                    }
                }
                Ok(Err(error)) => return Err(format!("unsubscribe: {error}")),
                Err(_) => return Err("unsubscribe: no answer".to_owned()),
            }
        }
    }
}

/// Parses one pub/sub message once and hands it to every local subscriber of its channel.
fn deliver(registry: &Registry, message: &redis::Msg) {
    let received_at = Instant::now();
    let Some(channel) = channel_of_pubsub(message.get_channel_name()) else {
        return;
    };
    match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
        Ok(event) if event.channel == channel => {
            registry.deliver(channel, &Arc::new(event), received_at)
        }
        Ok(event) => {
            tracing::warn!(channel, event_channel = %event.channel, "event bus: envelope on the wrong channel; dropped");
        }
        Err(error) => {
            tracing::warn!(channel, %error, "event bus: unparseable envelope; dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_put_the_channel_in_a_hash_tag() {
        let channel = ChannelName::parse("simulation:s-1").unwrap();
        assert_eq!(epoch_key(&channel), "events:{simulation:s-1}:epoch");
        assert_eq!(offset_key(&channel), "events:{simulation:s-1}:offset");
        assert_eq!(history_key(&channel), "events:{simulation:s-1}:history");
        assert_eq!(pubsub_channel(&channel), "events:{simulation:s-1}");
        assert_eq!(
            channel_of_pubsub(&pubsub_channel(&channel)),
            Some("simulation:s-1")
        );
    }

    #[test]
    fn the_docs_show_the_publishing_step_verbatim() {
        let docs = include_str!("../../docs/events.md");
        assert!(
            docs.contains(PUBLISH_SCRIPT),
            "docs/events.md must quote redis_bus/publish.lua verbatim"
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_limits_are_refused() {
        RedisBusConfig::default().validate().unwrap();
        let empty: RedisBusConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, RedisBusConfig::default());
        assert!(serde_json::from_str::<RedisBusConfig>(r#"{"history_len":5}"#).is_err());
        for bad in [
            RedisBusConfig {
                address: "no-port".into(),
                ..Default::default()
            },
            RedisBusConfig {
                history_len_max: 0,
                ..Default::default()
            },
            RedisBusConfig {
                reconnect_backoff_initial_ms: 10_000,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_full_mailbox_tells_its_subscriber_once_and_resumes_after_draining() {
        let mailbox = Mailbox::new(2);
        let event = Arc::new(
            serde_json::from_str::<Event>(
                r#"{"channel":"user:u","offset":1,"epoch":"e","data":1}"#,
            )
            .unwrap(),
        );
        for _ in 0..5 {
            mailbox.push_event(&event, Instant::now());
        }
        let drained: Vec<&str> = {
            let state = mailbox.lock();
            state
                .queue
                .iter()
                .map(|message| match message {
                    BusMessage::Event { .. } => "event",
                    BusMessage::Interrupted => "interrupted",
                    BusMessage::Restored => "restored",
                })
                .collect()
        };
        assert_eq!(drained, ["event", "event", "interrupted", "restored"]);
    }
}
