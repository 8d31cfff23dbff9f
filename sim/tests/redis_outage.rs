//! The real-time path under simulation: the real gateway on the Redis bus (redis-rs over
//! turmoil), the simulated Redis, the real mock Auth, a backend publishing through the
//! publishing step, a WebSocket client and a readiness prober. Redis crashes (losing everything,
//! as without persistence) and comes back. Checked:
//!
//! - before the crash, the client receives every offset once, in order;
//! - it is told delivery broke; when Redis is back the gateway closes it with 1001 (revocations
//!   published before the crash are lost with the old epoch); it reconnects with its resume
//!   point, as the protocol asks of clients, is told the epoch changed (a `gap`), then receives
//!   the new epoch from offset 1, in order: nothing lost silently, no duplicates;
//! - every event published after Redis returned reaches the client;
//! - the event bus's readiness is false while Redis is down and true again after.
//!
//! Replay a failure with the seed it prints.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use events::{ChannelName, Publisher, RedisBus};
use futures::StreamExt;
use http::{Method, StatusCode};
use mock_backends::ServiceKind;
use serde_json::{Value, json};
use sim::{
    SimClock, TurmoilNet, hosts, seed,
    topology::{connections_max_for, gateway_config, redis_bus_config},
};
use tokio_tungstenite::tungstenite::Message;

const CRASH_AT: Duration = Duration::from_secs(4);
const RESTART_AT: Duration = Duration::from_secs(7);
/// The publisher stops here; the client reads until `CLIENT_UNTIL`.
const PUBLISH_UNTIL: Duration = Duration::from_secs(11);
const CLIENT_UNTIL: Duration = Duration::from_secs(13);

/// What the publisher managed to publish: (when, offset, epoch, seq).
type Published = Arc<Mutex<Vec<(Duration, u64, String, u64)>>>;

#[test]
fn redis_crash_and_restart_loses_nothing_silently_and_readiness_follows() {
    seed::replayable(
        seed::seed_or(11),
        "redis_outage",
        "redis_crash_and_restart_loses_nothing_silently_and_readiness_follows",
        run,
    );
}

fn run(seed: u64) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .simulation_duration(Duration::from_secs(60))
        .build();

    hosts::redis(&mut sim);
    hosts::mock_backend(
        &mut sim,
        "auth",
        ServiceKind::Auth,
        seed,
        None,
        Default::default(),
        Default::default(),
    );
    hosts::gateway(
        &mut sim,
        "gateway",
        // One WebSocket client and its login; the prober asks the health port, which the cap
        // does not count.
        gateway_config(seed, connections_max_for(1, 1)),
        seed,
        SimClock::new(),
    );

    let published: Published = Arc::default();
    let publisher_log = published.clone();
    sim.client("publisher", async move {
        let bus = RedisBus::new(TurmoilNet, redis_bus_config(seed ^ 0xbac4e4d))?;
        let channel = ChannelName::parse("user:u-1")?;
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        for seq in 0.. {
            ticks.tick().await;
            let now = started.elapsed();
            if now >= PUBLISH_UNTIL {
                break;
            }
            let data = serde_json::value::to_raw_value(&json!({ "seq": seq }))?;
            // During the outage publishing fails within the command timeout; that is expected.
            if let Ok(event) = bus.publish(&channel, None, data).await {
                publisher_log
                    .lock()
                    .unwrap()
                    .push((now, event.offset, event.epoch.clone(), seq));
            }
        }
        Ok(())
    });

    let readiness: Arc<Mutex<Vec<(Duration, StatusCode, bool)>>> = Arc::default();
    let prober_log = readiness.clone();
    sim.client("prober", async move {
        let started = tokio::time::Instant::now();
        while started.elapsed() < CLIENT_UNTIL {
            if let Ok((status, report)) =
                sim::client::http("gateway:8002", Method::GET, "/health/ready", None, "").await
            {
                let bus_healthy = report["dependencies"]["event_bus"]["healthy"] == true;
                prober_log
                    .lock()
                    .unwrap()
                    .push((started.elapsed(), status, bus_healthy));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    });

    let frames: Arc<Mutex<Vec<Value>>> = Arc::default();
    let client_log = frames.clone();
    sim.client("client", async move {
        // Wait for the gateway and Auth to come up.
        let token = loop {
            match sim::client::login("gateway:8000", "alice").await {
                Ok(token) => break token,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        // As the protocol asks of clients: after any close (1011 while the gateway starts, 1001
        // once Redis lost its data), reconnect with the last epoch and offset received.
        let deadline = tokio::time::Instant::now() + CLIENT_UNTIL;
        let mut resume: Option<(String, u64)> = None;
        while tokio::time::Instant::now() < deadline {
            let query = match &resume {
                Some((epoch, offset)) => format!("&since={offset}&epoch={epoch}"),
                None => String::new(),
            };
            let path = format!("/ws/notifications?access_token={token}{query}");
            let Ok(mut socket) = sim::client::websocket("gateway:8001", &path).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await
            {
                let Message::Text(text) = message else {
                    continue;
                };
                let frame: Value = serde_json::from_str(text.as_str())?;
                match frame["type"].as_str() {
                    Some("welcome") if resume.is_none() => {
                        let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
                        resume = Some((epoch, frame["latest_offset"].as_u64().unwrap_or(0)));
                    }
                    Some("event") => {
                        let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
                        resume = Some((epoch, frame["offset"].as_u64().unwrap_or(0)));
                    }
                    _ => {}
                }
                client_log.lock().unwrap().push(frame);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    });

    let (mut crashed, mut restarted) = (false, false);
    while !sim.step().expect("the simulation runs") {
        if !crashed && sim.elapsed() >= CRASH_AT {
            sim.crash("redis");
            crashed = true;
        }
        if !restarted && sim.elapsed() >= RESTART_AT {
            sim.bounce("redis");
            restarted = true;
        }
    }

    check_delivery(&frames.lock().unwrap(), &published.lock().unwrap());
    check_readiness(&readiness.lock().unwrap());
}

/// Offsets per epoch increase by one, the epoch change is announced, nothing is duplicated, and
/// every event of the new epoch reaches the client.
fn check_delivery(frames: &[Value], published: &[(Duration, u64, String, u64)]) {
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"welcome"), "{kinds:?}");
    let first_epoch = frames[0]["epoch"].as_str().unwrap().to_owned();
    let mut expected_offset = frames[0]["latest_offset"].as_u64().unwrap() + 1;
    let mut epoch = first_epoch.clone();
    let (mut told_interrupted, mut told_epoch_changed) = (false, false);
    let mut received_in_new_epoch = Vec::new();
    for frame in &frames[1..] {
        match frame["type"].as_str() {
            Some("event") => {
                let event_epoch = frame["epoch"].as_str().unwrap();
                if event_epoch != epoch {
                    assert!(
                        told_epoch_changed,
                        "an event of a new epoch arrived before the epoch change was announced: {frame}"
                    );
                    epoch = event_epoch.to_owned();
                    expected_offset = 1;
                }
                assert_eq!(
                    frame["offset"].as_u64(),
                    Some(expected_offset),
                    "offsets increase by one: {frame}"
                );
                expected_offset += 1;
                if epoch != first_epoch {
                    received_in_new_epoch.push(frame["data"]["seq"].as_u64().unwrap());
                }
            }
            Some("error") if frame["code"] == "delivery_interrupted" => told_interrupted = true,
            // A reconnection's welcome: the resume point carries on from the last event.
            Some("welcome") => {}
            Some("gap") => {
                assert_eq!(frame["reason"], "epoch_changed", "{frame}");
                told_epoch_changed = true;
            }
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert!(told_interrupted, "the client is told delivery broke");
    assert!(told_epoch_changed, "the client is told the epoch changed");
    assert!(
        expected_offset > 1 && epoch != first_epoch,
        "events of the new epoch arrived"
    );
    let published_in_new_epoch: Vec<u64> = published
        .iter()
        .filter(|(_, _, event_epoch, _)| *event_epoch != first_epoch)
        .map(|(_, _, _, seq)| *seq)
        .collect();
    assert_eq!(
        received_in_new_epoch, published_in_new_epoch,
        "every event of the new epoch reaches the client, once, in order"
    );
}

/// The event bus's part of readiness: healthy before the crash, unhealthy (and readiness 503)
/// during the outage, healthy again at the end. (Overall readiness also needs the Project and
/// Simulation backends, which this scenario does not run.)
fn check_readiness(samples: &[(Duration, StatusCode, bool)]) {
    let during = |from: Duration, to: Duration| {
        samples
            .iter()
            .filter(move |(at, _, _)| *at >= from && *at < to)
    };
    assert!(
        during(Duration::from_secs(2), CRASH_AT).any(|(_, _, bus)| *bus),
        "the bus is healthy before the crash: {samples:?}"
    );
    assert!(
        during(CRASH_AT + Duration::from_secs(1), RESTART_AT)
            .all(|(_, status, bus)| !*bus && *status == StatusCode::SERVICE_UNAVAILABLE),
        "not ready while Redis is down: {samples:?}"
    );
    assert_eq!(
        samples.last().map(|(_, _, bus)| *bus),
        Some(true),
        "the bus is healthy again after Redis is back: {samples:?}"
    );
}
