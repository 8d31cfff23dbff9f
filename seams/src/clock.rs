//! The wall-clock seam. Monotonic time is `tokio::time` everywhere (turmoil simulates it); only
//! wall-clock instants that leave the process (JWT `exp`/`iat`, timestamps in responses) come from
//! a [`Clock`].

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, as a duration since the Unix epoch.
    fn now_since_epoch(&self) -> Duration;

    /// Now, in whole seconds since the Unix epoch.
    fn now_unix_seconds(&self) -> i64 {
        i64::try_from(self.now_since_epoch().as_secs()).unwrap_or(i64::MAX)
    }

    /// Now, as a `SystemTime`.
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + self.now_since_epoch()
    }
}

/// A clock shared across tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place the real wall clock is read.
    fn now_since_epoch(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}
