//! Retries, only where safe, never more than a budget allows.
//!
//! The budget keeps a sliding window of calls and retries: a retry is allowed while the retries
//! in the window stay under `budget_ratio` of the calls plus `budget_min_per_second` per second.
//! A retry counts from the moment it is decided, through its backoff, so a failing backend is
//! never sent more than its normal load times (1 + ratio), however many calls are waiting to retry.
//! Backoff is "full jitter": a uniform draw in `[0, min(max, initial × 2^attempt)]` from the
//! gateway's seeded RNG.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use super::window::Window;
use crate::field_check::{InvalidField, positive, share};

/// The retry settings (`backends.<name>.retry`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included; 1 turns retries off. Default 3.
    pub max_attempts: u32,
    /// First backoff ceiling. Default 25 ms.
    pub backoff_initial_ms: u64,
    /// Largest backoff ceiling. Default 250 ms.
    pub backoff_max_ms: u64,
    /// Retries allowed per call in the window (0.0 to 1.0). Default 0.2.
    pub budget_ratio: f64,
    /// Retries allowed per second whatever the traffic (so a quiet gateway can still retry).
    /// Default 10.
    pub budget_min_per_second: u32,
    /// The budget's window. Default 10,000 ms.
    pub budget_window_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_initial_ms: 25,
            backoff_max_ms: 250,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
            budget_window_ms: 10_000,
        }
    }
}

impl RetryConfig {
    /// Checks the settings, naming fields under `prefix` (`backends.auth.retry`).
    pub fn check(&self, prefix: &str) -> Result<(), InvalidField> {
        positive(format!("{prefix}.max_attempts"), self.max_attempts.into())?;
        share(format!("{prefix}.budget_ratio"), self.budget_ratio)?;
        positive(format!("{prefix}.budget_window_ms"), self.budget_window_ms)?;
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(InvalidField::new(
                format!("{prefix}.backoff_initial_ms"),
                "must not exceed retry.backoff_max_ms",
            ));
        }
        Ok(())
    }
}

/// One backend's retry budget and backoff source. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: RetryConfig,
    /// Calls and retries.
    window: Arc<Mutex<Window>>,
    rng: Arc<Mutex<SmallRng>>,
}

impl RetryBudget {
    /// An empty budget; backoff draws come from `seed`.
    pub fn new(config: RetryConfig, seed: u64) -> Self {
        Self {
            config,
            window: Arc::new(Mutex::new(Window::new(Duration::from_millis(
                config.budget_window_ms,
            )))),
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one call (its first attempt).
    pub fn record_call(&self) {
        self.window().add(1, 0);
    }

    /// Takes one retry from the budget; `false` when it is spent (then do not retry).
    pub fn try_withdraw(&self) -> bool {
        let window_seconds = self.config.budget_window_ms as f64 / 1_000.0;
        let mut window = self.window();
        let (calls, retries) = window.totals();
        let allowed = self.config.budget_ratio * calls as f64
            + f64::from(self.config.budget_min_per_second) * window_seconds;
        if (retries + 1) as f64 <= allowed {
            window.add(0, 1);
            true
        } else {
            false
        }
    }

    /// The wait before retry number `retry` (1 for the first), with full jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .config
            .backoff_initial_ms
            .saturating_mul(1u64 << (retry.saturating_sub(1)).min(20))
            .min(self.config.backoff_max_ms);
        let drawn = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(0..=ceiling);
        Duration::from_millis(drawn)
    }
}

/// Whether a gRPC status may be retried on a safe method: the backend did not act on the call
/// (UNAVAILABLE: not reached, refused or shedding load). Deadlines are not retried: the call's
/// time is spent.
pub fn is_retryable(code: tonic::Code) -> bool {
    code == tonic::Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(
            RetryConfig {
                budget_ratio: ratio,
                budget_min_per_second: min_per_second,
                budget_window_ms: 1_000,
                ..RetryConfig::default()
            },
            7,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_the_ratio_of_calls_plus_the_floor() {
        let budget = budget(0.2, 2);
        for _ in 0..100 {
            budget.record_call();
        }
        // 0.2 × 100 + 2 per second × 1 s = 22 retries in the window, then none.
        let granted = (0..50).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 22);
        // The window slides: a second later the old calls and retries are gone.
        tokio::time::advance(Duration::from_millis(1_000)).await;
        let granted = (0..50).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 2, "only the floor is left without calls");
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_ratio_and_no_floor_nothing_is_retried() {
        let budget = budget(0.0, 0);
        budget.record_call();
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_full_jitter_under_a_doubling_ceiling_and_reproducible() {
        let budget = budget(0.2, 2);
        for retry in 1..=6 {
            let ceiling = Duration::from_millis((25u64 << (retry - 1)).min(250));
            for _ in 0..50 {
                assert!(budget.backoff(retry) <= ceiling);
            }
        }
        let draws = |seed| {
            let budget = RetryBudget::new(RetryConfig::default(), seed);
            (1..=10).map(|_| budget.backoff(3)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1), "the same seed, the same waits");
        assert_ne!(draws(1), draws(2));
    }

    #[test]
    fn only_unavailable_is_retried() {
        assert!(is_retryable(tonic::Code::Unavailable));
        for code in [
            tonic::Code::DeadlineExceeded,
            tonic::Code::Internal,
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::Unknown,
        ] {
            assert!(!is_retryable(code), "{code:?}");
        }
    }
}
