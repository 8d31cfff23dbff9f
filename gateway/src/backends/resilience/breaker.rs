//! A circuit breaker: closed (calls flow, outcomes counted), open (calls refused at once, for a
//! period that grows each time a probe fails), half-open (a few probe calls decide).
//!
//! It opens on `consecutive_failures` failures in a row, or when at least `min_calls` calls in the
//! last `window_ms` failed in a ratio of `failure_ratio` or more. Time is `tokio::time`, so it
//! runs on simulated time under turmoil.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::window::Window;
use crate::field_check::{InvalidField, positive, share};

/// The breaker's settings (`backends.<name>.breaker`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Whether the breaker acts at all. Default true.
    pub enabled: bool,
    /// Failures in a row that open it. Default 5.
    pub consecutive_failures: u32,
    /// Share of failed calls in the window that opens it (0.0 to 1.0). Default 0.5.
    pub failure_ratio: f64,
    /// Calls the window must hold before the ratio counts. Default 20.
    pub min_calls: u32,
    /// Length of the sliding window. Default 10,000 ms.
    pub window_ms: u64,
    /// How long it first stays open. Default 1,000 ms.
    pub open_ms: u64,
    /// The longest it stays open: each failed probe doubles the period up to this. Default 30,000 ms.
    pub open_max_ms: u64,
    /// Probe calls let through when half-open; all must succeed to close. Default 3.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_calls: 20,
            window_ms: 10_000,
            open_ms: 1_000,
            open_max_ms: 30_000,
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks the settings, naming fields under `prefix` (`backends.auth.breaker`).
    pub fn check(&self, prefix: &str) -> Result<(), InvalidField> {
        share(format!("{prefix}.failure_ratio"), self.failure_ratio)?;
        positive(
            format!("{prefix}.consecutive_failures"),
            self.consecutive_failures.into(),
        )?;
        positive(format!("{prefix}.window_ms"), self.window_ms)?;
        positive(format!("{prefix}.open_ms"), self.open_ms)?;
        positive(format!("{prefix}.open_max_ms"), self.open_max_ms)?;
        positive(
            format!("{prefix}.half_open_probes"),
            self.half_open_probes.into(),
        )
    }
}

/// What the breaker reports about itself (health, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused.
    Open,
    /// A few probe calls are let through.
    HalfOpen,
}

impl BreakerState {
    /// The metric value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// A call refused by an open breaker: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Until the breaker lets a probe through (at least one second when rounded for clients).
    pub retry_after: Duration,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Failures in a row while closed.
    consecutive: u32,
    /// Calls and failures while closed.
    window: Window,
    /// How many times it opened since it last closed (the open period doubles with each).
    openings: u32,
}

/// One breaker (per backend instance). Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
}

/// Permission for one call. Report its outcome with [`Permit::succeeded`] or
/// [`Permit::failed`]; dropping it unreported (a cancelled call) counts for nothing.
#[derive(Debug)]
pub struct Permit {
    breaker: Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Closed,
                consecutive: 0,
                window: Window::new(Duration::from_millis(config.window_ms)),
                openings: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an open breaker whose period ended reads half-open).
    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if Instant::now() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call. Refused at once while open, and while half-open once every probe
    /// slot is taken.
    pub fn try_acquire(&self) -> Result<Permit, Refused> {
        if !self.config.enabled {
            return Ok(self.permit(false));
        }
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => Ok(self.permit(false)),
            Phase::Open { until } if now < until => Err(Refused {
                retry_after: until - now,
            }),
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen {
                    in_flight: 1,
                    succeeded: 0,
                };
                Ok(self.permit(true))
            }
            Phase::HalfOpen {
                ref mut in_flight,
                succeeded,
            } => {
                if *in_flight + succeeded < self.config.half_open_probes {
                    *in_flight += 1;
                    Ok(self.permit(true))
                } else {
                    Err(Refused {
                        retry_after: Duration::from_millis(self.config.open_ms),
                    })
                }
            }
        }
    }

    fn permit(&self, probe: bool) -> Permit {
        Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        }
    }

    fn open_period(&self, openings: u32) -> Duration {
        let factor = 1u64 << openings.min(20);
        Duration::from_millis(
            self.config
                .open_ms
                .saturating_mul(factor)
                .min(self.config.open_max_ms.max(self.config.open_ms)),
        )
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        let period = self.open_period(inner.openings);
        inner.openings = inner.openings.saturating_add(1);
        inner.phase = Phase::Open {
            until: now + period,
        };
        inner.consecutive = 0;
        inner.window.clear();
        tracing::warn!(
            open_for_ms = period.as_millis() as u64,
            "circuit breaker opened"
        );
    }

    fn report(&self, probe: bool, failed: bool) {
        if !self.config.enabled {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        match (&mut inner.phase, probe) {
            (
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                if failed {
                    self.open(&mut inner, now);
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.config.half_open_probes {
                        inner.phase = Phase::Closed;
                        inner.openings = 0;
                        inner.window.clear();
                        tracing::info!("circuit breaker closed");
                    }
                }
            }
            (Phase::Closed, false) => {
                inner.window.add(1, u64::from(failed));
                if failed {
                    inner.consecutive += 1;
                } else {
                    inner.consecutive = 0;
                }
                let (calls, failures) = inner.window.totals();
                let ratio_tripped = calls >= u64::from(self.config.min_calls)
                    && failures as f64 >= self.config.failure_ratio * calls as f64;
                if failed
                    && (inner.consecutive >= self.config.consecutive_failures || ratio_tripped)
                {
                    self.open(&mut inner, now);
                }
            }
            // An outcome from before the breaker changed phase: it no longer says anything.
            _ => {}
        }
    }

    fn release(&self, probe: bool) {
        if let Phase::HalfOpen { in_flight, .. } = &mut self.lock().phase
            && probe
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

impl Permit {
    /// The call succeeded (or failed for a reason that says nothing about the backend's health).
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, false);
    }

    /// The call failed in a way that says the backend is unwell.
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, true);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            min_calls: 10,
            failure_ratio: 0.5,
            window_ms: 1_000,
            open_ms: 100,
            open_max_ms: 350,
            half_open_probes: 2,
            enabled: true,
        }
    }

    fn fail(breaker: &Breaker, times: usize) {
        for _ in 0..times {
            breaker.try_acquire().expect("closed").failed();
        }
    }

    fn succeed(breaker: &Breaker, times: usize) {
        for _ in 0..times {
            breaker.try_acquire().expect("closed").succeeded();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_it_refuses_until_the_period_ends() {
        let breaker = Breaker::new(config());
        fail(&breaker, 2);
        succeed(&breaker, 1);
        fail(&breaker, 2);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success resets the run"
        );
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_millis(40)
        );
        tokio::time::advance(Duration::from_millis(40)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_ratio_over_the_window_opens_it_once_enough_calls_were_seen() {
        let breaker = Breaker::new(config());
        // Alternating: never three in a row, but half of the calls fail.
        for _ in 0..4 {
            fail(&breaker, 1);
            succeed(&breaker, 1);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "8 calls: under min_calls"
        );
        fail(&breaker, 1);
        succeed(&breaker, 1);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "the last call succeeded"
        );
        fail(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open, "6 of 11 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn old_calls_leave_the_window() {
        let breaker = Breaker::new(config());
        for _ in 0..3 {
            fail(&breaker, 2);
            succeed(&breaker, 1);
        }
        tokio::time::advance(Duration::from_millis(1_500)).await;
        // With the nine old calls this would be 8 failures in 13 calls; they left the window.
        for _ in 0..2 {
            succeed(&breaker, 1);
            fail(&breaker, 1);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_close_it_on_success_and_reopen_it_for_longer_on_failure() {
        let breaker = Breaker::new(config());
        fail(&breaker, 3);
        tokio::time::advance(Duration::from_millis(100)).await;
        // Half-open: two probes at most in flight.
        let first = breaker.try_acquire().expect("probe");
        let second = breaker.try_acquire().expect("probe");
        assert!(breaker.try_acquire().is_err(), "only two probes");
        first.succeeded();
        second.failed();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_millis(200)
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        breaker.try_acquire().expect("probe").failed();
        // Doubling again would be 400 ms; the maximum is 350.
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_millis(350)
        );
        tokio::time::advance(Duration::from_millis(350)).await;
        breaker.try_acquire().expect("probe").succeeded();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.try_acquire().expect("probe").succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Closed again: the next opening starts from the first period.
        fail(&breaker, 3);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_millis(100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_frees_its_slot_and_a_disabled_breaker_never_opens() {
        let breaker = Breaker::new(config());
        fail(&breaker, 3);
        tokio::time::advance(Duration::from_millis(100)).await;
        let (a, b) = (
            breaker.try_acquire().unwrap(),
            breaker.try_acquire().unwrap(),
        );
        drop(a);
        let c = breaker
            .try_acquire()
            .expect("the dropped probe's slot is free");
        drop((b, c));

        let off = Breaker::new(BreakerConfig {
            enabled: false,
            ..config()
        });
        fail(&off, 50);
        assert_eq!(off.state(), BreakerState::Closed);
    }
}
