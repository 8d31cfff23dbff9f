//! The WebSocket scenario: each goose user opens one connection on start and holds it, keeping
//! it in its session data, and records every event's publish-to-receive latency (from the
//! publisher's intended send time, see [`crate::publisher`]) as a goose request `WS event`. An
//! offset that does not follow the previous one, a `gap` or `error` frame, or a lost connection
//! is a failure of that row; a lost connection is opened again (`WS connect`).
//!
//! User `i` subscribes to `/ws/simulation/load-{i mod channels}`, so the publisher spreads
//! events evenly over `channels` channels. Buffers are small and explicit: a process holds
//! thousands of these.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::StreamExt;
use goose::prelude::*;
use seams::SystemClock;
use serde::Deserialize;
use tokio::{net::TcpStream, sync::Mutex};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

use crate::publisher::{Stamp, unix_us};

/// Where and how the users connect.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The gateway's WebSocket base, `ws://host:port`.
    pub base_url: String,
    /// An access token for every connection (the script logs in once).
    pub token: String,
    /// How many simulation channels the users spread over (`load-0` …).
    pub channels: usize,
}

/// The channel ID of channel `index`.
pub fn channel_id(index: usize) -> String {
    format!("load-{index}")
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// How long one `receive` transaction reads before handing control back to goose (which stops
/// users only between transactions): short enough to stop within the campaign's wait, long
/// enough that 100,000 users cost goose few transactions (5 s slices made 20,000 a second, and
/// the subscribers used more CPU than the gateways in the full profile's hold).
const RECEIVE_SLICE: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A user's connection, in its session data (shared handles: session data must be `Clone`).
#[derive(Clone)]
struct Connection {
    socket: Arc<Mutex<Option<Socket>>>,
    last_offset: Arc<std::sync::Mutex<Option<u64>>>,
}

/// The fields of a server frame read here.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    latest_offset: u64,
    #[serde(default)]
    data: Option<Stamp>,
}

/// The scenario, named `ws_subscribers`, for `settings`.
pub fn scenario(settings: Settings) -> Result<Scenario, GooseError> {
    let _ = SETTINGS.set(settings);
    Ok(scenario!("ws_subscribers")
        // Goose asks every scenario for a host; these users make no HTTP request.
        .set_host("http://127.0.0.1")
        .register_transaction(transaction!(connect).set_on_start().set_name("connect"))
        .register_transaction(transaction!(receive).set_name("receive")))
}

fn settings() -> Result<&'static Settings, Box<TransactionError>> {
    SETTINGS
        .get()
        .ok_or_else(|| Box::new(TransactionError::Custom("no WebSocket settings".into())))
}

async fn open(user: &GooseUser) -> Result<Socket, String> {
    let settings = settings().map_err(|error| format!("{error:?}"))?;
    let channel = channel_id(user.weighted_users_index % settings.channels.max(1));
    let url = format!(
        "{}/ws/simulation/{channel}?access_token={}",
        settings.base_url, settings.token
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4_096)
        .write_buffer_size(0);
    let (socket, _) = connect_async_with_config(&url, Some(config), true)
        .await
        .map_err(|error| error.to_string())?;
    Ok(socket)
}

async fn connect(user: &mut GooseUser) -> TransactionResult {
    let started = tokio::time::Instant::now();
    let opened = open(user).await;
    let took = started.elapsed();
    let error = opened.as_ref().err().cloned();
    user.record_custom_request_duration(
        "WS",
        "connect",
        took,
        opened.is_ok(),
        None,
        error.as_deref(),
    )
    .await?;
    user.set_session_data(Connection {
        socket: Arc::new(Mutex::new(opened.ok())),
        last_offset: Arc::new(std::sync::Mutex::new(None)),
    });
    Ok(())
}

/// What one server frame means for a subscriber's measurements.
pub enum Seen {
    /// An event: its publish-to-receive latency, its sequence number, and whether its offset
    /// followed the previous one.
    Event {
        /// From the intended send time to receipt.
        latency: Duration,
        /// The publisher's sequence number.
        seq: u64,
        /// Offset = previous + 1 (or the first one).
        in_order: bool,
    },
    /// A failed delivery: unreadable frame, unstamped event, `gap` or `error`.
    Failure(&'static str),
    /// Nothing to measure (`welcome`, `pong`, …).
    Nothing,
}

/// Judges one text frame received at `received_us` (wall clock), tracking the connection's
/// last offset in `last_offset`.
pub fn judge(text: &str, last_offset: &mut Option<u64>, received_us: u64) -> Seen {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return Seen::Failure("unreadable frame");
    };
    match frame.kind.as_str() {
        "welcome" => {
            *last_offset = Some(frame.latest_offset);
            Seen::Nothing
        }
        "event" => {
            let in_order = last_offset.is_none_or(|last| frame.offset == last + 1);
            *last_offset = Some(frame.offset);
            match frame.data {
                Some(stamp) => Seen::Event {
                    latency: stamp.latency_at(received_us),
                    seq: stamp.seq,
                    in_order,
                },
                None => Seen::Failure("event without a stamp"),
            }
        }
        "gap" => Seen::Failure("gap"),
        "error" => Seen::Failure("error frame"),
        _ => Seen::Nothing,
    }
}

/// Why a connection was lost, from what its stream gave last: the gateway's close code and
/// reason, the transport's error, or an end without a close.
fn lost_because(last: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> String {
    match last {
        Some(Ok(Message::Close(Some(frame)))) => format!(
            "connection lost: closed by the gateway ({} {})",
            u16::from(frame.code),
            frame.reason
        ),
        // The only other message passed here: a close without a code.
        Some(Ok(_)) => "connection lost: closed by the gateway (no code)".to_owned(),
        Some(Err(error)) => format!("connection lost: {error}"),
        None => "connection lost: the stream ended without a close".to_owned(),
    }
}

async fn receive(user: &mut GooseUser) -> TransactionResult {
    let Some(connection) = user.get_session_data::<Connection>().cloned() else {
        return connect(user).await;
    };
    let mut slot = connection.socket.lock().await;
    let Some(socket) = slot.as_mut() else {
        drop(slot);
        return connect(user).await;
    };
    let deadline = tokio::time::Instant::now() + RECEIVE_SLICE;
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Ok(()),
            Ok(message) => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                slot.take();
                // Goose counts errors by their text: the reason says why it was lost.
                let lost = lost_because(message);
                let zero = Duration::ZERO;
                user.record_custom_request_duration("WS", "event", zero, false, None, Some(&lost))
                    .await?;
                return Ok(());
            }
            Some(Ok(_)) => continue,
        };
        let received_us = unix_us(&SystemClock);
        let seen = {
            let mut last = connection
                .last_offset
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            judge(text.as_str(), &mut last, received_us)
        };
        match seen {
            Seen::Event {
                latency, in_order, ..
            } => {
                let error = (!in_order).then_some("offset gap");
                user.record_custom_request_duration("WS", "event", latency, in_order, None, error)
                    .await?;
            }
            Seen::Failure(what) => {
                user.record_custom_request_duration(
                    "WS",
                    "event",
                    Duration::ZERO,
                    false,
                    None,
                    Some(what),
                )
                .await?;
            }
            Seen::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_must_follow_the_welcome_and_each_other() {
        let mut last = None;
        assert!(matches!(
            judge(r#"{"type":"welcome","latest_offset":41}"#, &mut last, 0),
            Seen::Nothing
        ));
        let event = |offset: u64| {
            format!(
                r#"{{"type":"event","offset":{offset},"data":{{"seq":1,"sent_unix_us":1000}}}}"#
            )
        };
        match judge(&event(42), &mut last, 3_000) {
            Seen::Event {
                latency, in_order, ..
            } => {
                assert!(in_order);
                assert_eq!(latency, Duration::from_millis(2));
            }
            _ => panic!("an event"),
        }
        assert!(matches!(
            judge(&event(44), &mut last, 3_000),
            Seen::Event {
                in_order: false,
                ..
            }
        ));
        assert!(matches!(
            judge(
                r#"{"type":"gap","from_offset":1,"to_offset":3}"#,
                &mut last,
                0
            ),
            Seen::Failure("gap")
        ));
        assert!(matches!(judge("not json", &mut last, 0), Seen::Failure(_)));
    }

    #[test]
    fn a_lost_connection_says_why() {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        let closed = Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "too slow".into(),
        }));
        assert_eq!(
            lost_because(Some(Ok(closed))),
            "connection lost: closed by the gateway (1008 too slow)"
        );
        assert_eq!(
            lost_because(None),
            "connection lost: the stream ended without a close"
        );
        let reset = tokio_tungstenite::tungstenite::Error::ConnectionClosed;
        assert!(lost_because(Some(Err(reset))).starts_with("connection lost: "));
    }
}
