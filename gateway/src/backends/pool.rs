//! One backend instance: its address, a pool of HTTP/2 channels sized by in-flight load, its
//! circuit breaker, and whether its latest health check passed.
//!
//! The pool keeps between `pool.min_channels` and `pool.max_channels` lazily connected channels
//! (one HTTP/2 connection each) and hands them out round robin, over as many as the calls in
//! flight need (one per `pool.streams_per_channel` calls, at least one). It grows by one channel
//! when the calls in flight exceed `pool.streams_per_channel` per channel, and shrinks by one, at
//! most every [`SHRINK_INTERVAL`], when a channel fewer would still be at most half full. Channels
//! are dialled through the [`Net`](seams::Net) seam, which resolves the address's name on every
//! (re)connection, so a restarted or moved backend is found again.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::{
    backends::resilience::{Breaker, BreakerConfig, BreakerState},
    field_check::{InvalidField, positive},
};

/// Least time between two shrinks of a pool: load that dips for a moment keeps its channels.
pub const SHRINK_INTERVAL: Duration = Duration::from_secs(10);

/// The channel pool's settings (`backends.<name>.pool`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Channels kept per instance even when idle. Default 5.
    pub min_channels: usize,
    /// Most channels per instance. Default 20.
    pub max_channels: usize,
    /// Calls in flight per channel above which the pool grows. Default 100 (HTTP/2 servers
    /// commonly allow 100 to 250 concurrent streams per connection).
    pub streams_per_channel: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_channels: 5,
            max_channels: 20,
            streams_per_channel: 100,
        }
    }
}

impl PoolConfig {
    /// Checks the settings, naming fields under `prefix` (`backends.auth.pool`).
    pub fn check(&self, prefix: &str) -> Result<(), InvalidField> {
        positive(format!("{prefix}.min_channels"), self.min_channels as u64)?;
        positive(
            format!("{prefix}.streams_per_channel"),
            self.streams_per_channel as u64,
        )?;
        if self.max_channels < self.min_channels {
            return Err(InvalidField::new(
                format!("{prefix}.max_channels"),
                "must not be below pool.min_channels",
            ));
        }
        Ok(())
    }
}

/// One instance of a backend service.
pub struct Instance {
    address: String,
    connect: Box<dyn Fn() -> Channel + Send + Sync>,
    config: PoolConfig,
    reconnect_interval: Duration,
    channels: RwLock<Vec<Pooled>>,
    next: AtomicUsize,
    /// When a call that got no answer last forced a reconnection.
    last_reconnect: Mutex<Option<Instant>>,
    in_flight: Arc<AtomicUsize>,
    last_shrink: Mutex<Instant>,
    breaker: Breaker,
    healthy: AtomicBool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("address", &self.address)
            .field("channels", &self.channel_count())
            .finish_non_exhaustive()
    }
}

/// One channel of the pool, with how many times its connection was seen to break.
struct Pooled {
    channel: Channel,
    breaks: Arc<AtomicU64>,
}

impl Pooled {
    fn new(channel: Channel) -> Self {
        Self {
            channel,
            breaks: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// A channel lent for one call; the call counts as in flight until it is dropped.
pub struct Lease {
    channel: Channel,
    /// The channel's count of broken connections, and its value when the call began.
    breaks: Arc<AtomicU64>,
    breaks_before: u64,
    instance: Arc<Instance>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("instance", &self.instance.address)
            .finish()
    }
}

impl Lease {
    /// The channel, for a typed client or a dynamic call.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The instance it belongs to.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// The call got no answer within its deadline: the instance's connections may be dead without
    /// either side having noticed (a partition drops packets silently), so fresh connections
    /// replace them, at most once per `reconnect_interval_ms`. Calls in flight keep the old ones
    /// until they end.
    pub fn note_no_answer(&self) {
        self.instance.reconnect();
    }

    /// The call failed because its connection broke. True for the first call to report this
    /// break: every call in flight on a connection fails when it breaks, whatever the reason
    /// (a crash, or a server closing a connection that reset too many streams, which a burst of
    /// client cancellations does), and for the circuit breaker that is one failure, not one per
    /// call.
    pub fn first_to_report_broken_connection(&self) -> bool {
        self.breaks
            .compare_exchange(
                self.breaks_before,
                self.breaks_before + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Instance {
    /// An instance at `address`, whose channels `connect` makes (lazily connected).
    pub fn new(
        address: String,
        connect: Box<dyn Fn() -> Channel + Send + Sync>,
        config: PoolConfig,
        breaker: BreakerConfig,
        reconnect_interval: Duration,
    ) -> Self {
        let channels = (0..config.min_channels.max(1))
            .map(|_| Pooled::new(connect()))
            .collect();
        Self {
            address,
            connect,
            config,
            reconnect_interval,
            channels: RwLock::new(channels),
            next: AtomicUsize::new(0),
            last_reconnect: Mutex::new(None),
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_shrink: Mutex::new(Instant::now()),
            breaker: Breaker::new(breaker),
            // Until the first health check says otherwise, an instance takes traffic.
            healthy: AtomicBool::new(true),
        }
    }

    /// Its address (`host:port`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Its circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Its breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Whether its latest health check passed (true before the first).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a health check's verdict: an unhealthy instance leaves the rotation.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// How many channels the pool holds now.
    pub fn channel_count(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Calls in flight on this instance.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Lends the next channel round robin among as many as the load needs, resizing the pool to
    /// the load first.
    pub fn lease(self: &Arc<Self>) -> Lease {
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.resize(in_flight);
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner());
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let index = channel_index(
            turn,
            in_flight,
            self.config.streams_per_channel,
            channels.len(),
        );
        let pooled = &channels[index];
        Lease {
            channel: pooled.channel.clone(),
            breaks: pooled.breaks.clone(),
            breaks_before: pooled.breaks.load(Ordering::Acquire),
            instance: self.clone(),
            in_flight: self.in_flight.clone(),
        }
    }

    fn resize(&self, in_flight: usize) {
        let per_channel = self.config.streams_per_channel.max(1);
        let len = self.channel_count();
        if in_flight > len * per_channel && len < self.config.max_channels {
            let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
            if channels.len() < self.config.max_channels {
                channels.push(Pooled::new((self.connect)()));
                tracing::debug!(address = %self.address, channels = channels.len(), in_flight, "pool grew");
            }
        } else if len > self.config.min_channels.max(1) && in_flight * 2 <= (len - 1) * per_channel
        {
            let now = Instant::now();
            let mut last = self.last_shrink.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(*last) >= SHRINK_INTERVAL {
                *last = now;
                let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
                if channels.len() > self.config.min_channels.max(1) {
                    // Calls on the dropped channel keep their clone until they end.
                    channels.pop();
                    tracing::debug!(address = %self.address, channels = channels.len(), in_flight, "pool shrank");
                }
            }
        }
    }

    fn reconnect(&self) {
        let now = Instant::now();
        {
            let mut last = self
                .last_reconnect
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| now.duration_since(at) < self.reconnect_interval) {
                return;
            }
            *last = Some(now);
        }
        tracing::info!(address = %self.address, "no answer within the deadline; reconnecting");
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        for pooled in channels.iter_mut() {
            *pooled = Pooled::new((self.connect)());
        }
    }
}

/// The channel for the `turn`th call: round robin over the first channels, as many as `in_flight`
/// calls need at `per_channel` each (at least one, at most `len`). Spreading a few calls over many
/// connections only costs wake-ups and smaller writes (measured on loopback with
/// `ci/bench-resilience.sh`); the channels beyond what the load needs stay ready for a burst.
fn channel_index(turn: usize, in_flight: usize, per_channel: usize, len: usize) -> usize {
    let in_use = in_flight.div_ceil(per_channel.max(1)).clamp(1, len.max(1));
    turn % in_use
}

#[cfg(test)]
mod tests {
    use seams::{TokioNet, adapters::NetConnector};
    use tonic::transport::Endpoint;

    use super::*;

    /// An instance whose channels point nowhere (lazily connected: nothing is dialled).
    fn instance(min_channels: usize, max_channels: usize) -> Arc<Instance> {
        let endpoint = Endpoint::from_static("http://127.0.0.1:9");
        let connect =
            Box::new(move || endpoint.connect_with_connector_lazy(NetConnector(TokioNet)));
        let config = PoolConfig {
            min_channels,
            max_channels,
            streams_per_channel: 10,
        };
        Arc::new(Instance::new(
            "127.0.0.1:9".into(),
            connect,
            config,
            BreakerConfig::default(),
            Duration::from_secs(1),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_grows_with_calls_in_flight_up_to_its_maximum_and_shrinks_when_idle() {
        let instance = instance(2, 4);
        assert_eq!(instance.channel_count(), 2);
        let mut leases: Vec<Lease> = (0..20).map(|_| instance.lease()).collect();
        assert_eq!(instance.channel_count(), 2, "20 in flight fit 2 × 10");
        leases.push(instance.lease());
        assert_eq!(instance.channel_count(), 3, "the 21st call adds a channel");
        leases.extend((0..100).map(|_| instance.lease()));
        assert_eq!(instance.channel_count(), 4, "never past the maximum");
        assert_eq!(instance.in_flight(), 121);

        leases.clear();
        assert_eq!(instance.in_flight(), 0);
        drop(instance.lease());
        assert_eq!(instance.channel_count(), 4, "no shrink within the interval");
        tokio::time::advance(SHRINK_INTERVAL).await;
        drop(instance.lease());
        assert_eq!(
            instance.channel_count(),
            3,
            "one channel fewer per interval"
        );
        tokio::time::advance(SHRINK_INTERVAL).await;
        drop(instance.lease());
        tokio::time::advance(SHRINK_INTERVAL).await;
        drop(instance.lease());
        assert_eq!(instance.channel_count(), 2, "never below the minimum");
    }

    #[test]
    fn calls_go_round_robin_over_as_many_channels_as_the_load_needs() {
        let spread = |in_flight: usize| -> Vec<usize> {
            (0..8)
                .map(|turn| channel_index(turn, in_flight, 10, 4))
                .collect()
        };
        assert_eq!(spread(1), [0; 8], "one call in flight: one channel");
        assert_eq!(spread(10), [0; 8], "a channel's worth");
        assert_eq!(spread(11), [0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(spread(35), [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(spread(500), [0, 1, 2, 3, 0, 1, 2, 3], "never past the pool");
    }
}
