//! The WebSocket hub with the in-memory bus: refusals before the upgrade, delivery, audience,
//! recovery after reconnect, bad frames, collaboration, slow consumers, conflation, shutdown.

mod support;

use std::time::Duration;

use events::{Audience, ChannelName, Presence, Publisher};
use futures::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::Stack;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The stack plus its WebSocket router served on a local port.
struct WsStack {
    stack: Stack,
    address: std::net::SocketAddr,
}

impl WsStack {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut gateway::Config)) -> Self {
        let stack = Stack::start_with(|_| {}, adjust).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = stack.app.websocket_router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { stack, address }
    }

    /// Opens a WebSocket with a bearer token; returns the client or the HTTP refusal.
    async fn open(&self, path: &str, token: Option<&str>) -> Result<Client, (u16, Value)> {
        self.open_with(path, token, &[]).await
    }

    async fn open_with(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, (u16, Value)> {
        let mut request = format!("ws://{}{path}", self.address)
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match connect_async(request).await {
            Ok((client, _)) => Ok(client),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(other) => panic!("unexpected WebSocket error: {other}"),
        }
    }

    async fn publish(&self, channel: &str, audience: Option<Audience>, data: Value) -> u64 {
        let channel = ChannelName::parse(channel).unwrap();
        let data = RawValue::from_string(data.to_string()).unwrap();
        self.stack
            .bus
            .publish(&channel, audience, data)
            .await
            .unwrap()
            .offset
    }

    /// Waits (bounded) until the hub has `count` subscribers on `channel`: after that, live
    /// events published are certain to reach them.
    async fn wait_subscribed(&self, channel: &str, count: usize) {
        let channel = ChannelName::parse(channel).unwrap();
        for _ in 0..200 {
            if self.stack.app.hub().subscriber_count(&channel) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{channel} never reached {count} subscribers");
    }
}

/// The next text frame as JSON (bounded wait); pings and pongs are skipped.
async fn next_frame(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a frame within 5 s")
            .expect("the connection is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the close frame (bounded); returns its code and reason.
async fn close_of(client: &mut Client) -> (CloseCode, String) {
    for _ in 0..100_000 {
        let message = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a frame within 5 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    panic!("no close frame");
}

async fn send(client: &mut Client, text: &str) {
    client.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test]
async fn refusals_happen_before_the_upgrade_with_the_error_shape() {
    let ws = WsStack::start().await;
    let bob = ws.stack.login("bob").await;

    let (status, body) = ws.open("/ws/notifications", None).await.unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    let (status, body) = ws
        .open("/ws/notifications", Some("a.b.c"))
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // s-2 is Alice's.
    let (status, body) = ws.open("/ws/simulation/s-2", Some(&bob)).await.unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );

    let (status, body) = ws
        .open_with(
            "/ws/notifications",
            Some(&bob),
            &[("origin", "https://evil.example")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );

    let (status, body) = ws
        .open("/ws/simulation/bad%20id", Some(&bob))
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_channel"))
    );

    let (status, _) = ws
        .open("/ws/notifications?since=3", Some(&bob))
        .await
        .unwrap_err();
    assert_eq!(status, 400);
}

#[tokio::test]
async fn handshakes_are_counted_by_endpoint() {
    let ws = WsStack::start().await;
    let (status, _) = ws.open("/ws/simulation/s-2", None).await.unwrap_err();
    assert_eq!(status, 401);
    let text = support::metrics_text(&ws.stack.app).await;
    assert!(
        text.contains(
            r#"gateway_http_requests_total{route="GET /ws/simulation/{id}",method="GET",status="401"} 1"#
        ),
        "{text}"
    );
}

/// `gateway_websocket_connections` counts the connections open now.
#[tokio::test]
async fn open_connections_are_counted_until_they_close() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let open_now = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("gateway_websocket_connections "))
            .map(str::to_owned)
    };
    let mut client = ws.open("/ws/notifications", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    let text = support::metrics_text(&ws.stack.app).await;
    assert_eq!(open_now(&text).as_deref(), Some("1"), "{text}");
    client.close(None).await.unwrap();
    drop(client);
    let mut count = None;
    for _ in 0..100 {
        count = open_now(&support::metrics_text(&ws.stack.app).await);
        if count.as_deref() == Some("0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        count.as_deref(),
        Some("0"),
        "the closed connection is no longer counted"
    );
}

#[tokio::test]
async fn notifications_arrive_with_offsets_and_honour_the_audience() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    // The token may also come in the query string (browsers cannot set headers).
    let mut client = ws
        .open(&format!("/ws/notifications?access_token={alice}"), None)
        .await
        .unwrap();
    let welcome = next_frame(&mut client).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["channel"], "user:u-1");
    assert_eq!(welcome["epoch"], "test-epoch");
    ws.wait_subscribed("user:u-1", 1).await;

    ws.publish("user:u-1", None, json!({"n": 1})).await;
    let not_for_alice = Audience {
        users: vec!["u-9".into()],
        roles: vec![],
    };
    ws.publish("user:u-1", Some(not_for_alice), json!({"n": 2}))
        .await;
    let for_admins = Audience {
        users: vec![],
        roles: vec!["admin".into()],
    };
    ws.publish("user:u-1", Some(for_admins), json!({"n": 3}))
        .await;

    let first = next_frame(&mut client).await;
    assert_eq!(
        (first["type"].as_str(), first["offset"].as_u64()),
        (Some("event"), Some(1))
    );
    assert_eq!(first["data"], json!({"n": 1}));
    // Offset 2 was not for Alice: it is skipped silently, not reported as a gap.
    let third = next_frame(&mut client).await;
    assert_eq!(
        (third["type"].as_str(), third["offset"].as_u64()),
        (Some("event"), Some(3))
    );
    // Each of the three live events had its handoff (bus to every local queue) measured.
    let metrics = ws.stack.app.metrics().render();
    assert!(
        metrics.contains("gateway_event_handoff_seconds_count 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed_then_live_events_once_each() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    for n in 1..=3 {
        ws.publish("simulation:s-2", None, json!({"n": n})).await;
    }
    let mut client = ws
        .open("/ws/simulation/s-2?since=1&epoch=test-epoch", Some(&alice))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    ws.wait_subscribed("simulation:s-2", 1).await;
    ws.publish("simulation:s-2", None, json!({"n": 4})).await;
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let frame = next_frame(&mut client).await;
        assert_eq!(frame["type"], "event", "{frame}");
        offsets.push(frame["offset"].as_u64().unwrap());
    }
    assert_eq!(offsets, [2, 3, 4]);
    send(&mut client, r#"{"type":"ping","id":"end"}"#).await;
    let pong = next_frame(&mut client).await;
    assert_eq!(
        pong,
        json!({"type": "pong", "id": "end"}),
        "no duplicate after the replay"
    );
}

#[tokio::test]
async fn a_resume_point_beyond_the_newest_offset_does_not_swallow_new_events() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws
        .open(
            "/ws/simulation/s-2?since=1000&epoch=test-epoch",
            Some(&alice),
        )
        .await
        .unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    ws.wait_subscribed("simulation:s-2", 1).await;
    let offset = ws.publish("simulation:s-2", None, json!({"n": 1})).await;
    let event = next_frame(&mut client).await;
    assert_eq!(event["offset"].as_u64(), Some(offset));
}

#[tokio::test]
async fn a_resume_point_from_another_epoch_is_an_explicit_gap() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    // The current epoch already holds two events; the client comes back from an older one.
    ws.publish("simulation:s-2", None, json!({"n": 1})).await;
    ws.publish("simulation:s-2", None, json!({"n": 2})).await;
    let mut client = ws
        .open(
            "/ws/simulation/s-2?since=40&epoch=an-old-epoch",
            Some(&alice),
        )
        .await
        .unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    let gap = next_frame(&mut client).await;
    assert_eq!(gap["type"], "gap");
    assert_eq!(gap["reason"], "epoch_changed");
    assert_eq!(gap["from_offset"], 41);
    assert_eq!(gap["to_offset"], Value::Null);
    // The new epoch is recoverable: its history follows from offset 1.
    for offset in [1, 2] {
        let event = next_frame(&mut client).await;
        assert_eq!(event["type"], "event", "{event}");
        assert_eq!(event["offset"], offset);
        assert_eq!(event["epoch"], "test-epoch");
    }
}

/// The largest offset has no next one: a resume point there is refused before the upgrade (it
/// used to overflow `since + 1` in the hub, a panic in debug builds and a wrap in release).
#[tokio::test]
async fn a_resume_point_at_the_largest_offset_is_refused_before_the_upgrade() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    for epoch in ["an-old-epoch", "test-epoch"] {
        let path = format!("/ws/simulation/s-2?since=18446744073709551615&epoch={epoch}");
        let Err((status, body)) = ws.open(&path, Some(&alice)).await else {
            panic!("a resume point at {epoch} was not refused");
        };
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    }
    // One below is a resume point like any other.
    let path = "/ws/simulation/s-2?since=18446744073709551614&epoch=an-old-epoch";
    let mut client = ws.open(path, Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    let gap = next_frame(&mut client).await;
    assert_eq!(gap["reason"], "epoch_changed", "{gap}");
    assert_eq!(gap["from_offset"], u64::MAX, "{gap}");
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_lives_on() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws.open("/ws/simulation/s-2", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    for (frame, code) in [
        ("{not json", "invalid_frame"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"publish","data":{"x":1}}"#, "read_only_channel"),
    ] {
        send(&mut client, frame).await;
        let error = next_frame(&mut client).await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some(code))
        );
    }
    client
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut client).await["code"],
        "binary_not_supported"
    );
    send(&mut client, r#"{"type":"ping"}"#).await;
    assert_eq!(next_frame(&mut client).await, json!({"type": "pong"}));
}

#[tokio::test]
async fn oversized_messages_close_the_connection_with_1009() {
    let ws = WsStack::start_with(|config| config.websocket.inbound_message_bytes_max = 1_024).await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws.open("/ws/simulation/s-2", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    let big = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(4_096));
    let _ = client.send(Message::Text(big.into())).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the connection ends");
    assert!(
        ended.is_none() || ended == Some(CloseCode::Size),
        "closed with {ended:?}"
    );
}

/// Opens a collaboration connection and reads its `welcome` and `presence_state`; returns the
/// client, its connection name in presence, and the state.
async fn collaborate(ws: &WsStack, project: &str, token: &str) -> (Client, String, Value) {
    let mut client = ws
        .open(&format!("/ws/collaboration/{project}"), Some(token))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    // The state and the client's own join event, in either order (the protocol orders them by
    // offset, not by arrival): its own join is the newest presence event the state includes.
    let (mut state, mut own_join) = (next_frame(&mut client).await, next_frame(&mut client).await);
    if own_join["type"] == "presence_state" {
        std::mem::swap(&mut state, &mut own_join);
    }
    assert_eq!(state["type"], "presence_state", "{state}");
    assert_eq!(own_join["data"]["action"], "join", "{own_join}");
    assert_eq!(own_join["offset"], state["offset"]);
    let connection = own_join["data"]["member"]["connection"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        state["you"],
        connection.as_str(),
        "`you` names this connection"
    );
    (client, connection, state)
}

fn connections(state: &Value) -> Vec<&str> {
    state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["connection"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn collaborators_see_who_is_present_as_others_join_and_leave() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let (mut first, first_name, state) = collaborate(&ws, "p-1", &alice).await;
    assert_eq!(state["channel"], "project:p-1");
    assert_eq!(connections(&state), [first_name.as_str()]);
    assert_eq!(state["members"][0]["user_id"], "u-1");
    assert_eq!(state["members"][0]["username"], "alice");

    let (mut second, second_name, state) = collaborate(&ws, "p-1", &alice).await;
    let mut both = vec![first_name.as_str(), second_name.as_str()];
    both.sort();
    assert_eq!(connections(&state), both, "each connection is one entry");
    let joined = next_frame(&mut first).await;
    assert_eq!(joined["data"]["type"], "presence");
    assert_eq!(joined["data"]["action"], "join");
    assert_eq!(joined["data"]["member"]["connection"], second_name.as_str());
    assert_eq!(joined["offset"], state["offset"]);

    second.close(None).await.unwrap();
    let left = next_frame(&mut first).await;
    assert_eq!(left["data"]["action"], "leave");
    assert_eq!(left["data"]["member"]["connection"], second_name.as_str());
    let channel = ChannelName::parse("project:p-1").unwrap();
    let stored = ws.stack.bus.presence_state(&channel).await.unwrap();
    assert_eq!(stored.members.len(), 1);
    assert_eq!(stored.members[0].connection, first_name);
}

#[tokio::test]
async fn collaboration_messages_reach_every_member_with_the_sender() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let (mut first, _, _) = collaborate(&ws, "p-1", &alice).await;
    let (mut second, _, _) = collaborate(&ws, "p-1", &alice).await;
    assert_eq!(next_frame(&mut first).await["data"]["action"], "join");
    send(&mut first, r#"{"type":"publish","data":{"cursor":[3,4]}}"#).await;
    for client in [&mut first, &mut second] {
        let event = next_frame(client).await;
        assert_eq!(event["type"], "event");
        assert_eq!(event["channel"], "project:p-1");
        assert_eq!(event["data"]["type"], "collaboration");
        assert_eq!(event["data"]["from"]["user_id"], "u-1");
        assert_eq!(event["data"]["message"], json!({"cursor": [3, 4]}));
    }
}

#[tokio::test]
async fn a_slow_consumer_on_a_plain_channel_is_closed_with_4008() {
    let ws = WsStack::start_with(|config| config.websocket.outbound_queue_len_max = 4).await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws.open("/ws/notifications", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    ws.wait_subscribed("user:u-1", 1).await;
    // Large events fill the socket buffers while the client reads nothing; then the queue fills.
    let padding = "p".repeat(64 * 1024);
    let channel = ChannelName::parse("user:u-1").unwrap();
    for n in 0..400 {
        if ws.stack.app.hub().subscriber_count(&channel) == 0 {
            break;
        }
        ws.publish("user:u-1", None, json!({"n": n, "padding": padding}))
            .await;
        tokio::task::yield_now().await;
    }
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(u16::from(code), 4008, "{reason}");
    // Counted before it was sent: operators alert on the rate of these.
    let metrics = ws.stack.app.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"gateway_websocket_closes_total{code="4008"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_slow_consumer_on_a_simulation_channel_gets_the_newest_state_and_a_gap() {
    let ws = WsStack::start_with(|config| config.websocket.outbound_queue_len_max = 4).await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws.open("/ws/simulation/s-2", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    ws.wait_subscribed("simulation:s-2", 1).await;
    let padding = "p".repeat(64 * 1024);
    let mut last = 0;
    for n in 0..200 {
        last = ws
            .publish("simulation:s-2", None, json!({"n": n, "padding": padding}))
            .await;
        tokio::task::yield_now().await;
    }
    // Read everything: offsets only increase, every skipped offset is in a gap, the newest arrives.
    let mut expected_next = 1;
    let mut saw_conflation = false;
    while expected_next <= last {
        let frame = next_frame(&mut client).await;
        match frame["type"].as_str() {
            Some("event") => {
                assert_eq!(
                    frame["offset"].as_u64(),
                    Some(expected_next),
                    "no reordering"
                );
                expected_next += 1;
            }
            Some("gap") => {
                assert_eq!(frame["from_offset"].as_u64(), Some(expected_next));
                saw_conflation |= frame["reason"] == "conflated";
                expected_next = frame["to_offset"].as_u64().unwrap() + 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(
        saw_conflation,
        "the client fell behind, so something was conflated"
    );
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect_later() {
    let ws = WsStack::start().await;
    let alice = ws.stack.login("alice").await;
    let mut client = ws.open("/ws/notifications", Some(&alice)).await.unwrap();
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    ws.stack.app.begin_shutdown();
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("reconnect after"), "{reason}");
}

/// The `jti` claim of a token (the test reads its own token; the gateway never does).
fn token_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revocations_close_exactly_the_affected_connections_at_once() {
    let ws = WsStack::start().await;
    let _listener = ws.stack.app.spawn_revocation_listener();
    let alice = ws.stack.login("alice").await;
    let alice_again = ws.stack.login("alice").await;
    let bob = ws.stack.login("bob").await;

    let mut revoked = ws.open("/ws/simulation/s-2", Some(&alice)).await.unwrap();
    let mut other_token = ws
        .open("/ws/simulation/s-2", Some(&alice_again))
        .await
        .unwrap();
    let mut bob_notes = ws.open("/ws/notifications", Some(&bob)).await.unwrap();
    let mut bob_project = ws.open("/ws/collaboration/p-3", Some(&bob)).await.unwrap();
    for client in [
        &mut revoked,
        &mut other_token,
        &mut bob_notes,
        &mut bob_project,
    ] {
        assert_eq!(next_frame(client).await["type"], "welcome");
    }
    let jti = token_id(&alice);
    ws.publish(
        "auth:revocations",
        None,
        json!({"type": "token_revoked", "tokenId": jti, "userId": "u-1"}),
    )
    .await;
    let (code, reason) = close_of(&mut revoked).await;
    assert_eq!((u16::from(code), reason.as_str()), (4003, "token revoked"));

    ws.publish(
        "auth:revocations",
        None,
        json!({"type": "permission_revoked", "userId": "u-2", "resource": "project:p-3", "action": "read"}),
    )
    .await;
    let (code, reason) = close_of(&mut bob_project).await;
    assert_eq!(
        (u16::from(code), reason.as_str()),
        (4003, "permission revoked")
    );

    // Everyone else is still connected.
    for client in [&mut other_token, &mut bob_notes] {
        send(client, r#"{"type":"ping","id":"still-here"}"#).await;
        assert_eq!(next_frame(client).await["id"], "still-here");
    }
}
