//! A sliding window of two counts, cut into buckets: what the breaker (calls, failures) and the
//! retry budget (calls, retries) both keep. Time is `tokio::time`.

use std::time::Duration;

use tokio::time::Instant;

/// The number of buckets a window is cut into.
const BUCKETS: usize = 10;

/// Two counts over the last `length` of time.
#[derive(Debug, Clone)]
pub struct Window {
    width: Duration,
    buckets: [(u64, u64); BUCKETS],
    newest: usize,
    newest_started: Instant,
}

impl Window {
    /// An empty window covering `length`.
    pub fn new(length: Duration) -> Self {
        Self {
            width: (length / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [(0, 0); BUCKETS],
            newest: 0,
            newest_started: Instant::now(),
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buckets = [(0, 0); BUCKETS];
        self.newest_started = Instant::now();
    }

    /// Adds to the counts of the bucket covering now.
    pub fn add(&mut self, first: u64, second: u64) {
        self.advance();
        let bucket = &mut self.buckets[self.newest];
        bucket.0 += first;
        bucket.1 += second;
    }

    /// The counts over the window, as of now.
    pub fn totals(&mut self) -> (u64, u64) {
        self.advance();
        self.buckets
            .iter()
            .fold((0, 0), |(a, b), bucket| (a + bucket.0, b + bucket.1))
    }

    /// Moves the window so its newest bucket covers now.
    fn advance(&mut self) {
        let now = Instant::now();
        let mut steps = 0;
        while now.duration_since(self.newest_started) >= self.width && steps < BUCKETS {
            self.newest = (self.newest + 1) % BUCKETS;
            self.buckets[self.newest] = (0, 0);
            self.newest_started += self.width;
            steps += 1;
        }
        if now.duration_since(self.newest_started) >= self.width {
            // Idle for longer than the whole window: everything in it is stale.
            self.newest_started = now;
        }
    }
}
