//! The Redis bus against a real Redis: offsets, history, verbatim envelopes, two instances on
//! one Redis, reference-counted subscriptions, and Redis crashing and coming back.
//!
//! Redis comes from `redis-harness`: a container through testcontainers, or with
//! `REDIS_TEST_LOCAL=1` a local `redis-server` process. Every wait is bounded; a Redis that cannot
//! be had is a failure that says how to provide it, never a skip.

use std::{sync::Arc, time::Duration};

use events::{
    Audience, BusError, BusMessage, BusStatus, ChannelName, Event, EventBus, Presence,
    PresenceAction, PresenceChange, PresenceMember, Publisher, RedisBus, RedisBusConfig,
    Subscription,
};
use redis_harness::TestRedis;
use seams::TokioNet;
use serde_json::value::RawValue;

/// How long any single expected thing may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// Starts a real Redis through `redis-harness` (testcontainers; with `REDIS_TEST_LOCAL=1` a
/// local redis-server). A missing Docker is a failure whose message says how to provide it.
async fn start_redis() -> TestRedis {
    TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("no Redis for this test: {error}"))
}

fn config(redis: &TestRedis) -> RedisBusConfig {
    RedisBusConfig {
        address: redis.address(),
        command_timeout_ms: 500,
        connect_timeout_ms: 500,
        reconnect_backoff_initial_ms: 20,
        reconnect_backoff_max_ms: 200,
        keepalive_interval_ms: 200,
        ..RedisBusConfig::default()
    }
}

fn data(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn delivering(bus: &RedisBus<TokioNet>) {
    let mut status = bus.status();
    within(
        "the bus to deliver",
        status.wait_for(|s| *s == BusStatus::Delivering),
    )
    .await
    .unwrap();
}

async fn next_message(subscription: &mut Subscription) -> BusMessage {
    within("a bus message", subscription.next())
        .await
        .expect("the subscription ended")
}

async fn next_event(subscription: &mut Subscription) -> Arc<Event> {
    match next_message(subscription).await {
        BusMessage::Event { event, .. } => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// A plain connection for looking at Redis from outside the bus.
async fn observer(redis: &TestRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", redis.address()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `PUBSUB NUMSUB` of a channel's pub/sub channel: how many connections subscribe to it.
async fn subscribers(connection: &mut redis::aio::MultiplexedConnection, name: &str) -> i64 {
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("events:{{{name}}}"))
        .query_async(connection)
        .await
        .unwrap();
    reply.1
}

async fn until_subscribers(
    connection: &mut redis::aio::MultiplexedConnection,
    name: &str,
    count: i64,
) {
    within(&format!("{count} subscribers on {name}"), async {
        while subscribers(connection, name).await != count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn offsets_increase_by_one_and_envelopes_are_the_serde_form_with_data_verbatim() {
    let redis = start_redis().await;
    let bus = RedisBus::new(TokioNet, config(&redis)).unwrap();
    let channel = channel("simulation:s-1");
    let audience = Audience {
        users: vec!["u-1".into()],
        roles: vec![],
    };
    let first = bus
        .publish(&channel, None, data(r#"{"progress":12.50}"#))
        .await
        .unwrap();
    let second = bus
        .publish(&channel, Some(audience.clone()), data("[1.0, 2e3]"))
        .await
        .unwrap();
    let third = bus.publish(&channel, None, data("12.50")).await.unwrap();
    assert_eq!(
        [first.offset, second.offset, third.offset],
        [1, 2, 3],
        "offsets start at 1 and increase by one"
    );
    assert!(!first.epoch.is_empty());
    assert_eq!(first.epoch, third.epoch);
    assert_eq!(first.data.get(), r#"{"progress":12.50}"#);
    assert_eq!(second.data.get(), "[1.0, 2e3]");
    assert_eq!(second.audience.as_ref(), Some(&audience));
    assert_eq!(third.data.get(), "12.50");

    // What Redis stores and publishes is exactly the serde form of the event.
    let mut connection = observer(&redis).await;
    let stored: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("events:{simulation:s-1}:history")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let envelopes: Vec<&str> = stored
        .iter()
        .map(|(_, fields)| {
            fields
                .iter()
                .find(|(name, _)| name == "event")
                .map(|(_, value)| value.as_str())
                .unwrap()
        })
        .collect();
    for (event, envelope) in [&first, &second, &third].into_iter().zip(envelopes) {
        assert_eq!(serde_json::to_string(event.as_ref()).unwrap(), envelope);
    }
    assert_eq!(
        stored.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["1-0", "2-0", "3-0"]
    );

    // Invalid JSON never reaches the stream.
    let script = redis::Script::new(events::redis_bus::PUBLISH_SCRIPT);
    let mut invalid = script.prepare_invoke();
    invalid
        .key("events:{simulation:s-1}:epoch")
        .key("events:{simulation:s-1}:offset")
        .key("events:{simulation:s-1}:history")
        .arg("simulation:s-1")
        .arg("e-new")
        .arg(1000)
        .arg("{not json")
        .arg("");
    let refused: redis::RedisResult<String> = invalid.invoke_async(&mut connection).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn history_is_bounded_and_holds_what_follows_the_offset() {
    let redis = start_redis().await;
    let bus = RedisBus::new(
        TokioNet,
        RedisBusConfig {
            history_len_max: 5,
            ..config(&redis)
        },
    )
    .unwrap();
    let channel = channel("user:u-7");

    let empty = bus.history(&channel, 0).await.unwrap();
    assert!(empty.events.is_empty());
    assert_eq!((empty.oldest_offset, empty.latest_offset), (0, 0));

    for index in 1..=20u64 {
        let event = bus
            .publish(&channel, None, data(&index.to_string()))
            .await
            .unwrap();
        assert_eq!(event.offset, index);
        assert_eq!(
            event.epoch, empty.epoch,
            "the epoch read before the first event"
        );
    }
    let all = bus.history(&channel, 0).await.unwrap();
    assert_eq!(all.epoch, empty.epoch);
    assert_eq!((all.oldest_offset, all.latest_offset), (16, 20));
    let offsets: Vec<u64> = all.events.iter().map(|event| event.offset).collect();
    assert_eq!(offsets, [16, 17, 18, 19, 20]);
    assert_eq!(all.events[0].data.get(), "16");

    let after = bus.history(&channel, 18).await.unwrap();
    let offsets: Vec<u64> = after.events.iter().map(|event| event.offset).collect();
    assert_eq!(offsets, [19, 20]);
    assert!(bus.history(&channel, 20).await.unwrap().events.is_empty());
    assert!(bus.history(&channel, 99).await.unwrap().events.is_empty());

    // The Stream itself is trimmed (approximately) rather than growing without limit.
    for index in 21..=500u64 {
        bus.publish(&channel, None, data(&index.to_string()))
            .await
            .unwrap();
    }
    let mut connection = observer(&redis).await;
    let stream_len: u64 = redis::cmd("XLEN")
        .arg("events:{user:u-7}:history")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(stream_len < 500, "the history stream holds {stream_len}");
    let last = bus.history(&channel, 0).await.unwrap();
    assert_eq!((last.oldest_offset, last.latest_offset), (496, 500));
    assert_eq!(last.events.len(), 5);
}

#[tokio::test]
async fn two_instances_on_one_redis_each_receive_an_event_exactly_once() {
    let redis = start_redis().await;
    let first = RedisBus::new(TokioNet, config(&redis)).unwrap();
    let second = RedisBus::new(
        TokioNet,
        RedisBusConfig {
            rng_seed: 1,
            ..config(&redis)
        },
    )
    .unwrap();
    delivering(&first).await;
    delivering(&second).await;
    let channel = channel("project:p-1");
    let mut on_first = first.subscribe(&channel);
    let mut on_second = second.subscribe(&channel);
    let mut connection = observer(&redis).await;
    until_subscribers(&mut connection, "project:p-1", 2).await;

    let published = first
        .publish(&channel, None, data(r#"{"note":"hello"}"#))
        .await
        .unwrap();
    for subscription in [&mut on_first, &mut on_second] {
        let event = next_event(subscription).await;
        assert_eq!(event.offset, published.offset);
        assert_eq!(event.data.get(), r#"{"note":"hello"}"#);
    }
    // Exactly once: nothing else arrives on either instance.
    for subscription in [&mut on_first, &mut on_second] {
        let more = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
        assert!(more.is_err(), "unexpected second message: {more:?}");
    }
    // A channel nobody subscribed to is not delivered.
    let mut other = first.subscribe(&ChannelName::parse("project:p-2").unwrap());
    second.publish(&channel, None, data("2")).await.unwrap();
    assert_eq!(next_event(&mut on_first).await.offset, 2);
    let nothing = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(nothing.is_err(), "p-2 received {nothing:?}");
}

#[tokio::test]
async fn a_channel_is_subscribed_while_it_has_local_subscribers() {
    let redis = start_redis().await;
    let bus = RedisBus::new(TokioNet, config(&redis)).unwrap();
    delivering(&bus).await;
    let mut connection = observer(&redis).await;
    let channel = channel("simulation:s-9");
    assert_eq!(subscribers(&mut connection, "simulation:s-9").await, 0);

    let first = bus.subscribe(&channel);
    until_subscribers(&mut connection, "simulation:s-9", 1).await;
    let mut second = bus.subscribe(&channel);
    drop(first);
    // Still one local subscriber: still subscribed, and it still receives.
    bus.publish(&channel, None, data("1")).await.unwrap();
    assert_eq!(next_event(&mut second).await.offset, 1);
    assert_eq!(subscribers(&mut connection, "simulation:s-9").await, 1);

    drop(second);
    until_subscribers(&mut connection, "simulation:s-9", 0).await;

    // And again after the last one left.
    let mut third = bus.subscribe(&channel);
    until_subscribers(&mut connection, "simulation:s-9", 1).await;
    bus.publish(&channel, None, data("2")).await.unwrap();
    assert_eq!(next_event(&mut third).await.offset, 2);
}

#[tokio::test]
async fn subscribe_then_history_misses_nothing() {
    let redis = start_redis().await;
    let bus = RedisBus::new(TokioNet, config(&redis)).unwrap();
    let publisher = RedisBus::new(TokioNet, config(&redis)).unwrap();
    delivering(&bus).await;
    let channel = channel("user:u-3");
    publisher.publish(&channel, None, data("1")).await.unwrap();
    // The hub's order: subscribe, read history, then take live events after it.
    let mut subscription = bus.subscribe(&channel);
    let history = bus.history(&channel, 0).await.unwrap();
    assert_eq!(history.latest_offset, 1);
    publisher.publish(&channel, None, data("2")).await.unwrap();
    assert_eq!(next_event(&mut subscription).await.offset, 2);
}

#[tokio::test]
async fn redis_crash_and_restart_interrupts_then_restores_with_a_new_epoch() {
    let mut redis = start_redis().await;
    let config = config(&redis);
    let command_timeout = Duration::from_millis(config.command_timeout_ms);
    let bus = RedisBus::new(TokioNet, config).unwrap();
    delivering(&bus).await;
    let channel = channel("simulation:s-2");
    let mut subscription = bus.subscribe(&channel);
    let mut connection = observer(&redis).await;
    until_subscribers(&mut connection, "simulation:s-2", 1).await;
    let before = bus.publish(&channel, None, data("1")).await.unwrap();
    assert_eq!(next_event(&mut subscription).await.offset, 1);

    redis.stop().await.unwrap();
    let mut status = bus.status();
    within(
        "the bus to break",
        status.wait_for(|s| *s == BusStatus::Broken),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_message(&mut subscription).await,
        BusMessage::Interrupted
    ));
    // A subscription made while broken starts out interrupted.
    let mut late = bus.subscribe(&channel);
    assert!(matches!(
        next_message(&mut late).await,
        BusMessage::Interrupted
    ));

    // Publishing and history answer promptly while Redis is down.
    let started = tokio::time::Instant::now();
    let refused = bus.publish(&channel, None, data("0")).await;
    assert!(
        matches!(refused, Err(BusError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() <= command_timeout + Duration::from_millis(200));
    let refused = bus.history(&channel, 0).await;
    assert!(
        matches!(refused, Err(BusError::Unavailable(_))),
        "{refused:?}"
    );

    redis.restart().await.unwrap();
    within(
        "the bus to deliver again",
        status.wait_for(|s| *s == BusStatus::Delivering),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_message(&mut subscription).await,
        BusMessage::Restored
    ));
    assert!(matches!(
        next_message(&mut late).await,
        BusMessage::Restored
    ));

    // Redis lost everything: a new epoch, offsets from 1, and live delivery works again.
    let after = within(
        "a publish after the restart",
        bus.publish(&channel, None, data("2")),
    )
    .await
    .unwrap();
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.epoch);
    for subscription in [&mut subscription, &mut late] {
        let event = next_event(subscription).await;
        assert_eq!(
            (event.offset, event.epoch.as_str()),
            (1, after.epoch.as_str())
        );
    }
    let history = bus.history(&channel, 0).await.unwrap();
    assert_eq!(history.epoch, after.epoch);
    assert_eq!(history.latest_offset, 1);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_and_catches_up() {
    let redis = start_redis().await;
    let bus = RedisBus::new(
        TokioNet,
        RedisBusConfig {
            subscriber_queue_len_max: 2,
            ..config(&redis)
        },
    )
    .unwrap();
    delivering(&bus).await;
    let channel = channel("user:u-5");
    let mut slow = bus.subscribe(&channel);
    // The bus hands pub/sub messages over in the order Redis sends them, so once an event on
    // another channel, published after the six, has arrived, all six are in the slow queue.
    let marker = self::channel("user:u-6");
    let mut marker_subscription = bus.subscribe(&marker);
    let mut connection = observer(&redis).await;
    until_subscribers(&mut connection, "user:u-5", 1).await;
    until_subscribers(&mut connection, "user:u-6", 1).await;
    for index in 1..=6 {
        bus.publish(&channel, None, data(&index.to_string()))
            .await
            .unwrap();
    }
    bus.publish(&marker, None, data("7")).await.unwrap();
    next_event(&mut marker_subscription).await;
    assert_eq!(next_event(&mut slow).await.offset, 1);
    assert_eq!(next_event(&mut slow).await.offset, 2);
    assert!(matches!(
        next_message(&mut slow).await,
        BusMessage::Interrupted
    ));
    assert!(matches!(
        next_message(&mut slow).await,
        BusMessage::Restored
    ));
    let history = bus.history(&channel, 2).await.unwrap();
    let offsets: Vec<u64> = history.events.iter().map(|event| event.offset).collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_bus_and_ends_subscriptions() {
    let redis = start_redis().await;
    let bus = RedisBus::new(TokioNet, config(&redis)).unwrap();
    delivering(&bus).await;
    let channel = channel("user:u-6");
    let mut subscription = bus.subscribe(&channel);
    let mut connection = observer(&redis).await;
    until_subscribers(&mut connection, "user:u-6", 1).await;
    let clone = bus.clone();
    drop(bus);
    clone.publish(&channel, None, data("1")).await.unwrap();
    assert_eq!(next_event(&mut subscription).await.offset, 1);
    drop(clone);
    assert!(
        within("the subscription to end", subscription.next())
            .await
            .is_none()
    );
    until_subscribers(&mut connection, "user:u-6", 0).await;
}

/// A network where every dial hangs, as behind a partition that drops packets silently.
#[derive(Clone)]
struct BlackholeNet;

impl seams::Net for BlackholeNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: std::net::SocketAddr) -> std::io::Result<Self::Listener> {
        TokioNet.bind(addr).await
    }

    async fn connect(&self, _addr: &str) -> std::io::Result<Self::Stream> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_redis_that_never_answers_gives_unavailable_within_the_command_timeout() {
    let bus = RedisBus::new(
        BlackholeNet,
        RedisBusConfig {
            command_timeout_ms: 300,
            connect_timeout_ms: 200,
            ..RedisBusConfig::default()
        },
    )
    .unwrap();
    let channel = channel("user:u-8");
    let started = tokio::time::Instant::now();
    let refused = within("publish to give up", bus.publish(&channel, None, data("1"))).await;
    assert!(
        matches!(refused, Err(BusError::Unavailable(_))),
        "{refused:?}"
    );
    let refused = within("history to give up", bus.history(&channel, 0)).await;
    assert!(
        matches!(refused, Err(BusError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert_eq!(*bus.status().borrow(), BusStatus::Broken);
    let mut subscription = bus.subscribe(&channel);
    assert!(matches!(
        next_message(&mut subscription).await,
        BusMessage::Interrupted
    ));
}

fn member(connection: &str, user_id: &str) -> PresenceMember {
    PresenceMember {
        connection: connection.into(),
        user_id: user_id.into(),
        username: format!("name of {user_id}"),
    }
}

/// The data of the next event, which must be a presence change.
async fn next_change(subscription: &mut Subscription) -> (u64, PresenceChange) {
    let event = next_event(subscription).await;
    let change = serde_json::from_str(event.data.get())
        .unwrap_or_else(|error| panic!("not a presence change ({error}): {}", event.data));
    (event.offset, change)
}

/// Two buses on one Redis (two instances), the first subscribed to `name` and confirmed by Redis.
async fn two_instances_watching(
    redis: &TestRedis,
    name: &str,
) -> (RedisBus<TokioNet>, RedisBus<TokioNet>, Subscription) {
    let first = RedisBus::new(TokioNet, config(redis)).unwrap();
    let second = RedisBus::new(
        TokioNet,
        RedisBusConfig {
            rng_seed: 1,
            ..config(redis)
        },
    )
    .unwrap();
    delivering(&first).await;
    let events = first.subscribe(&channel(name));
    let mut connection = observer(redis).await;
    until_subscribers(&mut connection, name, 1).await;
    (first, second, events)
}

#[tokio::test]
async fn presence_is_one_set_for_every_instance_and_each_change_is_an_event() {
    let redis = start_redis().await;
    let (first, second, mut events) = two_instances_watching(&redis, "project:p-1").await;
    let channel = channel("project:p-1");
    let ttl = Duration::from_secs(30);

    let joined = first
        .presence_join(&channel, member("a.1", "u-1"), ttl)
        .await
        .unwrap();
    assert_eq!(joined.members, [member("a.1", "u-1")]);
    let (offset, change) = next_change(&mut events).await;
    assert_eq!(
        offset, joined.offset,
        "the state is as of its own join event"
    );
    assert_eq!(change.action, PresenceAction::Join);
    // The script writes exactly the data the Rust side documents (and the memory bus writes).
    let event = {
        let state = second
            .presence_join(&channel, member("b.7", "u-2"), ttl)
            .await
            .unwrap();
        assert_eq!(state.members, [member("a.1", "u-1"), member("b.7", "u-2")]);
        next_event(&mut events).await
    };
    assert_eq!(
        event.data.get(),
        PresenceChange::data(PresenceAction::Join, &member("b.7", "u-2")).get()
    );

    // Both instances see the same set.
    let seen_first = first.presence_state(&channel).await.unwrap();
    let seen_second = second.presence_state(&channel).await.unwrap();
    assert_eq!(seen_first, seen_second);
    assert_eq!(seen_first.members.len(), 2);

    second.presence_leave(&channel, "b.7").await.unwrap();
    let (_, change) = next_change(&mut events).await;
    assert_eq!(
        (change.action, change.member),
        (PresenceAction::Leave, member("b.7", "u-2"))
    );
    // A second leave changes and announces nothing: the next event is the publish below.
    second.presence_leave(&channel, "b.7").await.unwrap();
    let marker = first.publish(&channel, None, data("0")).await.unwrap();
    assert_eq!(next_event(&mut events).await.offset, marker.offset);
    assert_eq!(
        first.presence_state(&channel).await.unwrap().members,
        [member("a.1", "u-1")]
    );
}

#[tokio::test]
async fn presence_of_an_instance_that_stops_heartbeating_expires_once_and_returns_with_it() {
    let redis = start_redis().await;
    let (live, dying, mut events) = two_instances_watching(&redis, "project:p-2").await;
    let channel = channel("project:p-2");
    let ttl = Duration::from_millis(1_200);

    live.presence_join(&channel, member("live.1", "u-1"), ttl)
        .await
        .unwrap();
    dying
        .presence_join(&channel, member("dying.1", "u-2"), ttl)
        .await
        .unwrap();
    drop(dying);
    for _ in 0..2 {
        assert_eq!(
            next_change(&mut events).await.1.action,
            PresenceAction::Join
        );
    }
    // The live instance heartbeats (six times a TTL, as a gateway does; each call sweeps expired
    // entries) until the dead one's entry expires; the live one's never does.
    let (_, change) = within("the dead instance's entry to expire", async {
        loop {
            live.presence_heartbeat(&channel, vec![member("live.1", "u-1")], ttl)
                .await
                .unwrap();
            tokio::select! {
                change = next_change(&mut events) => break change,
                () = tokio::time::sleep(ttl / 6) => {}
            }
        }
    })
    .await;
    assert_eq!(
        (change.action, change.member),
        (PresenceAction::Expire, member("dying.1", "u-2"))
    );
    assert_eq!(
        live.presence_state(&channel).await.unwrap().members,
        [member("live.1", "u-1")],
        "no ghost after the expiry"
    );

    // Cut off long enough to expire (each look sweeps), the live member is restored by its next
    // heartbeat.
    within("the silent member's entry to expire", async {
        while !live
            .presence_state(&channel)
            .await
            .unwrap()
            .members
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        next_change(&mut events).await.1.action,
        PresenceAction::Expire
    );
    live.presence_heartbeat(&channel, vec![member("live.1", "u-1")], ttl)
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut events).await.1.action,
        PresenceAction::Join
    );
    assert_eq!(
        live.presence_state(&channel).await.unwrap().members,
        [member("live.1", "u-1")]
    );
}

#[tokio::test]
async fn the_presence_script_refuses_bad_input_and_changes_nothing() {
    let redis = start_redis().await;
    let mut connection = observer(&redis).await;
    let channel = channel("project:p-3");
    let keys = [
        events::redis_bus::epoch_key(&channel),
        events::redis_bus::offset_key(&channel),
        events::redis_bus::history_key(&channel),
        events::redis_bus::presence_key(&channel),
        events::redis_bus::presence_members_key(&channel),
    ];
    let script = redis::Script::new(events::redis_bus::PRESENCE_SCRIPT);
    let run = |op: &str, ttl: &str, extra: &[&str]| {
        let mut invocation = script.prepare_invoke();
        for key in &keys {
            invocation.key(key.as_str());
        }
        invocation
            .arg("project:p-3")
            .arg("00000000000000aa")
            .arg(1000)
            .arg(op)
            .arg(ttl);
        for arg in extra {
            invocation.arg(*arg);
        }
        invocation
    };
    for (op, ttl, extra, reason) in [
        ("join", "1000", &["c.1", "{not json"][..], "member must be"),
        (
            "join",
            "1000",
            &[
                "c.1",
                r#"{"connection":"c.2","user_id":"u","username":"u"}"#,
            ][..],
            "member must be",
        ),
        (
            "join",
            "0",
            &["c.1", r#"{"connection":"c.1"}"#][..],
            "ttl_ms",
        ),
        ("dance", "1000", &[][..], "unknown presence operation"),
        ("heartbeat", "1000", &["c.1", "[]"][..], "member must be"),
    ] {
        let error = run(op, ttl, extra)
            .invoke_async::<redis::Value>(&mut connection)
            .await
            .expect_err(op);
        assert!(error.to_string().contains(reason), "{op}: {error}");
    }
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys[..])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a refused call wrote nothing");
}
