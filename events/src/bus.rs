//! The publishing step and the bus the hub reads from.

use std::{fmt, pin::Pin, sync::Arc};

use futures::{Stream, StreamExt, future::BoxFuture};
use serde_json::value::RawValue;
use tokio::{sync::watch, time::Instant};

use crate::{Audience, BusError, ChannelName, Event, Presence};

/// Whether the bus is delivering events end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusStatus {
    /// Subscriptions are live.
    Delivering,
    /// Delivery is broken (for example Redis is unreachable); events may be missed until it is
    /// restored, after which subscribers catch up from history.
    Broken,
}

/// The one publishing step: append to the channel's bounded history and publish to live
/// subscribers, atomically, assigning the next offset of the channel's epoch.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `data` on `channel`, optionally only to `audience`. Returns the event as stored.
    fn publish(
        &self,
        channel: &ChannelName,
        audience: Option<Audience>,
        data: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Arc<Event>, BusError>>;
}

/// What one subscription yields.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A live event.
    Event {
        /// The event.
        event: Arc<Event>,
        /// When this process received it from the bus's source (Redis pub/sub, or the local
        /// publish): the start of the hub's handoff, which the gateway measures.
        received_at: Instant,
    },
    /// Delivery broke or this subscriber fell behind: events may have been missed. A
    /// [`BusMessage::Restored`] follows when delivery resumes; catch up from history then.
    Interrupted,
    /// Delivery is back after an interruption.
    Restored,
}

/// A live subscription to one channel; dropping it unsubscribes.
pub struct Subscription {
    channel: ChannelName,
    messages: Pin<Box<dyn Stream<Item = BusMessage> + Send>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription over any stream of messages (the stream's drop must unsubscribe).
    pub fn new(
        channel: ChannelName,
        messages: impl Stream<Item = BusMessage> + Send + 'static,
    ) -> Self {
        Self {
            channel,
            messages: Box::pin(messages),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The next message; `None` when the bus has shut down.
    pub async fn next(&mut self) -> Option<BusMessage> {
        self.messages.next().await
    }
}

/// What a channel's history holds after a given offset.
#[derive(Debug, Clone)]
pub struct History {
    /// The channel's current epoch.
    pub epoch: String,
    /// Events after the requested offset, oldest first, in the current epoch.
    pub events: Vec<Arc<Event>>,
    /// The oldest offset history still holds (0 when it holds none).
    pub oldest_offset: u64,
    /// The newest offset published in this epoch (0 when none).
    pub latest_offset: u64,
}

/// Everything the hub needs from the bus, presence included.
pub trait EventBus: Publisher + Presence {
    /// Subscribes to a channel's live events.
    fn subscribe(&self, channel: &ChannelName) -> Subscription;

    /// The events of `channel` after `after_offset` that history still holds.
    fn history(
        &self,
        channel: &ChannelName,
        after_offset: u64,
    ) -> BoxFuture<'static, Result<History, BusError>>;

    /// Whether events are being delivered; readiness follows it.
    fn status(&self) -> watch::Receiver<BusStatus>;
}
