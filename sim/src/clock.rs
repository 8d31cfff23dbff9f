//! Wall-clock time in simulation: turmoil's simulated time since its epoch, plus a skew a scenario
//! can change to model a host whose clock is wrong.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use seams::Clock;

/// The simulated wall clock of one host.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock with no skew.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock `skew_ms` ahead of (positive) or behind (negative) simulated time.
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_since_epoch(&self) -> Duration {
        // Outside a simulation (a unit test of code that takes a Clock) time stands at the epoch.
        let now = turmoil::since_epoch().unwrap_or_default();
        let skew = self.skew_ms.load(Ordering::SeqCst);
        if skew >= 0 {
            now + Duration::from_millis(skew as u64)
        } else {
            now.saturating_sub(Duration::from_millis(skew.unsigned_abs()))
        }
    }
}
