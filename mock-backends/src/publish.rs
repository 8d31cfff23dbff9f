//! Publishing events: the backends' one way onto the event bus. [`EventSink`] wraps the optional
//! [`events::Publisher`] the backends were started with (see [`crate::StartOptions`]); every
//! event goes through [`events::Publisher::publish`], the one publishing step, so offsets,
//! epochs and history follow the contract in `docs/events.md`.
//!
//! Publishing never fails the call that caused it: a failure, or a publish that takes longer than
//! [`crate::EventsConfig::publish_timeout_ms`], is logged at `warn` and dropped; revocations,
//! which must not be lost, are retried in the background instead. Without a publisher nothing is
//! published and nothing is serialised.

use std::{fmt, sync::Arc, time::Duration};

use events::{ChannelKind, ChannelName, Publisher};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::EventsConfig;

/// Where a backend publishes its events, if anywhere. Cheap to clone.
#[derive(Clone, Default)]
pub struct EventSink {
    publisher: Option<Arc<dyn Publisher>>,
    publish_timeout: Duration,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("enabled", &self.is_enabled())
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

impl EventSink {
    /// A sink publishing through `publisher` (nothing when `None`), each publish bounded by
    /// `config.publish_timeout_ms`.
    pub fn new(publisher: Option<Arc<dyn Publisher>>, config: &EventsConfig) -> Self {
        Self {
            publisher,
            publish_timeout: Duration::from_millis(config.publish_timeout_ms),
        }
    }

    /// A sink that publishes nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether events are published at all.
    pub fn is_enabled(&self) -> bool {
        self.publisher.is_some()
    }

    /// Publishes `payload` on channel `kind:id` (`id` is ignored for `auth:revocations`) and
    /// waits, at most the publish timeout, for the bus to take it. Failures are logged, never
    /// returned.
    pub async fn publish(&self, kind: ChannelKind, id: &str, payload: &impl Serialize) {
        if let Some(publishing) = self.start(kind, id, payload) {
            publishing.await;
        }
    }

    /// Publishes from code that cannot wait: the publishing step is begun before this returns
    /// (so events from one caller keep their order on buses that assign offsets at once, as the
    /// in-memory bus does), and finished on a spawned task. Outside a Tokio runtime the event is
    /// dropped with a warning.
    pub fn publish_detached(&self, kind: ChannelKind, id: &str, payload: &impl Serialize) {
        if !self.is_enabled() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(?kind, %id, "event not published: no Tokio runtime");
            return;
        };
        if let Some(publishing) = self.start(kind, id, payload) {
            runtime.spawn(async move {
                publishing.await;
            });
        }
    }

    /// [`EventSink::publish_detached`] for events that must not be lost (revocations: a gateway
    /// that never hears of one keeps the token's connections open). A failed or timed-out publish
    /// is retried on the spawned task, with backoff, for about a minute at most. Retried events
    /// may overtake later ones; revocations do not depend on their order.
    pub fn publish_detached_until_taken(
        &self,
        kind: ChannelKind,
        id: &str,
        payload: &impl Serialize,
    ) {
        const ATTEMPTS_MAX: u32 = 30;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(?kind, %id, "event not published: no Tokio runtime");
            return;
        };
        let Ok(payload) = serde_json::to_value(payload) else {
            tracing::warn!(?kind, %id, "event not published: could not encode it");
            return;
        };
        let sink = self.clone();
        let id = id.to_owned();
        runtime.spawn(async move {
            let mut delay = Duration::from_millis(100);
            for attempt in 1..=ATTEMPTS_MAX {
                let Some(publishing) = sink.start(kind, &id, &payload) else {
                    return;
                };
                if publishing.await {
                    return;
                }
                tracing::warn!(?kind, %id, attempt, "retrying an event that must not be lost");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            tracing::error!(?kind, %id, "event lost: the bus did not take it after {ATTEMPTS_MAX} attempts");
        });
    }

    /// Serialises and hands the event to the publisher; the returned future finishes the publish
    /// and logs its outcome.
    fn start(
        &self,
        kind: ChannelKind,
        id: &str,
        payload: &impl Serialize,
    ) -> Option<impl Future<Output = bool> + Send + 'static> {
        let publisher = self.publisher.as_ref()?;
        // Generated IDs always make a channel name; IDs that come from callers might not.
        let channel = match ChannelName::new(kind, id) {
            Ok(channel) => channel,
            Err(error) => {
                tracing::warn!(%error, "event not published: no channel for this id");
                return None;
            }
        };
        let data = match serde_json::to_string(payload).map(RawValue::from_string) {
            Ok(Ok(data)) => data,
            Ok(Err(error)) | Err(error) => {
                tracing::warn!(%channel, %error, "event not published: could not encode it");
                return None;
            }
        };
        let publishing = publisher.publish(&channel, None, data);
        let timeout = self.publish_timeout;
        Some(async move {
            match tokio::time::timeout(timeout, publishing).await {
                Ok(Ok(event)) => {
                    tracing::trace!(%channel, offset = event.offset, "event published");
                    true
                }
                Ok(Err(error)) => {
                    tracing::warn!(%channel, %error, "event not published");
                    false
                }
                Err(_) => {
                    tracing::warn!(
                        %channel,
                        timeout_ms = timeout.as_millis() as u64,
                        "event not published: the bus did not answer in time"
                    );
                    false
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use events::{BusError, Event, EventBus, MemoryBus, memory::MemoryBusConfig};
    use futures::future::BoxFuture;

    use super::*;

    struct FailingPublisher;

    impl Publisher for FailingPublisher {
        fn publish(
            &self,
            _channel: &ChannelName,
            _audience: Option<events::Audience>,
            _data: Box<RawValue>,
        ) -> BoxFuture<'static, Result<Arc<Event>, BusError>> {
            Box::pin(async { Err(BusError::Unavailable("down".into())) })
        }
    }

    struct HangingPublisher;

    impl Publisher for HangingPublisher {
        fn publish(
            &self,
            _channel: &ChannelName,
            _audience: Option<events::Audience>,
            _data: Box<RawValue>,
        ) -> BoxFuture<'static, Result<Arc<Event>, BusError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_sink_publishes_json_through_its_publisher() {
        let bus = MemoryBus::new(MemoryBusConfig::default(), "e1".into());
        let sink = EventSink::new(Some(Arc::new(bus.clone())), &EventsConfig::default());
        sink.publish(
            ChannelKind::AuthRevocations,
            "",
            &serde_json::json!({"type": "x"}),
        )
        .await;
        let channel = ChannelName::revocations();
        let history = bus.history(&channel, 0).await.unwrap();
        assert_eq!(history.events.len(), 1);
        assert_eq!(history.events[0].data.get(), r#"{"type":"x"}"#);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_hangs_are_swallowed_within_the_timeout() {
        let config = EventsConfig {
            publish_timeout_ms: 50,
        };
        let kind = ChannelKind::User;
        EventSink::new(Some(Arc::new(FailingPublisher)), &config)
            .publish(kind, "u-1", &1)
            .await;
        let started = tokio::time::Instant::now();
        EventSink::new(Some(Arc::new(HangingPublisher)), &config)
            .publish(kind, "u-1", &1)
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        EventSink::disabled().publish(kind, "u-1", &1).await;
        // An id that cannot name a channel is logged, not published.
        EventSink::new(Some(Arc::new(HangingPublisher)), &config)
            .publish(kind, "not valid", &1)
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    /// Fails its first `failures` publishes, then publishes to a memory bus.
    struct FlakyPublisher {
        failures: std::sync::atomic::AtomicU32,
        bus: MemoryBus,
    }

    impl Publisher for FlakyPublisher {
        fn publish(
            &self,
            channel: &ChannelName,
            audience: Option<events::Audience>,
            data: Box<RawValue>,
        ) -> BoxFuture<'static, Result<Arc<Event>, BusError>> {
            use std::sync::atomic::Ordering;
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Box::pin(async { Err(BusError::Unavailable("down".into())) });
            }
            self.bus.publish(channel, audience, data)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_must_not_be_lost_are_retried_until_the_bus_takes_them() {
        let bus = MemoryBus::new(MemoryBusConfig::default(), "e1".into());
        let publisher = FlakyPublisher {
            failures: 3.into(),
            bus: bus.clone(),
        };
        let sink = EventSink::new(Some(Arc::new(publisher)), &EventsConfig::default());
        let revocation = serde_json::json!({"type": "token_revoked", "tokenId": "t-1"});
        sink.publish_detached_until_taken(ChannelKind::AuthRevocations, "", &revocation);
        let channel = ChannelName::revocations();
        // Three failures, then backoff of 100 + 200 + 400 ms: taken within a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let history = bus.history(&channel, 0).await.unwrap();
        assert_eq!(
            history.events.len(),
            1,
            "published once, after three failures"
        );
        assert_eq!(history.events[0].data.get(), revocation.to_string());
    }
}
