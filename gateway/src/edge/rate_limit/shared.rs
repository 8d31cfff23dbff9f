//! Rate limits shared by every instance through Redis. One Lua script ([`GCRA_SCRIPT`],
//! `gcra.lua`) decides all the limits of a request atomically, on Redis's clock, so instances
//! agree on every client's budget. When Redis does not answer within
//! `rate_limit.shared_timeout_ms`, this instance decides with its local limits for
//! `rate_limit.shared_retry_interval_ms`, then tries Redis again; each switch is logged, shown in
//! `/health` and in the metrics.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use events::redis_bus::{RedisBusConfig, RedisLink};
use futures::future::BoxFuture;
use redis::Script;
use seams::Net;
use tokio::time::Instant;

use super::local::Verdict;
use crate::{ops::health::Health, ops::metrics::Metrics};

/// The GCRA script, verbatim (its keys, arguments and reply are documented in it).
pub const GCRA_SCRIPT: &str = include_str!("gcra.lua");

/// One limit to decide in Redis.
#[derive(Debug, Clone)]
pub struct SharedCheck {
    /// The Redis key holding this client's state of this limit.
    pub key: String,
    /// Time between requests at the sustained rate.
    pub interval: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

/// Runs the script; boxed so the limits need not be generic over the network seam.
trait GcraRunner: Send + Sync {
    fn run<'a>(&'a self, checks: &'a [SharedCheck]) -> BoxFuture<'a, Result<Vec<i64>, String>>;

    /// Dials and loads the script ahead of the first decision, within `within`.
    fn prepare(&self, within: Duration) -> BoxFuture<'_, Result<(), String>>;
}

struct RedisGcra<N> {
    link: RedisLink<N>,
    script: Script,
}

impl<N: Net> GcraRunner for RedisGcra<N> {
    fn run<'a>(&'a self, checks: &'a [SharedCheck]) -> BoxFuture<'a, Result<Vec<i64>, String>> {
        Box::pin(async move {
            let mut invocation = self.script.prepare_invoke();
            for check in checks {
                invocation.key(&check.key);
            }
            for check in checks {
                // At least 1 µs: the script counts in whole microseconds.
                let interval_us = check.interval.as_micros().max(1) as u64;
                invocation.arg(interval_us).arg(check.burst);
            }
            self.link.run_script(invocation).await
        })
    }

    fn prepare(&self, within: Duration) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.link.prepare(&self.script, within))
    }
}

/// Whether decisions are being made in Redis, and since when not.
#[derive(Debug, Default)]
struct Fallback {
    /// While set, decide locally until then (then one request tries Redis again).
    local_until: Option<Instant>,
}

/// The Redis side of the limits, with the fallback to local limits.
pub struct SharedLimits {
    runner: Box<dyn GcraRunner>,
    address: String,
    retry_interval: Duration,
    /// Bound of each try of [`SharedLimits::prepare`].
    prepare_timeout: Duration,
    fallback: Mutex<Fallback>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Limits shared through the event bus's Redis (`redis.address`, dialled through `net`
    /// when first needed). `timeout` bounds each decision, dialling included.
    pub fn new<N: Net>(
        net: N,
        redis: &RedisBusConfig,
        timeout: Duration,
        retry_interval: Duration,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let connect_timeout = Duration::from_millis(redis.connect_timeout_ms);
        let link = RedisLink::new(
            net,
            redis.address.clone(),
            connect_timeout.min(timeout),
            timeout,
        );
        health.set_rate_limits(true, format!("shared through Redis at {}", redis.address));
        metrics.set_rate_limits_shared(true);
        Self {
            runner: Box::new(RedisGcra {
                link,
                script: Script::new(GCRA_SCRIPT),
            }),
            address: redis.address.clone(),
            retry_interval,
            prepare_timeout: timeout + connect_timeout,
            fallback: Mutex::new(Fallback::default()),
            health,
            metrics,
        }
    }

    /// Dials Redis and loads the script before the first decision needs them, trying again every
    /// retry interval until it works: a first decision that had to do both would rarely fit its
    /// timeout, and would send the instance to its local limits for a retry interval (the
    /// simulation saw two gateways just started admit a burst each, past the shared limit).
    /// Each try gets the decision timeout plus the connect timeout.
    pub async fn prepare(&self) {
        loop {
            match self.runner.prepare(self.prepare_timeout).await {
                Ok(()) => {
                    tracing::debug!(address = %self.address, "rate limits: Redis link ready");
                    return;
                }
                Err(error) => {
                    tracing::debug!(address = %self.address, %error, "rate limits: Redis not ready yet");
                    tokio::time::sleep(self.retry_interval).await;
                }
            }
        }
    }

    /// The verdicts of `checks`, in order, from Redis; `None` when the caller must decide with
    /// its local limits (Redis did not answer now, or lately).
    pub async fn check(&self, checks: &[SharedCheck]) -> Option<Vec<Verdict>> {
        if !self.may_try_redis() {
            self.metrics.count_rate_limit_local_decision();
            return None;
        }
        match self
            .runner
            .run(checks)
            .await
            .and_then(|reply| parse(checks, &reply))
        {
            Ok(verdicts) => {
                self.redis_answered();
                Some(verdicts)
            }
            Err(error) => {
                self.redis_failed(&error);
                self.metrics.count_rate_limit_local_decision();
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fallback> {
        self.fallback.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True unless falling back; when the fallback's time is up, true for this one caller,
    /// which tries Redis while the others go on deciding locally.
    fn may_try_redis(&self) -> bool {
        let mut fallback = self.lock();
        match fallback.local_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                fallback.local_until = Some(Instant::now() + self.retry_interval);
                true
            }
            Some(_) => false,
        }
    }

    fn redis_answered(&self) {
        let mut fallback = self.lock();
        if fallback.local_until.take().is_some() {
            drop(fallback);
            tracing::info!(address = %self.address, "rate limits: shared through Redis again");
            self.health
                .set_rate_limits(true, format!("shared through Redis at {}", self.address));
            self.metrics.set_rate_limits_shared(true);
        }
    }

    fn redis_failed(&self, error: &str) {
        let mut fallback = self.lock();
        let was_shared = fallback.local_until.is_none();
        fallback.local_until = Some(Instant::now() + self.retry_interval);
        drop(fallback);
        if was_shared {
            tracing::warn!(%error, "rate limits: Redis did not answer; limits are local to this instance");
            self.health.set_rate_limits(
                false,
                format!("local to this instance: Redis did not answer ({error})"),
            );
            self.metrics.set_rate_limits_shared(false);
        }
    }
}

/// The script's reply, three integers per check, as verdicts.
fn parse(checks: &[SharedCheck], reply: &[i64]) -> Result<Vec<Verdict>, String> {
    if reply.len() != 3 * checks.len() {
        return Err(format!(
            "the rate-limit script answered {} values for {} limits",
            reply.len(),
            checks.len()
        ));
    }
    Ok(checks
        .iter()
        .zip(reply.chunks_exact(3))
        .map(|(check, values)| Verdict {
            limit: check.burst,
            remaining: u32::try_from(values[1].max(0))
                .unwrap_or(u32::MAX)
                .min(check.burst),
            reset: Duration::from_micros(values[2].max(0) as u64),
            allowed: values[0] == 1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis that answers from a queue, or fails.
    struct Scripted(Mutex<Vec<Result<Vec<i64>, String>>>);

    impl GcraRunner for Scripted {
        fn run<'a>(&'a self, _: &'a [SharedCheck]) -> BoxFuture<'a, Result<Vec<i64>, String>> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }

        fn prepare(&self, _: Duration) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn limits(answers: Vec<Result<Vec<i64>, String>>) -> (SharedLimits, Arc<Health>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health::new(Vec::new(), metrics.clone()));
        let limits = SharedLimits {
            runner: Box::new(Scripted(Mutex::new(answers))),
            address: "redis:6379".into(),
            retry_interval: Duration::from_secs(1),
            prepare_timeout: Duration::from_secs(1),
            fallback: Mutex::new(Fallback::default()),
            health: health.clone(),
            metrics: metrics.clone(),
        };
        (limits, health, metrics)
    }

    fn check() -> [SharedCheck; 1] {
        [SharedCheck {
            key: "ratelimit:{u-1}:user".into(),
            interval: Duration::from_millis(100),
            burst: 5,
        }]
    }

    #[tokio::test(start_paused = true)]
    async fn falls_back_to_local_limits_and_returns_once_redis_answers() {
        let (limits, health, metrics) = limits(vec![
            Ok(vec![1, 4, 100_000]),
            Err("redis: no answer within 50 ms".into()),
            Ok(vec![0, 0, 30_000]),
        ]);
        let verdicts = limits.check(&check()).await.expect("Redis decides");
        assert_eq!(
            verdicts,
            [Verdict {
                limit: 5,
                remaining: 4,
                reset: Duration::from_millis(100),
                allowed: true
            }]
        );
        assert!(
            limits.check(&check()).await.is_none(),
            "Redis failed: local"
        );
        let report = health.report();
        let status = report.rate_limits.expect("shown in health");
        assert!(!status.shared, "{status:?}");
        assert!(status.detail.contains("no answer"), "{status:?}");
        // Within the retry interval Redis is not asked (the queue would answer otherwise).
        assert!(limits.check(&check()).await.is_none());
        let rendered = metrics.render();
        assert!(
            rendered.contains("gateway_rate_limits_shared 0"),
            "{rendered}"
        );
        assert!(
            rendered.contains("gateway_rate_limit_local_decisions_total 2"),
            "{rendered}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let refused = limits.check(&check()).await.expect("Redis decides again");
        assert!(!refused[0].allowed);
        assert_eq!(refused[0].reset, Duration::from_millis(30));
        assert!(health.report().rate_limits.unwrap().shared);
        assert!(metrics.render().contains("gateway_rate_limits_shared 1"));
    }

    #[tokio::test]
    async fn a_malformed_reply_is_a_failure_not_a_verdict() {
        let (limits, health, _) = limits(vec![Ok(vec![1, 4])]);
        assert!(limits.check(&check()).await.is_none());
        assert!(!health.report().rate_limits.unwrap().shared);
    }
}
