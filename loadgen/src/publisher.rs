//! An open-loop publisher: events go out on a fixed schedule whatever happens to earlier ones, and
//! each carries its sequence number and its *intended* send time. A receiver measures latency
//! from that intended time, so a stall anywhere (publisher, Redis, gateway) counts against latency
//! instead of silently slowing the schedule (no coordinated omission).
//!
//! The intended time is wall-clock microseconds since the Unix epoch, so receivers in other
//! processes on the same host can measure against it.

use std::{sync::Arc, time::Duration};

use events::{ChannelName, Publisher};
use seams::Clock;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{sync::Semaphore, time::Instant};

/// The payload of every published event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stamp {
    /// 0, 1, 2, … in schedule order.
    pub seq: u64,
    /// Intended send time, wall-clock microseconds since the Unix epoch.
    pub sent_unix_us: u64,
}

impl Stamp {
    /// From the intended send time to `now_unix_us` (zero if the clock says earlier).
    pub fn latency_at(&self, now_unix_us: u64) -> Duration {
        Duration::from_micros(now_unix_us.saturating_sub(self.sent_unix_us))
    }
}

/// Now on `clock`, in microseconds since the Unix epoch.
pub fn unix_us(clock: &dyn Clock) -> u64 {
    clock.now_since_epoch().as_micros() as u64
}

/// What the publisher did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PublishReport {
    /// Events the publishing step accepted.
    pub published: u64,
    /// Events the publishing step refused or could not reach the bus for.
    pub failed: u64,
    /// Events not even attempted because `in_flight_max` publishes were already outstanding.
    pub skipped: u64,
}

/// Publishes `count` events at `rate` per second, round robin over `channels`, at most
/// `in_flight_max` outstanding at once, stamping each with its intended time on `clock`.
/// Returns when every attempt has finished.
pub async fn publish_open_loop(
    publisher: Arc<dyn Publisher>,
    channels: &[ChannelName],
    rate: u32,
    count: u64,
    clock: &dyn Clock,
    in_flight_max: usize,
) -> PublishReport {
    let mut report = PublishReport::default();
    if channels.is_empty() {
        return report;
    }
    let interval_ns = 1_000_000_000 / u64::from(rate.max(1));
    let start = Instant::now();
    let wall_start_us = unix_us(clock);
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    let mut tasks = Vec::with_capacity(count as usize);
    for seq in 0..count {
        let offset = Duration::from_nanos(interval_ns * seq);
        tokio::time::sleep_until(start + offset).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            report.skipped += 1;
            continue;
        };
        let stamp = Stamp {
            seq,
            sent_unix_us: wall_start_us + offset.as_micros() as u64,
        };
        let data =
            serde_json::value::to_raw_value(&stamp).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let channel = &channels[(seq % channels.len() as u64) as usize];
        let publish = publisher.publish(channel, None, data);
        tasks.push(tokio::spawn(async move {
            let result = publish.await;
            drop(permit);
            result.is_ok()
        }));
    }
    for task in tasks {
        match task.await {
            Ok(true) => report.published += 1,
            _ => report.failed += 1,
        }
    }
    report
}
