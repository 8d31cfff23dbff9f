//! One WebSocket connection: writes its queue, reads client frames, pings, and enforces the idle
//! timeout and the inbound message rate. Nothing a client sends can end the task other than by
//! closing: bad frames get an `error` frame (see `docs/protocol.md`).

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use events::{ChannelKind, ChannelName};
use futures::{SinkExt, StreamExt, stream::SplitSink};
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{
    Hub, Member,
    presence::PresenceTracker,
    protocol::{ClientFrame, ServerFrame, close_code},
    queue::{OutQueue, Outbound},
};
use crate::drain::Drain;
use crate::ops::metrics::CloseLabels;
use crate::realtime::WebSocketConfig;

/// Everything one connection task needs.
pub struct ConnectionContext {
    /// The hub the connection is registered with.
    pub hub: Arc<Hub>,
    /// The channel.
    pub channel: ChannelName,
    /// Who is connected.
    pub member: Member,
    /// Their display name, stamped on what they publish.
    pub username: String,
    /// The connection's outbound queue (already joined to the hub).
    pub queue: Arc<OutQueue>,
    /// Limits.
    pub config: Arc<WebSocketConfig>,
    /// Whether the member may publish on the channel.
    pub may_publish: bool,
    /// Collaboration channels: the presence the connection joined, to leave at the end.
    pub presence: Option<Arc<PresenceTracker>>,
    /// Changes when the gateway shuts down.
    pub shutdown: Drain,
    /// The reconnect delay to suggest at shutdown (jittered per connection).
    pub reconnect_after_ms: u64,
    /// Closes the gateway sends, by code (`gateway_websocket_closes_total`).
    pub closes: Family<CloseLabels, Counter>,
}

/// A token bucket on inbound messages.
struct InboundRate {
    tokens: f64,
    per_second: f64,
    burst: f64,
    refilled_at: Instant,
    consecutive_refusals: u32,
}

impl InboundRate {
    fn new(per_second: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            refilled_at: Instant::now(),
            consecutive_refusals: 0,
        }
    }

    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.refilled_at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.consecutive_refusals = 0;
            true
        } else {
            self.consecutive_refusals += 1;
            false
        }
    }
}

/// Runs the connection until either side closes or the gateway shuts down.
pub async fn run(socket: WebSocket, mut context: ConnectionContext) {
    let (mut sink, mut stream) = socket.split();
    let config = context.config.clone();
    let mut ping = tokio::time::interval(Duration::from_millis(config.ping_interval_ms));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // The first tick is immediate.
    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    let mut last_heard = Instant::now();
    let mut rate = InboundRate::new(
        config.inbound_messages_per_second,
        config.inbound_messages_burst,
    );
    loop {
        tokio::select! {
            biased;
            _ = context.shutdown.started() => {
                let reason = format!("gateway restarting; reconnect after {} ms", context.reconnect_after_ms);
                send_close(&mut sink, &context.closes, close_code::GOING_AWAY, &reason).await;
                break;
            }
            outbound = context.queue.next() => match outbound {
                Outbound::Text(text) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(code, reason) => {
                    send_close(&mut sink, &context.closes, code, reason).await;
                    break;
                }
            },
            inbound = stream.next() => {
                let Some(Ok(message)) = inbound else { break };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        if !rate.admit() {
                            if rate.consecutive_refusals > config.inbound_refusals_max {
                                context.queue.close(close_code::POLICY_VIOLATION, "message rate exceeded");
                            } else {
                                error(&context.queue, "rate_limited", "too many messages; slow down");
                            }
                            continue;
                        }
                        handle_text(&context, text.as_str()).await;
                    }
                    Message::Binary(_) => {
                        error(&context.queue, "binary_not_supported", "frames are JSON text");
                    }
                    Message::Close(_) => break,
                    // tungstenite answers pings itself; a pong only proves liveness.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle_timeout {
                    send_close(&mut sink, &context.closes, close_code::IDLE_TIMEOUT, "idle timeout").await;
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    context
        .hub
        .leave(&context.channel, context.member.connection_id);
    if let Some(presence) = &context.presence {
        presence
            .leave(&context.channel, context.member.connection_id)
            .await;
    }
}

/// Sends the close frame `code` with `reason`, and counts it.
async fn send_close(
    sink: &mut SplitSink<WebSocket, Message>,
    closes: &Family<CloseLabels, Counter>,
    code: u16,
    reason: &str,
) {
    closes.get_or_create(&CloseLabels { code }).inc();
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    // The peer may be gone already; the close is counted as sent either way.
    let _ = sink.send(frame).await;
}

fn error(queue: &OutQueue, code: &str, message: &str) {
    queue.push_control(&ServerFrame::Error { code, message });
}

async fn handle_text(context: &ConnectionContext, text: &str) {
    let frame = match ClientFrame::parse(text) {
        Ok(frame) => frame,
        Err(frame_error) => {
            error(&context.queue, frame_error.code(), &frame_error.to_string());
            return;
        }
    };
    match frame {
        ClientFrame::Ping { id } => context
            .queue
            .push_control(&ServerFrame::Pong { id: id.as_deref() }),
        ClientFrame::Publish { data } => publish(context, data).await,
    }
}

async fn publish(context: &ConnectionContext, data: Box<RawValue>) {
    if context.channel.kind() != ChannelKind::Project {
        error(
            &context.queue,
            "read_only_channel",
            "only collaboration channels accept publish",
        );
        return;
    }
    if !context.may_publish {
        error(
            &context.queue,
            "permission_denied",
            "you may read but not write on this channel",
        );
        return;
    }
    #[derive(serde::Serialize)]
    struct From<'a> {
        user_id: &'a str,
        username: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Collaboration<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        from: From<'a>,
        message: &'a RawValue,
    }
    let wrapped = serde_json::to_string(&Collaboration {
        kind: "collaboration",
        from: From {
            user_id: &context.member.user_id,
            username: &context.username,
        },
        message: &data,
    })
    .ok()
    .and_then(|text| RawValue::from_string(text).ok());
    let Some(wrapped) = wrapped else {
        error(
            &context.queue,
            "invalid_frame",
            "the data could not be encoded",
        );
        return;
    };
    if let Err(bus_error) = context
        .hub
        .bus()
        .publish(&context.channel, None, wrapped)
        .await
    {
        tracing::warn!(%bus_error, channel = %context.channel, "collaboration publish failed");
        error(
            &context.queue,
            "publish_failed",
            "the event bus is unavailable; try again",
        );
    }
}
