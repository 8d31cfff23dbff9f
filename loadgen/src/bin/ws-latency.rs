//! Publish-to-client latency through a running gateway.
//!
//! Opens `--subscribers` WebSocket connections to one endpoint, publishes `--rate` events per
//! second for `--seconds` on the endpoint's channel through the Redis publishing step (open
//! loop: see `loadgen::publisher`), and measures, per delivered event, the time from its intended
//! send to its arrival at the client. Events of the first `--warmup-seconds` are delivered and
//! checked but not measured. Every delivery is checked: offsets per connection must increase by
//! one, and a `gap` frame or a close counts as a failure.
//!
//! Prints a summary and, last, one JSON line for scripts. Traffic goes where the URLs say: point
//! them at loopback. Bounded: connecting, the run and the drain each have a deadline.
//!
//! ```text
//! ws-latency --url 'ws://127.0.0.1:8001/ws/notifications?access_token=…' --channel user:u-1 \
//!     --redis 127.0.0.1:6379 --subscribers 1000 --rate 100 --seconds 20
//! ```

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use events::{ChannelName, RedisBus, RedisBusConfig};
use futures::StreamExt;
use hdrhistogram::Histogram;
use loadgen::{
    publisher::{publish_open_loop, unix_us},
    subscribers::{Seen as Delivery, judge},
};
use seams::{SystemClock, TokioNet};
use tokio::{sync::watch, time::Instant};
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

#[derive(Debug, Parser)]
struct Args {
    /// WebSocket URL of the endpoint, token included (`?access_token=…`).
    #[arg(long)]
    url: String,
    /// The channel that endpoint subscribes to (`user:u-1`, `simulation:s-2`, …).
    #[arg(long)]
    channel: String,
    /// Redis `host:port` the gateway's event bus uses.
    #[arg(long)]
    redis: String,
    /// WebSocket subscribers.
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Events published per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds at the start whose events are not measured.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
}

/// What one subscriber saw.
struct Seen {
    latency_us: Histogram<u64>,
    events: u64,
    /// Offsets skipped (not +1), `gap` frames, closes and unreadable frames.
    failures: u64,
}

async fn subscribe(
    url: String,
    measured_from_seq: u64,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Seen> {
    // Small explicit buffers: thousands of these share one process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4_096)
        .write_buffer_size(0);
    let (mut socket, _) = connect_async_with_config(&url, Some(config), true)
        .await
        .context("connect")?;
    let mut seen = Seen {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        events: 0,
        failures: 0,
    };
    let mut last_offset = None;
    let _ = ready.send(()).await;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            message = socket.next() => message,
        };
        let received_us = unix_us(&SystemClock);
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                seen.failures += 1;
                break;
            }
            Some(Ok(_)) => continue,
        };
        match judge(text.as_str(), &mut last_offset, received_us) {
            Delivery::Event {
                latency,
                seq,
                in_order,
            } => {
                seen.events += 1;
                if !in_order {
                    seen.failures += 1;
                }
                if seq >= measured_from_seq {
                    let _ = seen.latency_us.record((latency.as_micros() as u64).max(1));
                }
            }
            Delivery::Failure(_) => seen.failures += 1,
            Delivery::Nothing => {}
        }
    }
    Ok(seen)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = ChannelName::parse(&args.channel).context("--channel")?;
    let measured_from_seq = u64::from(args.rate) * args.warmup_seconds;
    let (stop, stopped) = watch::channel(false);
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(args.subscribers.max(1));

    let opening = Instant::now();
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for batch in (0..args.subscribers).collect::<Vec<_>>().chunks(200) {
        for _ in batch {
            subscribers.push(tokio::spawn(subscribe(
                args.url.clone(),
                measured_from_seq,
                stopped.clone(),
                ready_tx.clone(),
            )));
        }
        for _ in batch {
            tokio::time::timeout(Duration::from_secs(60), ready.recv())
                .await
                .context("a subscriber did not connect within 60 s")?;
        }
    }
    println!(
        "{} subscribers connected in {:.1} s",
        args.subscribers,
        opening.elapsed().as_secs_f64()
    );
    // Let the gateway confirm its subscription before the first event.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let bus = RedisBus::new(
        TokioNet,
        RedisBusConfig {
            address: args.redis.clone(),
            rng_seed: 0x5eed,
            ..RedisBusConfig::default()
        },
    )?;
    let count = u64::from(args.rate) * args.seconds;
    let report = publish_open_loop(
        Arc::new(bus),
        &[channel],
        args.rate,
        count,
        &SystemClock,
        10_000,
    )
    .await;
    // Drain: give stragglers a bounded moment, then stop every subscriber.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut events, mut failures, mut lost_subscribers) = (0u64, 0u64, 0u64);
    for subscriber in subscribers {
        match subscriber.await {
            Ok(Ok(seen)) => {
                latency.add(&seen.latency_us)?;
                events += seen.events;
                failures += seen.failures;
            }
            _ => lost_subscribers += 1,
        }
    }
    let expected = report.published * args.subscribers as u64;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1_000.0;
    println!(
        "published {} events at {}/s for {} s ({} failed, {} skipped)",
        report.published, args.rate, args.seconds, report.failed, report.skipped
    );
    println!(
        "delivered {events} of {expected} expected; failures {failures}; subscribers lost {lost_subscribers}"
    );
    println!(
        "publish-to-client latency over {} measured deliveries: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latency.len(),
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1_000.0
    );
    println!(
        "{}",
        serde_json::json!({
            "subscribers": args.subscribers, "rate": args.rate, "seconds": args.seconds,
            "published": report.published, "expected": expected, "delivered": events,
            "failures": failures, "lost_subscribers": lost_subscribers,
            "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
            "max_ms": latency.max() as f64 / 1_000.0,
        })
    );
    if events < expected
        || failures > 0
        || lost_subscribers > 0
        || report.failed > 0
        || report.skipped > 0
    {
        bail!("not every event reached every subscriber cleanly");
    }
    Ok(())
}
