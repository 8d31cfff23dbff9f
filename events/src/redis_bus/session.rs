//! The pub/sub session: one connection per bus that keeps every channel with local subscribers
//! `SUBSCRIBE`d, reconnects with seeded, capped backoff, and hands each message to the registry.

use super::*;

/// Why a connected session ended.
pub(super) enum SessionEnd {
    Stopped,
    Broken(String),
}

/// The connection task: keeps one pub/sub connection up until the bus is dropped.
pub(super) async fn run_pubsub<N: Net>(shared: Arc<BusState<N>>, mut stopped: watch::Receiver<()>) {
    let mut failed_attempts: u32 = 0;
    loop {
        let connected = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            connected = shared.link.dial(|stream, info| async move { PubSub::new(&info, stream).await }) => connected,
        };
        let end = match connected {
            Ok(pubsub) => {
                failed_attempts = 0;
                run_session(&shared, pubsub, &mut stopped).await
            }
            Err(error) => SessionEnd::Broken(error),
        };
        match end {
            SessionEnd::Stopped => break,
            SessionEnd::Broken(error) => {
                if *shared.registry.status.borrow() == BusStatus::Delivering {
                    tracing::warn!(%error, "event bus: Redis connection lost; reconnecting");
                } else {
                    tracing::debug!(%error, failed_attempts, "event bus: Redis still unreachable");
                }
                shared.registry.interrupt_all();
            }
        }
        let delay = shared.backoff(failed_attempts);
        failed_attempts = failed_attempts.saturating_add(1);
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    shared.registry.close_all();
}

/// One connected session: subscribe what is wanted, report delivery, then fan messages out and
/// follow subscription changes until the connection fails or the bus is dropped.
pub(super) async fn run_session<N: Net>(
    shared: &BusState<N>,
    pubsub: PubSub,
    stopped: &mut watch::Receiver<()>,
) -> SessionEnd {
    let registry = &shared.registry;
    let (mut sink, mut messages) = pubsub.split();
    let mut subscribed = BTreeSet::new();
    if let Err(error) = reconcile(shared, &mut sink, &mut subscribed).await {
        return SessionEnd::Broken(error);
    }
    if *registry.status.borrow() == BusStatus::Broken {
        tracing::info!(address = %shared.config.address, "event bus: delivering");
    }
    registry.restore_all();
    let keepalive_interval = Duration::from_millis(shared.config.keepalive_interval_ms);
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive_interval,
        keepalive_interval,
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return SessionEnd::Stopped,
            () = registry.changed.notified() => {
                if let Err(error) = reconcile(shared, &mut sink, &mut subscribed).await {
                    return SessionEnd::Broken(error);
                }
            }
            message = messages.next() => {
                let Some(message) = message else {
                    return SessionEnd::Broken("connection closed".to_owned());
                };
                deliver(registry, &message);
            }
            _ = keepalive.tick() => {
                let ping = tokio::time::timeout(
                    shared.config.command_timeout(),
                    sink.ping::<redis::Value>(),
                );
                match ping.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return SessionEnd::Broken(format!("ping: {error}")),
                    Err(_) => return SessionEnd::Broken("ping: no answer".to_owned()),
                }
            }
        }
    }
}

/// Brings Redis's subscriptions in line with the channels that have local subscribers.
pub(super) async fn reconcile<N: Net>(
    shared: &BusState<N>,
    sink: &mut PubSubSink,
    subscribed: &mut BTreeSet<String>,
) -> Result<(), String> {
    let timeout = shared.config.command_timeout();
    // Loop: subscribers may come and go while a command is in flight.
    loop {
        let wanted = shared.registry.wanted();
        let to_subscribe: Vec<String> = wanted.difference(subscribed).cloned().collect();
        let to_unsubscribe: Vec<String> = subscribed.difference(&wanted).cloned().collect();
        if to_subscribe.is_empty() && to_unsubscribe.is_empty() {
            shared.registry.mark_subscribed(subscribed);
            return Ok(());
        }
        if !to_subscribe.is_empty() {
            let names: Vec<String> = to_subscribe
                .iter()
                .map(|channel| format!("events:{{{channel}}}"))
                .collect();
            match tokio::time::timeout(timeout, sink.subscribe(names)).await {
                Ok(Ok(())) => subscribed.extend(to_subscribe),
                Ok(Err(error)) => return Err(format!("subscribe: {error}")),
                Err(_) => return Err("subscribe: no answer".to_owned()),
            }
        }
        if !to_unsubscribe.is_empty() {
            let names: Vec<String> = to_unsubscribe
                .iter()
                .map(|channel| format!("events:{{{channel}}}"))
                .collect();
            match tokio::time::timeout(timeout, sink.unsubscribe(names)).await {
                Ok(Ok(())) => {
                    for channel in &to_unsubscribe {
                        subscribed.remove(channel);
                    }
                }
                Ok(Err(error)) => return Err(format!("unsubscribe: {error}")),
                Err(_) => return Err("unsubscribe: no answer".to_owned()),
            }
        }
    }
}

/// Parses one pub/sub message once and hands it to every local subscriber of its channel.
pub(super) fn deliver(registry: &Registry, message: &redis::Msg) {
    let received_at = Instant::now();
    let Some(channel) = channel_of_pubsub(message.get_channel_name()) else {
        return;
    };
    match serde_json::from_slice::<Event>(message.get_payload_bytes()) {
        Ok(event) if event.channel == channel => {
            registry.deliver(channel, &Arc::new(event), received_at)
        }
        Ok(event) => {
            tracing::warn!(channel, event_channel = %event.channel, "event bus: envelope on the wrong channel; dropped");
        }
        Err(error) => {
            tracing::warn!(channel, %error, "event bus: unparseable envelope; dropped");
        }
    }
}
