//! The simulated Redis against a real one: one command script, run on both through redis-rs, must
//! get the same replies. The script covers every command the project sends (directly or from
//! its Lua scripts), the project's three scripts themselves, Redis's Lua conversion rules and
//! pub/sub. Errors are compared by their code (`ERR`, `WRONGTYPE`, `NOSCRIPT`): the detail of a
//! Lua error's text is Redis's own and not part of the contract.
//!
//! Not compared: `TIME` and presence expiry scores, which are not deterministic (the presence
//! script is compared through what it returns); and the raw length of a stream trimmed with
//! `MAXLEN ~`, which Redis trims by whole nodes and the simulation exactly (both keep at least
//! the newest N, all the contract asks; history reads are compared). The real Redis comes from
//! `redis-harness` (testcontainers; `REDIS_TEST_LOCAL=1` for a local redis-server); without one
//! the test fails and says how to provide it.

use std::{sync::Arc, time::Duration};

use events::{
    ChannelName,
    redis_bus::{
        HISTORY_SCRIPT, PRESENCE_SCRIPT, PUBLISH_SCRIPT, epoch_key, history_key, offset_key,
        presence_key, presence_members_key,
    },
};
use futures::StreamExt;
use gateway::edge::rate_limit::GCRA_SCRIPT;
use redis::{Value, aio::MultiplexedConnection};
use redis_harness::TestRedis;
use seams::SystemClock;
use sim::redis::SimRedis;

/// One command: its words.
type Command = Vec<String>;

fn command(words: &[&str]) -> Command {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// A reply reduced to what must match: values exactly, errors by code.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(Value),
    Error(String),
}

async fn run(connection: &mut MultiplexedConnection, words: &Command) -> Outcome {
    let mut cmd = redis::cmd(&words[0]);
    for word in &words[1..] {
        cmd.arg(word.as_str());
    }
    match cmd.query_async::<Value>(connection).await {
        Ok(value) => Outcome::Value(value),
        Err(error) => Outcome::Error(error.code().unwrap_or("(no code)").to_owned()),
    }
}

fn channel_keys(channel: &str) -> [String; 5] {
    let channel = ChannelName::parse(channel).unwrap();
    [
        epoch_key(&channel),
        offset_key(&channel),
        history_key(&channel),
        presence_key(&channel),
        presence_members_key(&channel),
    ]
}

/// `EVAL script <keys> <args>`.
fn eval(script: &str, keys: &[&str], args: &[&str]) -> Command {
    let mut words = vec!["EVAL".to_owned(), script.to_owned(), keys.len().to_string()];
    words.extend(keys.iter().map(|k| (*k).to_owned()));
    words.extend(args.iter().map(|a| (*a).to_owned()));
    words
}

fn member(connection: &str, user: &str) -> String {
    format!(r#"{{"connection":"{connection}","user_id":"{user}","username":"{user}"}}"#)
}

/// Every command of the script, in order.
fn script() -> Vec<Command> {
    let [epoch, offset, history, presence, members] = channel_keys("project:p-1");
    let events = [epoch.as_str(), offset.as_str(), history.as_str()];
    let all = [
        epoch.as_str(),
        offset.as_str(),
        history.as_str(),
        presence.as_str(),
        members.as_str(),
    ];
    let publish = |data: &str, audience: &str| {
        eval(
            PUBLISH_SCRIPT,
            &events,
            &["project:p-1", "00000000000000e1", "3", data, audience],
        )
    };
    let presence_op = |op: &str, ttl: &str, rest: &[&str]| {
        let mut args = vec!["project:p-1", "00000000000000e1", "3", op, ttl];
        args.extend_from_slice(rest);
        eval(PRESENCE_SCRIPT, &all, &args)
    };
    let (c1, c2, c3) = (
        member("c.1", "u-1"),
        member("c.2", "u-2"),
        member("c.3", "u-3"),
    );
    let publish_sha = redis::Script::new(PUBLISH_SCRIPT).get_hash().to_owned();
    vec![
        // Connection and strings.
        command(&["PING"]),
        command(&["ECHO", "hello"]),
        command(&["SELECT", "0"]),
        command(&["SET", "k", "v"]),
        command(&["GET", "k"]),
        command(&["SET", "px", "v", "PX", "600000"]),
        command(&["GET", "px"]),
        command(&["SET", "px", "v", "PX", "0"]),
        command(&["SET", "px", "v", "PX", "soon"]),
        command(&["DEL", "px"]),
        command(&["GET", "missing"]),
        command(&["INCR", "counter"]),
        command(&["INCR", "counter"]),
        command(&["INCR", "k"]),
        command(&["EXISTS", "k", "counter", "missing", "k"]),
        command(&["DEL", "k", "missing"]),
        command(&["GET"]),
        command(&["NOSUCHCOMMAND", "x"]),
        // Hashes.
        command(&["HSET", "h", "f1", "v1", "f2", "v2"]),
        command(&["HSET", "h", "f1", "v3"]),
        command(&["HGET", "h", "f1"]),
        command(&["HGET", "h", "nope"]),
        command(&["HGETALL", "h"]),
        command(&["HDEL", "h", "f1", "nope"]),
        command(&["GET", "h"]),
        command(&["HSET", "h", "odd"]),
        // Sorted sets.
        command(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        command(&["ZADD", "z", "XX", "5", "d"]),
        command(&["ZADD", "z", "CH", "4", "a", "2", "b"]),
        command(&["ZADD", "z", "NX", "9", "a", "6", "e"]),
        command(&["ZADD", "z", "notanumber", "f"]),
        command(&["ZRANGEBYSCORE", "z", "-inf", "+inf"]),
        command(&["ZRANGEBYSCORE", "z", "(2", "+inf", "WITHSCORES"]),
        command(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "2"]),
        command(&["ZRANGEBYSCORE", "z", "3", "(4"]),
        command(&["ZREM", "z", "a", "nope"]),
        command(&["ZCARD", "z"]),
        command(&["ZSCORE", "z", "b"]),
        command(&["ZSCORE", "z", "nope"]),
        // Streams.
        command(&["XADD", "s", "1-0", "f", "v"]),
        command(&["XADD", "s", "2-0", "f", "w", "g", "x"]),
        command(&["XADD", "s", "2-0", "f", "x"]),
        command(&["XADD", "s", "MAXLEN", "=", "2", "3-0", "f", "y"]),
        command(&["XRANGE", "s", "-", "+"]),
        command(&["XRANGE", "s", "3", "+", "COUNT", "1"]),
        command(&["XRANGE", "s", "+", "-"]),
        command(&["XLEN", "s"]),
        command(&["XLEN", "nostream"]),
        // Lua conversions and the redis library.
        eval("return {1, 'two', false, 3.7}", &[], &[]),
        eval("return redis.call('GET', KEYS[1])", &["missing"], &[]),
        eval("return redis.call('HGET', KEYS[1], 'f2')", &["h"], &[]),
        eval("return redis.pcall('INCR', KEYS[1])", &["h"], &[]),
        eval("return redis.call('INCR', KEYS[1])", &["h"], &[]),
        eval("return redis.status_reply('FINE')", &[], &[]),
        eval("return redis.error_reply('ERR custom')", &[], &[]),
        eval("return cjson.decode(ARGV[1]).a", &[], &[r#"{"a": 5}"#]),
        eval("return type(cjson.decode(ARGV[1]))", &[], &["[]"]),
        eval("return pcall(cjson.decode, ARGV[1])", &[], &["{broken"]),
        eval(
            "return redis.call('ZRANGEBYSCORE', KEYS[1], 0, 10)",
            &["z"],
            &[],
        ),
        eval("return #ARGV + #KEYS", &["a", "b"], &["c"]),
        command(&["EVAL", "return 1", "3", "a"]),
        command(&["EVAL", "this is not lua", "0"]),
        // The project's scripts: the publishing step, history, presence.
        publish(r#"{"n":1}"#, ""),
        publish(r#"{"n": 2.50}"#, r#"{"roles":["admin"]}"#),
        publish("{broken", ""),
        publish(r#"{"n":3}"#, "[1]"),
        publish(r#"{"n":4}"#, ""),
        publish(r#"{"n":5}"#, ""),
        eval(HISTORY_SCRIPT, &events, &["00000000000000e2", "3", "0"]),
        eval(HISTORY_SCRIPT, &events, &["00000000000000e2", "3", "3"]),
        presence_op("join", "60000", &["c.1", &c1]),
        presence_op("join", "60000", &["c.2", &c2]),
        presence_op("leave", "60000", &["c.1"]),
        presence_op("leave", "60000", &["c.1"]),
        presence_op("heartbeat", "60000", &["c.2", &c2, "c.3", &c3]),
        presence_op("state", "60000", &[]),
        presence_op("join", "60000", &["c.4", "{broken"]),
        presence_op("dance", "60000", &[]),
        command(&["ZCARD", &presence]),
        command(&["HGETALL", &members]),
        // Not `XLEN` of the history: after `MAXLEN ~`, Redis keeps whole stream nodes (9 entries
        // here), the simulation exactly 3. The contract is the history read, compared below.
        eval(HISTORY_SCRIPT, &events, &["00000000000000e2", "3", "0"]),
        // Loaded scripts.
        command(&["SCRIPT", "LOAD", PUBLISH_SCRIPT]),
        command(&[
            "SCRIPT",
            "EXISTS",
            &publish_sha,
            "0000000000000000000000000000000000000000",
        ]),
        command(&[
            "EVALSHA",
            &publish_sha,
            "3",
            events[0],
            events[1],
            events[2],
            "project:p-1",
            "00000000000000e1",
            "3",
            "{}",
            "",
        ]),
        command(&["EVALSHA", "0000000000000000000000000000000000000000", "0"]),
        command(&["PUBSUB", "NUMSUB", "nobody"]),
        command(&["DBSIZE"]),
    ]
}

async fn connect(address: &str) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"))
}

/// Serves a fresh simulated Redis on a local port (real TCP: the server is generic over `Net`).
async fn start_sim() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(SimRedis::new(Arc::new(SystemClock)).serve(listener));
    address
}

#[tokio::test]
async fn the_simulated_redis_answers_the_command_script_as_redis_does() {
    let real = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("this test needs a real Redis: {error}"));
    let sim = start_sim().await;
    let mut on_real = connect(&real.address()).await;
    let mut on_sim = connect(&sim).await;
    let mut differences = Vec::new();
    for (index, words) in script().iter().enumerate() {
        let expected = run(&mut on_real, words).await;
        let actual = run(&mut on_sim, words).await;
        if expected != actual {
            let shown: Vec<String> = words.iter().map(|w| w.chars().take(40).collect()).collect();
            differences.push(format!(
                "#{index} {shown:?}\n    redis: {expected:?}\n    sim:   {actual:?}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} commands differ:\n{}",
        differences.len(),
        script().len(),
        differences.join("\n")
    );
}

#[tokio::test]
async fn published_events_reach_subscribers_the_same_way() {
    let real = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("this test needs a real Redis: {error}"));
    let sim = start_sim().await;
    let mut received = Vec::new();
    for address in [real.address(), sim] {
        let client = redis::Client::open(format!("redis://{address}/")).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("events:{user:u-1}").await.unwrap();
        let mut commands = connect(&address).await;
        let numsub = run(
            &mut commands,
            &command(&["PUBSUB", "NUMSUB", "events:{user:u-1}"]),
        )
        .await;
        let [epoch, offset, history, _, _] = channel_keys("user:u-1");
        let published = run(
            &mut commands,
            &eval(
                PUBLISH_SCRIPT,
                &[&epoch, &offset, &history],
                &["user:u-1", "00000000000000e1", "10", r#"{"hello":1}"#, ""],
            ),
        )
        .await;
        let mut messages = pubsub.on_message();
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a message within 5 s")
            .expect("the subscription is open");
        received.push((
            numsub,
            published,
            message.get_channel_name().to_owned(),
            message.get_payload::<String>().unwrap(),
        ));
    }
    assert_eq!(received[0], received[1]);
}

async fn gcra(connection: &mut MultiplexedConnection, keys: &[&str], args: &[&str]) -> Outcome {
    run(connection, &eval(GCRA_SCRIPT, keys, args)).await
}

/// What the rate-limit script decided, without the times (which depend on the clock).
fn decisions(outcome: &Outcome) -> Vec<(i64, i64)> {
    let Outcome::Value(Value::Array(values)) = outcome else {
        panic!("the rate-limit script answered {outcome:?}");
    };
    let numbers: Vec<i64> = values
        .iter()
        .map(|value| match value {
            Value::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        })
        .collect();
    numbers.chunks(3).map(|c| (c[0], c[1])).collect()
}

#[tokio::test]
async fn the_rate_limit_script_and_key_expiry_behave_as_on_redis() {
    let real = TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("this test needs a real Redis: {error}"));
    let sim = start_sim().await;
    let hour_us = "3600000000";
    let mut seen = Vec::new();
    for address in [real.address(), sim] {
        let mut connection = connect(&address).await;
        let connection = &mut connection;
        // One an hour, three at once: three pass, the fourth waits about an hour.
        let mut steps = Vec::new();
        for _ in 0..4 {
            steps.push(decisions(
                &gcra(connection, &["rl:{a}:user"], &[hour_us, "3"]).await,
            ));
        }
        let refused = gcra(connection, &["rl:{a}:user"], &[hour_us, "3"]).await;
        let Outcome::Value(Value::Array(refused)) = refused else {
            panic!("{refused:?}")
        };
        let Value::Int(wait_us) = refused[2] else {
            panic!("{refused:?}")
        };
        assert!(
            (3_500_000_000..=3_600_000_000).contains(&wait_us),
            "the next request may pass in about an hour, not {wait_us} µs"
        );
        // All or nothing: a refusal by the first limit charges the second nothing.
        steps.push(decisions(
            &gcra(
                connection,
                &["rl:{a}:user", "rl:{a}:group"],
                &[hour_us, "3", hour_us, "2"],
            )
            .await,
        ));
        steps.push(decisions(
            &gcra(connection, &["rl:{a}:group"], &[hour_us, "2"]).await,
        ));
        // A key expires once its limit is whole again (20 ms here).
        steps.push(decisions(
            &gcra(connection, &["rl:{b}:ip"], &["20000", "1"]).await,
        ));
        let exists = command(&["EXISTS", "rl:{b}:ip"]);
        let before = run(connection, &exists).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = run(connection, &exists).await;
        seen.push((steps, before, after));
    }
    let expected = (
        vec![
            vec![(1, 2)],
            vec![(1, 1)],
            vec![(1, 0)],
            vec![(0, 0)],
            vec![(0, 0), (1, 1)],
            vec![(1, 1)],
            vec![(1, 0)],
        ],
        Outcome::Value(Value::Int(1)),
        Outcome::Value(Value::Int(0)),
    );
    assert_eq!(seen[0], expected, "real Redis");
    assert_eq!(seen[1], expected, "simulated Redis");
}
