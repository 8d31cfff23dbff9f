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
//!
//! Here: the bus itself, publishing and history. Beside it: `keys` (scripts and key names),
//! `config`, `registry` (local subscribers and their queues), `session` (the pub/sub
//! connection task), `presence`, and `link` (dialling Redis through the seam).

use std::{
    collections::{BTreeSet, VecDeque},
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
    members::ChannelMembers,
    presence::{Presence, PresenceMember, PresenceState},
};

mod config;
mod keys;
pub mod link;
mod presence;
mod registry;
mod session;

pub use config::{InvalidRedisBusConfig, RedisBusConfig};
pub use keys::*;
pub use link::RedisLink;
use registry::*;
use session::*;

/// The Redis bus. Cheap to clone; clones share one pub/sub connection and one command
/// connection. The connection task stops when the last clone is dropped.
pub struct RedisBus<N: Net> {
    shared: Arc<BusState<N>>,
    _owner: Arc<StopOnLastDrop>,
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
struct StopOnLastDrop {
    _stop: watch::Sender<()>,
}

struct BusState<N> {
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

impl<N: Net> RedisBus<N> {
    /// Validates `config` and starts the bus: spawns its connection task (on the current tokio
    /// runtime), which dials Redis through `net` and keeps the pub/sub connection up. The
    /// status is [`BusStatus::Broken`] until the first connection is established.
    pub fn new(net: N, config: RedisBusConfig) -> Result<Self, InvalidRedisBusConfig> {
        config.validate()?;
        let (status, _) = watch::channel(BusStatus::Broken);
        let registry = Arc::new(Registry {
            state: Mutex::new(RegistryState {
                channels: ChannelMembers::default(),
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
        let shared = Arc::new(BusState {
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
            _owner: Arc::new(StopOnLastDrop { _stop: stop }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedisBusConfig {
        &self.shared.config
    }
}

impl<N: Net> BusState<N> {
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
                .map(|local| local.opened.subscribe())
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
