//! An open-loop publisher: events go out on a fixed schedule whatever happens to earlier ones, and
//! each carries its sequence number and its *intended* send time. A receiver measures latency
//! from that intended time, so a stall anywhere (publisher, Redis, gateway) counts against latency
//! instead of silently slowing the schedule (no coordinated omission).

use std::{sync::Arc, time::Duration};

use events::{ChannelName, Publisher};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{sync::Semaphore, time::Instant};

/// The payload of every published event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stamp {
    /// 0, 1, 2, … in schedule order.
    pub seq: u64,
    /// Intended send time, microseconds after the run's base instant.
    pub sent_us: u64,
}

/// What the publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishReport {
    /// Events the publishing step accepted.
    pub published: u64,
    /// Events the publishing step refused or could not reach the bus for.
    pub failed: u64,
    /// Events not even attempted because `in_flight_max` publishes were already outstanding.
    pub skipped: u64,
}

/// Publishes `count` events on `channel` at `rate` per second from `base`, at most
/// `in_flight_max` outstanding at once. Returns when every attempt has finished.
pub async fn publish_open_loop(
    publisher: Arc<dyn Publisher>,
    channel: ChannelName,
    rate: u32,
    count: u64,
    base: Instant,
    in_flight_max: usize,
) -> PublishReport {
    let interval_ns = 1_000_000_000 / u64::from(rate.max(1));
    let start = Instant::now();
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    let mut tasks = Vec::with_capacity(count as usize);
    let mut report = PublishReport::default();
    for seq in 0..count {
        let intended = start + Duration::from_nanos(interval_ns * seq);
        tokio::time::sleep_until(intended).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            report.skipped += 1;
            continue;
        };
        let stamp = Stamp {
            seq,
            sent_us: intended.duration_since(base).as_micros() as u64,
        };
        let data =
            serde_json::value::to_raw_value(&stamp).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let publish = publisher.publish(&channel, None, data);
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
