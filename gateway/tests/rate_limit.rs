//! Rate limits end to end: per user, per user and endpoint group, per client IP (on the API and
//! WebSocket ports, through trusted proxies only), 429 with `Retry-After` and `RateLimit-*`, and
//! a refused request reaching no backend.

mod support;

use std::net::SocketAddr;

use axum::{body::Body, extract::ConnectInfo};
use gateway::{config::Config, edge::rate_limit::Limit, request::Peer};
use http::Request;
use mock_backends::ServiceKind;
use support::{Answer, Stack, json_request, send, serve_on_loopback};

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

fn limit(per_second: f64, burst: u32) -> Limit {
    Limit { per_second, burst }
}

async fn limited_stack(adjust: impl FnOnce(&mut Config)) -> Stack {
    Stack::start_with(|_| {}, adjust).await
}

fn with_id(mut request: Request<Body>, id: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

#[tokio::test]
async fn a_user_over_the_limit_gets_429_and_no_backend_call() {
    let stack = limited_stack(|config| config.rate_limit.per_user = limit(0.1, 3)).await;
    let alice = stack.login("alice").await;
    let bob = stack.login("bob").await;
    let remaining: Vec<String> = {
        let mut seen = Vec::new();
        for n in 0..3 {
            let request = json_request("GET", "/api/projects", Some(&alice), "");
            let answer = stack.send(with_id(request, &format!("ok-{n}"))).await;
            assert_eq!(answer.status, 200, "{}", answer.json);
            assert_eq!(header(&answer, "ratelimit-limit"), "3");
            seen.push(header(&answer, "ratelimit-remaining").to_owned());
        }
        seen
    };
    assert_eq!(remaining, ["2", "1", "0"]);

    let request = json_request("GET", "/api/projects", Some(&alice), "");
    let refused = stack.send(with_id(request, "refused")).await;
    refused.assert_error(429, "rate_limited");
    // One request per 10 s: the next may pass in 10 s.
    assert_eq!(header(&refused, "retry-after"), "10");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert!(
        !stack
            .backends
            .recent_request_ids(ServiceKind::Project)
            .contains(&"refused".to_owned()),
        "a refused request reaches no backend"
    );
    // Another user has a budget of their own.
    assert_eq!(stack.get("/api/projects", &bob).await.status, 200);
}

#[tokio::test]
async fn an_endpoint_group_has_its_own_limit_per_user() {
    let stack = limited_stack(|config| {
        config.rate_limit.groups.insert(
            "project.v1.ProjectService/CreateProject".into(),
            limit(0.01, 1),
        );
    })
    .await;
    let alice = stack.login("alice").await;
    let create = || {
        json_request(
            "POST",
            "/api/projects",
            Some(&alice),
            r#"{"name":"n","templateId":"t-fluid"}"#,
        )
    };
    let first = stack.send(create()).await;
    assert_eq!(first.status, 200, "{}", first.json);
    stack.send(create()).await.assert_error(429, "rate_limited");
    // Other routes of the user are not in the group.
    assert_eq!(stack.get("/api/projects", &alice).await.status, 200);
}

fn from_peer(request: Request<Body>, peer: &str) -> Request<Body> {
    let mut request = request;
    let address: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(Peer(address)));
    request
}

fn forwarded_for(request: Request<Body>, chain: &str) -> Request<Body> {
    let mut request = request;
    request
        .headers_mut()
        .insert("x-forwarded-for", chain.parse().unwrap());
    request
}

#[tokio::test]
async fn the_client_ip_comes_from_forwarded_for_only_through_trusted_proxies() {
    let stack = limited_stack(|config| {
        config.rate_limit.per_ip = limit(0.1, 2);
        config.rate_limit.trusted_proxies = vec!["10.0.0.0/8".into()];
    })
    .await;
    let get = || json_request("GET", "/api/projects/templates", None, "");
    let through_proxy = |client: &str| forwarded_for(from_peer(get(), "10.0.0.5"), client);

    // Two clients behind the trusted proxy: a budget each.
    for _ in 0..2 {
        assert_ne!(stack.send(through_proxy("198.51.100.1")).await.status, 429);
        assert_ne!(stack.send(through_proxy("198.51.100.2")).await.status, 429);
    }
    stack
        .send(through_proxy("198.51.100.1"))
        .await
        .assert_error(429, "rate_limited");

    // A client that is not a trusted proxy cannot spread itself over invented addresses.
    let direct = |spoofed: &str| forwarded_for(from_peer(get(), "203.0.113.9"), spoofed);
    assert_ne!(stack.send(direct("1.1.1.1")).await.status, 429);
    assert_ne!(stack.send(direct("2.2.2.2")).await.status, 429);
    stack
        .send(direct("3.3.3.3"))
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn websocket_handshakes_are_limited_per_ip() {
    let stack = limited_stack(|config| config.rate_limit.per_ip = limit(0.1, 1)).await;
    let handshake = || {
        let request = Request::get("/ws/notifications")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Body::empty())
            .unwrap();
        from_peer(request, "192.0.2.44")
    };
    // The first passes the limit (and fails later for want of a token); the second is refused
    // before anything else.
    let first = send(stack.app.websocket_router(), handshake()).await;
    assert_ne!(first.status, 429, "{}", first.json);
    let second = send(stack.app.websocket_router(), handshake()).await;
    second.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn a_served_gateway_limits_by_the_connection_peer() {
    let stack = limited_stack(|config| config.rate_limit.per_ip = limit(0.1, 2)).await;
    let served = serve_on_loopback(stack.app.clone()).await;
    let api = served.api;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let uri: http::Uri = format!("http://{api}/api/projects/templates")
            .parse()
            .unwrap();
        statuses.push(client.get(uri).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[2], 429, "{statuses:?}");
    assert!(statuses[..2].iter().all(|s| *s != 429), "{statuses:?}");
    served.stop.send(true).unwrap();
    served.server.await.unwrap().unwrap();
}
