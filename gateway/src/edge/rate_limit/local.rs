//! One instance's own limits: GCRA per key with `governor`, on `tokio::time` (simulated under
//! turmoil). They decide alone when limits are not shared, and stand in for the shared limits
//! while Redis cannot answer.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::StateInformationMiddleware,
    state::keyed::HashMapStateStore,
};

use super::Limit;

/// What one limit said about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The burst: how many requests the limit allows at once.
    pub limit: u32,
    /// Places left after this request.
    pub remaining: u32,
    /// Until the limit is whole again (allowed) or the next request may pass (refused).
    pub reset: Duration,
    /// Whether the request may pass.
    pub allowed: bool,
}

/// `tokio::time` for governor: time since the limiter was made.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, TokioClock, StateInformationMiddleware>;

impl Limit {
    /// The limit as a governor quota; `None` when off (or too fast to express).
    pub(super) fn quota(&self) -> Option<Quota> {
        if self.per_second <= 0.0 {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / self.per_second).ok()?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period).map(|quota| quota.allow_burst(burst))
    }
}

/// One limit, per key, in this process.
pub struct KeyedLimit<K: std::hash::Hash + Eq + Clone> {
    limiter: Keyed<K>,
    quota: Quota,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLimit<K> {
    /// The limit, or `None` when it is off.
    pub fn new(limit: &Limit) -> Option<Self> {
        let quota = limit.quota()?;
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let limiter = RateLimiter::hashmap_with_clock(quota, clock)
            .with_middleware::<StateInformationMiddleware>();
        Some(Self { limiter, quota })
    }

    /// The time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.quota.replenish_interval()
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.quota.burst_size().get()
    }

    /// Decides one request of `key`, charging it when allowed.
    pub fn check(&self, key: &K) -> Verdict {
        let limit = self.burst();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Verdict {
                    limit,
                    remaining,
                    reset: self.interval() * (limit - remaining),
                    allowed: true,
                }
            }
            Err(not_until) => Verdict {
                limit,
                remaining: 0,
                reset: not_until.wait_time_from(self.limiter.clock().now()),
                allowed: false,
            },
        }
    }

    /// Forgets keys idle long enough to be whole again.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gcra_allows_the_burst_then_the_rate() {
        let limit = KeyedLimit::new(&Limit {
            per_second: 2.0,
            burst: 3,
        })
        .unwrap();
        let key = "u-1".to_owned();
        let remaining: Vec<u32> = (0..3).map(|_| limit.check(&key).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limit.check(&key);
        assert!(!refused.allowed);
        assert_eq!(
            refused.reset,
            Duration::from_millis(500),
            "one more after 1/rate"
        );
        assert!(limit.check(&"u-2".to_owned()).allowed, "keys are separate");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limit.check(&key).allowed);
        assert!(!limit.check(&key).allowed);
        tokio::time::advance(Duration::from_secs(2)).await;
        let whole = limit.check(&key);
        assert_eq!((whole.allowed, whole.remaining), (true, 2));
    }
}
