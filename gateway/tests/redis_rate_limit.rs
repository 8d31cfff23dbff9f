//! Rate limits shared through Redis, against a real Redis started by testcontainers
//! (`redis-harness`; `ci/test.sh` prepares Docker and the image, `REDIS_TEST_LOCAL=1` uses a
//! local redis-server): two gateway instances share each user's budget, a request is charged to
//! all its limits or none, and with Redis stopped each instance falls back to its local limits,
//! says so in health and metrics, and shares again once Redis is back.

mod support;

use std::{sync::Arc, time::Duration};

use gateway::{App, Seams, edge::rate_limit::Limit, realtime::EventBusKind};
use redis_harness::TestRedis;
use seams::{SystemClock, TokioNet};
use support::{Answer, Stack, json_request, metrics_text, send};

async fn redis() -> TestRedis {
    TestRedis::start()
        .await
        .unwrap_or_else(|error| panic!("these tests need Redis: {error}"))
}

/// A gateway instance on the stack's backends whose limits are shared through `redis`.
fn instance(
    stack: &Stack,
    redis: &TestRedis,
    seed: u64,
    per_user: Limit,
    groups: &[(&str, Limit)],
) -> App {
    let mut config = stack.app.config().clone();
    config.event_bus.kind = EventBusKind::Redis;
    config.event_bus.redis.address = redis.address();
    config.rate_limit.shared = true;
    config.rate_limit.shared_timeout_ms = 200;
    config.rate_limit.shared_retry_interval_ms = 300;
    config.rate_limit.per_user = per_user;
    for (group, limit) in groups {
        config.rate_limit.groups.insert((*group).to_owned(), *limit);
    }
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed,
    };
    let bus = gateway::app::bus_from_config(&config.event_bus, &seams).unwrap();
    App::from_config(config, &seams, bus).unwrap()
}

async fn get(app: &App, path: &str, token: &str) -> Answer {
    send(app.api_router(), json_request("GET", path, Some(token), "")).await
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

/// Slow enough that nothing is replenished during a test.
fn slow(burst: u32) -> Limit {
    Limit {
        per_second: 0.01,
        burst,
    }
}

async fn health(app: &App) -> serde_json::Value {
    let answer = send(
        app.health_router(),
        http::Request::get("/health")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    answer.json["rate_limits"].clone()
}

#[tokio::test]
async fn two_instances_share_one_budget_per_user() {
    let redis = redis().await;
    let stack = Stack::start().await;
    let alice = stack.login("alice").await;
    let bob = stack.login("bob").await;
    let a = instance(&stack, &redis, 1, slow(4), &[]);
    let b = instance(&stack, &redis, 2, slow(4), &[]);
    let mut remaining = Vec::new();
    for (n, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let answer = get(app, "/api/projects", &alice).await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.json);
        remaining.push(header(&answer, "ratelimit-remaining").to_owned());
    }
    assert_eq!(
        remaining,
        ["3", "2", "1", "0"],
        "one budget across both instances"
    );
    for app in [&a, &b] {
        let refused = get(app, "/api/projects", &alice).await;
        refused.assert_error(429, "rate_limited");
        assert_eq!(
            header(&refused, "retry-after"),
            "100",
            "one request per 100 s"
        );
    }
    assert_eq!(
        get(&b, "/api/projects", &bob).await.status,
        200,
        "bob has his own"
    );
    assert_eq!(health(&a).await["shared"], true);
}

#[tokio::test]
async fn a_request_refused_by_its_group_is_charged_to_no_limit() {
    let redis = redis().await;
    let stack = Stack::start().await;
    let alice = stack.login("alice").await;
    let groups = [("project.v1.ProjectService", slow(2))];
    let a = instance(&stack, &redis, 3, slow(4), &groups);
    let b = instance(&stack, &redis, 4, slow(4), &groups);
    assert_eq!(get(&a, "/api/projects", &alice).await.status, 200);
    assert_eq!(get(&b, "/api/projects", &alice).await.status, 200);
    for app in [&a, &b, &a] {
        get(app, "/api/projects", &alice)
            .await
            .assert_error(429, "rate_limited");
    }
    // Three refusals by the group took nothing from the user's four: two are left.
    let profile = get(&b, "/api/auth/profile", &alice).await;
    assert_eq!(profile.status, 200, "{}", profile.json);
    assert_eq!(header(&profile, "ratelimit-remaining"), "1");
    assert_eq!(get(&a, "/api/auth/profile", &alice).await.status, 200);
    get(&b, "/api/auth/profile", &alice)
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn without_redis_each_instance_falls_back_to_local_limits_and_says_so() {
    let mut redis = redis().await;
    let stack = Stack::start().await;
    let alice = stack.login("alice").await;
    let a = instance(&stack, &redis, 5, slow(2), &[]);
    assert_eq!(get(&a, "/api/projects", &alice).await.status, 200);
    redis.stop().await.unwrap();

    // Local limits decide now: this instance's own two places, then 429.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&a, "/api/projects", &alice).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let status = health(&a).await;
    assert_eq!(status["shared"], false, "{status}");
    let detail = status["detail"].as_str().unwrap();
    assert!(detail.contains("local to this instance"), "{detail}");
    let text = metrics_text(&a).await;
    assert!(text.contains("gateway_rate_limits_shared 0"), "{text}");
    assert!(
        !text.contains("gateway_rate_limit_local_decisions_total 0"),
        "{text}"
    );

    // Redis is back (empty: the container restarts without data): after the retry interval,
    // decisions are shared again.
    redis.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&a, "/api/auth/profile", &alice).await;
        if health(&a).await["shared"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still local 10 s after Redis came back: {}",
            answer.json
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = metrics_text(&a).await;
    assert!(text.contains("gateway_rate_limits_shared 1"), "{text}");
}
