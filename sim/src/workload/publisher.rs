//! The `publisher`: events on `user:u-1` through its own Redis bus, as a backend publishes them.

use std::time::Duration;

use events::{Audience, ChannelName, Publisher, RedisBus};
use serde_json::json;

use super::Run;
use crate::{
    TurmoilNet,
    topology::redis_bus_config,
    trace::{Observation, SharedTrace, record},
};

/// Starts the `publisher` host: an event every `interval` (see [`publish`]).
pub(super) fn spawn(sim: &mut turmoil::Sim<'_>, run: &Run, interval: Duration) {
    let (seed, end, trace) = (run.seed, run.end, run.trace.clone());
    sim.client("publisher", publish(seed, interval, end, trace));
}

/// Publishes `{"seq": n}` on `user:u-1` every `interval` from the first second until two seconds
/// before `end`, recording each event as stored ([`Observation::Published`]).
async fn publish(
    seed: u64,
    interval: Duration,
    end: Duration,
    trace: SharedTrace,
) -> turmoil::Result {
    let bus = RedisBus::new(TurmoilNet, redis_bus_config(seed ^ 0x9b1))?;
    let channel = ChannelName::parse("user:u-1")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ticks = tokio::time::interval(interval);
    // Stop publishing two seconds before the end, so the end state can be judged.
    for seq in 0u64.. {
        ticks.tick().await;
        if turmoil::sim_elapsed().unwrap_or_default() + Duration::from_secs(2) >= end {
            break;
        }
        // Every fifth event is addressed to someone else: u-1 must never see it.
        let audience = (seq % 5 == 4).then(|| Audience {
            users: vec!["u-9".to_owned()],
            roles: Vec::new(),
        });
        let data = serde_json::value::to_raw_value(&json!({ "seq": seq }))?;
        let started = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(event) = bus.publish(&channel, audience.clone(), data).await {
            record(
                &trace,
                "publisher",
                Observation::Published {
                    started,
                    channel: event.channel.clone(),
                    epoch: event.epoch.clone(),
                    offset: event.offset,
                    audience: audience.map(|a| a.users),
                },
            );
        }
    }
    Ok(())
}
