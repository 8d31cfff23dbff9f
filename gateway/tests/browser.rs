//! Browser security end to end: security headers on every answer of every port, CORS preflights
//! answered for allowed origins without a token, nothing granted to other origins.

mod support;

use axum::body::Body;
use http::Request;
use support::{Answer, Stack, json_request, send};

const APP: &str = "https://app.example.com";

async fn cors_stack(credentials: bool) -> Stack {
    Stack::start_with(
        |_| {},
        |config| {
            config.cors.allowed_origins = vec![APP.to_owned(), "http://localhost:3000".to_owned()];
            config.cors.allow_credentials = credentials;
        },
    )
    .await
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .map_or("", |value| value.to_str().unwrap())
}

fn assert_security_headers(answer: &Answer, what: &str) {
    assert_eq!(
        header(answer, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(
        header(answer, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'",
        "{what}"
    );
    assert_eq!(header(answer, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(answer, "referrer-policy"), "no-referrer", "{what}");
    assert!(
        !answer.headers.contains_key("strict-transport-security"),
        "{what}: no HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn every_answer_of_every_port_carries_the_security_headers() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    assert_security_headers(&stack.get("/api/projects", &token).await, "a 200");
    assert_security_headers(&stack.get("/api/nothing", &token).await, "a 404");
    let anonymous = stack
        .send(json_request("GET", "/api/projects", None, ""))
        .await;
    assert_security_headers(&anonymous, "a 401");
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let health = send(stack.app.health_router(), get("/health/live")).await;
    assert_security_headers(&health, "the health port");
    let websocket = send(stack.app.websocket_router(), get("/ws/nothing")).await;
    assert_security_headers(&websocket, "the WebSocket port");
}

fn preflight(origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/api/projects")
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_token() {
    let stack = cors_stack(false).await;
    let answer = stack
        .send(preflight(APP, "POST", "authorization, content-type"))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), APP);
    assert!(header(&answer, "access-control-allow-methods").contains("POST"));
    let allowed = header(&answer, "access-control-allow-headers");
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert_eq!(header(&answer, "access-control-max-age"), "600");
    assert!(
        !answer
            .headers
            .contains_key("access-control-allow-credentials")
    );
    assert!(header(&answer, "vary").contains("origin"));
}

#[tokio::test]
async fn an_allowed_origin_may_read_the_answer_and_its_request_id() {
    let stack = cors_stack(true).await;
    let token = stack.login("alice").await;
    let mut request = json_request("GET", "/api/projects", Some(&token), "");
    request
        .headers_mut()
        .insert("origin", "http://localhost:3000".parse().unwrap());
    let answer = stack.send(request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert_eq!(header(&answer, "access-control-allow-credentials"), "true");
    let exposed = header(&answer, "access-control-expose-headers");
    assert!(
        exposed.contains("x-request-id") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

#[tokio::test]
async fn another_origin_is_granted_nothing() {
    let stack = cors_stack(true).await;
    let answer = stack
        .send(preflight("https://evil.example", "DELETE", "authorization"))
        .await;
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert!(!answer.headers.contains_key(name), "{name} granted");
    }
    // With no origin configured at all (the default), nobody is.
    let closed = Stack::start().await;
    let answer = closed.send(preflight(APP, "GET", "authorization")).await;
    assert!(!answer.headers.contains_key("access-control-allow-origin"));
}

#[test]
fn any_origin_with_credentials_is_refused_at_start() {
    let mut config = gateway::config::Config::default();
    config.cors.allowed_origins = vec!["*".into()];
    config.cors.allow_credentials = true;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("cors.allowed_origins"), "{error}");
}
