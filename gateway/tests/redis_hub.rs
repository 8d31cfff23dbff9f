//! The hub on the Redis bus, against a real Redis started by testcontainers (`redis-harness`;
//! `ci/test.sh` prepares Docker and the image, `REDIS_TEST_LOCAL=1` uses a local redis-server):
//! two gateway instances share one Redis; a backend publishes; Redis is stopped and started
//! mid-stream.

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use events::{ChannelName, Publisher, RedisBus, RedisBusConfig};
use futures::{SinkExt, StreamExt};
use gateway::{App, Seams, realtime::EventBusKind};
use redis_harness::TestRedis;
use seams::{SystemClock, TokioNet};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::Stack;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn redis() -> TestRedis {
    TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("these tests need Redis: {error}"))
}

/// The stack's gateway config, moved onto `redis`, with presence expiring quickly.
fn config_on_redis(stack: &Stack, redis: &TestRedis) -> gateway::Config {
    let mut config = stack.app.config().clone();
    config.event_bus.kind = EventBusKind::Redis;
    config.event_bus.redis.address = redis.address();
    config.event_bus.redis.command_timeout_ms = 500;
    config.event_bus.redis.reconnect_backoff_max_ms = 200;
    config.websocket.presence_heartbeat_interval_ms = 200;
    config.websocket.presence_ttl_ms = 1_000;
    config
}

/// Builds a gateway instance from `config` and serves its WebSocket router on a local port, on
/// the current runtime; the instance lives as long as the serving task.
async fn serve_gateway(config: gateway::Config, seed: u64) -> (App, SocketAddr) {
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed,
    };
    let bus = gateway::app::bus_from_config(&config.event_bus, &seams).unwrap();
    let app = App::from_config(config, &seams, bus).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.websocket_router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, address)
}

/// A gateway instance on the Redis bus, sharing the stack's mock backends; returns it with the
/// address its WebSocket router serves on.
async fn gateway_on_redis(stack: &Stack, redis: &TestRedis, seed: u64) -> (App, SocketAddr) {
    serve_gateway(config_on_redis(stack, redis), seed).await
}

/// A gateway instance on a runtime of its own, so the test can kill it without goodbye: shutting
/// the runtime down drops every task mid-flight, as a crashed process would, and no leave, no
/// close and no heartbeat is ever sent again.
struct KillableGateway {
    runtime: Option<tokio::runtime::Runtime>,
    address: SocketAddr,
}

impl KillableGateway {
    async fn start(config: gateway::Config, seed: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let address = runtime
            .spawn(async move {
                let (app, address) = serve_gateway(config, seed).await;
                // Keep the instance (and its background tasks' owners) alive until the kill.
                tokio::spawn(async move {
                    let _app = app;
                    std::future::pending::<()>().await
                });
                address
            })
            .await
            .unwrap();
        Self {
            runtime: Some(runtime),
            address,
        }
    }

    fn kill(self) {
        drop(self);
    }
}

impl Drop for KillableGateway {
    /// Kills the instance. (A runtime may not be dropped the blocking way inside the test's
    /// runtime, even on a failing path.)
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn open(address: SocketAddr, path: &str, token: &str) -> Client {
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    connect_async(request).await.expect("handshake").0
}

async fn next_frame(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("valid");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// A backend's publisher: its own Redis bus, as a separate process would have.
fn backend_publisher(redis: &TestRedis) -> RedisBus<TokioNet> {
    RedisBus::new(
        TokioNet,
        RedisBusConfig {
            address: redis.address(),
            rng_seed: 99,
            ..RedisBusConfig::default()
        },
    )
    .unwrap()
}

async fn publish(bus: &RedisBus<TokioNet>, channel: &str, data: Value) -> u64 {
    bus.publish(
        &ChannelName::parse(channel).unwrap(),
        None,
        RawValue::from_string(data.to_string()).unwrap(),
    )
    .await
    .expect("publish")
    .offset
}

#[tokio::test]
async fn an_event_reaches_exactly_the_subscribed_clients_across_two_instances() {
    let redis = redis().await;
    let stack = Stack::start().await;
    let (_a, a) = gateway_on_redis(&stack, &redis, 1).await;
    let (_b, b) = gateway_on_redis(&stack, &redis, 2).await;
    let alice = stack.login("alice").await;
    let bob = stack.login("bob").await;

    // Bob may not read Alice's simulation: refused before the upgrade, on either instance.
    for address in [a, b] {
        let mut request = format!("ws://{address}/ws/simulation/s-2")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {bob}").parse().unwrap());
        match connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("expected 403, got {:?}", other.map(|_| ())),
        }
    }
    let mut on_a = open(a, "/ws/simulation/s-2", &alice).await;
    let mut on_b = open(b, "/ws/simulation/s-2", &alice).await;
    let mut bystander = open(b, "/ws/notifications", &bob).await;
    for client in [&mut on_a, &mut on_b, &mut bystander] {
        // The welcome follows a confirmed subscription, so nothing published after it is missed.
        assert_eq!(next_frame(client).await["type"], "welcome");
    }

    let publisher = backend_publisher(&redis);
    let offset = publish(&publisher, "simulation:s-2", json!({"step": 1})).await;
    for client in [&mut on_a, &mut on_b] {
        let event = next_frame(client).await;
        assert_eq!(event["type"], "event");
        assert_eq!(event["offset"].as_u64(), Some(offset));
        assert_eq!(event["data"], json!({"step": 1}));
    }
    // Exactly once each, and nothing for the client on another channel: a ping's pong comes next.
    for client in [&mut on_a, &mut on_b, &mut bystander] {
        client
            .send(Message::Text(r#"{"type":"ping","id":"p"}"#.into()))
            .await
            .unwrap();
        assert_eq!(next_frame(client).await, json!({"type": "pong", "id": "p"}));
    }
}

#[tokio::test]
async fn redis_restart_mid_stream_interrupts_then_resumes_with_an_explicit_gap_and_readiness_follows()
 {
    let mut redis = redis().await;
    let stack = Stack::start().await;
    let (app, address) = gateway_on_redis(&stack, &redis, 3).await;
    let _checks = app.spawn_health_checks();
    let alice = stack.login("alice").await;
    let mut client = open(address, "/ws/simulation/s-2", &alice).await;
    assert_eq!(next_frame(&mut client).await["type"], "welcome");
    let publisher = backend_publisher(&redis);
    assert_eq!(
        publish(&publisher, "simulation:s-2", json!({"n": 1})).await,
        1
    );
    assert_eq!(next_frame(&mut client).await["offset"], 1);
    let bus_healthy = |app: &App| app.health().report().dependencies["event_bus"].healthy;
    assert!(bus_healthy(&app));

    redis.stop().await.unwrap();
    let notice = next_frame(&mut client).await;
    assert_eq!(notice["type"], "error");
    assert_eq!(notice["code"], "delivery_interrupted");
    assert!(
        !bus_healthy(&app),
        "readiness is false while delivery is broken"
    );

    redis.restart().await.unwrap();
    // Redis came back empty (no persistence): a new epoch, offsets from 1.
    let mut published = None;
    for _ in 0..100 {
        if let Ok(event) = publisher
            .publish(
                &ChannelName::parse("simulation:s-2").unwrap(),
                None,
                RawValue::from_string(r#"{"n":2}"#.to_owned()).unwrap(),
            )
            .await
        {
            published = Some(event);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published = published.expect("Redis is back within 10 s");
    assert_eq!(published.offset, 1, "a new epoch starts at 1");
    // The client hears of the epoch change, then gets the new epoch's event: nothing silent.
    let mut saw_gap = false;
    loop {
        let frame = next_frame(&mut client).await;
        match frame["type"].as_str() {
            Some("gap") => {
                assert_eq!(frame["reason"], "epoch_changed");
                saw_gap = true;
            }
            Some("event") => {
                assert_eq!(frame["epoch"].as_str(), Some(published.epoch.as_str()));
                assert_eq!(frame["data"], json!({"n": 2}));
                break;
            }
            _ => {}
        }
    }
    assert!(saw_gap, "the epoch change is reported");
    for _ in 0..100 {
        if bus_healthy(&app) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never came back after Redis did");
}

#[tokio::test]
async fn a_client_reconnecting_with_its_last_offset_misses_nothing() {
    let redis = redis().await;
    let stack = Stack::start().await;
    let (_a, a) = gateway_on_redis(&stack, &redis, 4).await;
    let (_b, b) = gateway_on_redis(&stack, &redis, 5).await;
    let alice = stack.login("alice").await;
    let publisher = backend_publisher(&redis);

    // Connected to instance A, the client receives offset 1, then goes away.
    let mut first = open(a, "/ws/simulation/s-2", &alice).await;
    let welcome = next_frame(&mut first).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        publish(&publisher, "simulation:s-2", json!({"n": 1})).await,
        1
    );
    assert_eq!(next_frame(&mut first).await["offset"], 1);
    drop(first);

    // While it is away, 2 and 3 are published; it comes back through instance B.
    publish(&publisher, "simulation:s-2", json!({"n": 2})).await;
    publish(&publisher, "simulation:s-2", json!({"n": 3})).await;
    let mut again = open(
        b,
        &format!("/ws/simulation/s-2?since=1&epoch={epoch}"),
        &alice,
    )
    .await;
    assert_eq!(next_frame(&mut again).await["type"], "welcome");
    publish(&publisher, "simulation:s-2", json!({"n": 4})).await;
    let mut offsets = Vec::new();
    for _ in 0..3 {
        let frame = next_frame(&mut again).await;
        assert_eq!(frame["type"], "event", "{frame}");
        offsets.push(frame["offset"].as_u64().unwrap());
    }
    assert_eq!(offsets, [2, 3, 4], "history then live, each once, in order");
}

/// The `presence_state` and own `join` that follow a collaboration client's `welcome` (in either
/// order); returns the state and the client's connection name.
async fn presence_of(client: &mut Client) -> (Value, String) {
    assert_eq!(next_frame(client).await["type"], "welcome");
    let (mut state, mut own_join) = (next_frame(client).await, next_frame(client).await);
    if own_join["type"] == "presence_state" {
        std::mem::swap(&mut state, &mut own_join);
    }
    assert_eq!(state["type"], "presence_state", "{state}");
    assert_eq!(own_join["data"]["action"], "join", "{own_join}");
    let name = own_join["data"]["member"]["connection"]
        .as_str()
        .unwrap()
        .to_owned();
    (state, name)
}

fn member_names(state: &Value) -> Vec<String> {
    let mut names: Vec<String> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["connection"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn presence_is_the_same_on_both_instances_and_a_killed_instance_leaves_no_ghost() {
    let redis = redis().await;
    let stack = Stack::start().await;
    let (a_app, a) = gateway_on_redis(&stack, &redis, 6).await;
    let killable = KillableGateway::start(config_on_redis(&stack, &redis), 7).await;
    let alice = stack.login("alice").await;

    let mut on_a = open(a, "/ws/collaboration/p-1", &alice).await;
    let (_, a_name) = presence_of(&mut on_a).await;
    let mut on_b = open(killable.address, "/ws/collaboration/p-1", &alice).await;
    let (b_state, b_name) = presence_of(&mut on_b).await;
    assert_ne!(a_name, b_name);
    let mut both = vec![a_name.clone(), b_name.clone()];
    both.sort();
    assert_eq!(
        member_names(&b_state),
        both,
        "B sees A's member and its own"
    );
    let joined = next_frame(&mut on_a).await;
    assert_eq!(joined["data"]["action"], "join");
    assert_eq!(joined["data"]["member"]["connection"], b_name.as_str());

    // A third client, on A, sees exactly what B's client saw.
    let mut observer = open(a, "/ws/collaboration/p-1", &alice).await;
    let (observed, observer_name) = presence_of(&mut observer).await;
    let mut all = vec![a_name.clone(), b_name.clone(), observer_name.clone()];
    all.sort();
    assert_eq!(member_names(&observed), all);
    assert_eq!(next_frame(&mut on_a).await["data"]["action"], "join");
    // Heartbeats keep everyone present well past the expiry (1 s).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let channel = ChannelName::parse("project:p-1").unwrap();
    let stored = a_app.hub().bus().presence_state(&channel).await.unwrap();
    assert_eq!(stored.members.len(), 3, "{stored:?}");

    // B dies without goodbye. Its member expires (announced once, as `expire`), and nothing
    // else about presence happens in between.
    killable.kill();
    let expired = next_frame(&mut on_a).await;
    assert_eq!(expired["data"]["action"], "expire", "{expired}");
    assert_eq!(expired["data"]["member"]["connection"], b_name.as_str());
    let stored = a_app.hub().bus().presence_state(&channel).await.unwrap();
    let mut survivors = vec![a_name.clone(), observer_name.clone()];
    survivors.sort();
    assert_eq!(
        stored
            .members
            .iter()
            .map(|member| member.connection.clone())
            .collect::<Vec<_>>(),
        survivors,
        "no ghost after the expiry"
    );
    // A newcomer's state agrees.
    let mut newcomer = open(a, "/ws/collaboration/p-1", &alice).await;
    let (state, newcomer_name) = presence_of(&mut newcomer).await;
    survivors.push(newcomer_name);
    survivors.sort();
    assert_eq!(member_names(&state), survivors);
}
