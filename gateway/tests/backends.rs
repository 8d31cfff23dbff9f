//! Backend trouble reaches the client as a documented status with the error shape: a backend that
//! is down or failing gives 503, one that hangs gives 504 within the deadline. Request IDs travel
//! to the backend and back.

mod support;

use std::time::Duration;

use events::Publisher as _;
use mock_backends::ServiceKind;
use support::{Stack, json_request};

#[tokio::test]
async fn a_backend_that_is_down_gives_503_and_recovers() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    let faults = stack.backends.faults(ServiceKind::Project);

    faults.set_down(true);
    let answer = stack.get("/api/projects", &token).await;
    answer.assert_error(503, "unavailable");
    assert_eq!(answer.headers["retry-after"], "1");

    faults.set_down(false);
    let mut recovered = stack.get("/api/projects", &token).await;
    // The first call after the backend comes back may still find the refused connection.
    for _ in 0..20 {
        if recovered.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        recovered = stack.get("/api/projects", &token).await;
    }
    assert_eq!(recovered.status, 200, "{}", recovered.json);
}

#[tokio::test]
async fn a_backend_that_is_gone_gives_503() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            // Nothing listens here: the port of a listener that was bound and dropped.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            config.backends.get_mut("simulation").unwrap().address = format!("127.0.0.1:{port}");
        },
    )
    .await;
    let token = stack.login("alice").await;
    stack
        .get("/api/simulations/status", &token)
        .await
        .assert_error(503, "unavailable");
}

#[tokio::test]
async fn backend_errors_give_503_and_a_hang_gives_504_within_the_deadline() {
    let stack = Stack::start_with(
        |_| {},
        |config| config.backends.get_mut("simulation").unwrap().deadline_ms = 300,
    )
    .await;
    let token = stack.login("alice").await;
    let faults = stack.backends.faults(ServiceKind::Simulation);

    faults.set_error_rate(1.0).unwrap();
    stack
        .get("/api/simulations", &token)
        .await
        .assert_error(503, "unavailable");
    faults.set_error_rate(0.0).unwrap();

    faults.set_hang(true);
    let started = tokio::time::Instant::now();
    let answer = stack.get("/api/simulations", &token).await;
    let elapsed = started.elapsed();
    answer.assert_error(504, "deadline_exceeded");
    // Generous upper bound: this pins "no request outlives its deadline", not a latency figure.
    assert!(elapsed < Duration::from_millis(2_000), "took {elapsed:?}");
    faults.set_hang(false);
    assert_eq!(stack.get("/api/simulations", &token).await.status, 200);
}

/// The `jti` of a token (its payload is plain base64url JSON).
fn token_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn while_auth_is_unreachable_tokens_are_verified_locally() {
    let stack = Stack::start().await;
    let _revocations = stack.app.spawn_revocation_listener();
    let alice = stack.login("alice").await;
    let revoked = stack.login("alice").await;
    let bob = stack.login("bob").await;
    support::until_local_keys(&stack.app).await;
    // Auth revokes one of alice's tokens; every gateway hears it on auth:revocations. (Without
    // `userId`: Auth leaves it out when it no longer remembers the token.)
    stack
        .bus
        .publish(
            &events::ChannelName::parse("auth:revocations").unwrap(),
            None,
            serde_json::value::to_raw_value(
                &serde_json::json!({"type": "token_revoked", "tokenId": token_id(&revoked)}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let revoked_id = token_id(&revoked);
    support::wait_until("the revocation to be applied", || {
        stack.app.validator().is_token_id_rejected(&revoked_id)
    })
    .await;
    stack.backends.faults(ServiceKind::Auth).set_down(true);

    // Never validated before, so not cached: verified against the JWKS, and let through.
    let answer = stack.get("/api/simulations", &alice).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_ne!(stack.get("/api/simulations", &bob).await.status, 401);
    // A tampered signature, a revoked token and a token of another algorithm: 401, not 503.
    let tampered = format!("{alice}x");

    stack
        .get("/api/simulations", &tampered)
        .await
        .assert_error(401, "unauthenticated");
    stack
        .get("/api/simulations", &revoked)
        .await
        .assert_error(401, "unauthenticated");
    let hs256 = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl";
    stack
        .get("/api/simulations", hs256)
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn with_local_verification_off_auth_unreachable_gives_503_not_401() {
    let stack = Stack::start_with(|_| {}, |config| config.auth.local_verification = false).await;
    let token = stack.login("alice").await;
    stack.backends.faults(ServiceKind::Auth).set_down(true);
    // A token the cache has not seen must be validated, and Auth cannot answer.
    let answer = stack.get("/api/projects", &token).await;
    answer.assert_error(503, "auth_unavailable");
}

#[tokio::test]
async fn request_ids_travel_to_the_backend_and_back() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;

    let mut request = json_request("GET", "/api/projects/templates", Some(&token), "");
    request
        .headers_mut()
        .insert("x-request-id", "client-chosen-42".parse().unwrap());
    let answer = stack.send(request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-request-id"], "client-chosen-42");
    assert!(
        stack
            .backends
            .recent_request_ids(ServiceKind::Project)
            .contains(&"client-chosen-42".to_owned())
    );

    // Absent or unsafe IDs are replaced by a generated one, which also reaches the backend.
    for supplied in [None, Some("bad id with spaces"), Some(&*"x".repeat(200))] {
        let mut request = json_request("GET", "/api/projects/templates", Some(&token), "");
        if let Some(id) = supplied {
            request
                .headers_mut()
                .insert("x-request-id", id.parse().unwrap());
        }
        let answer = stack.send(request).await;
        let generated = answer.headers["x-request-id"].to_str().unwrap().to_owned();
        assert!(!generated.is_empty() && Some(generated.as_str()) != supplied);
        assert!(
            stack
                .backends
                .recent_request_ids(ServiceKind::Project)
                .contains(&generated)
        );
    }
}

/// Concurrent requests with one uncached token make exactly one `ValidateToken` call: only one of
/// their request IDs reaches Auth.
#[tokio::test]
async fn concurrent_validations_of_one_token_share_one_call() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    let router = stack.api();
    let requests = (0..32).map(|index| {
        let mut request = json_request("GET", "/api/projects/templates", Some(&token), "");
        request
            .headers_mut()
            .insert("x-request-id", format!("flight-{index}").parse().unwrap());
        support::send(router.clone(), request)
    });
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == 200));
    let seen_by_auth = stack.backends.recent_request_ids(ServiceKind::Auth);
    let validations = seen_by_auth
        .iter()
        .filter(|id| id.starts_with("flight-"))
        .count();
    assert_eq!(validations, 1, "Auth saw {seen_by_auth:?}");

    // Cached: more requests with the same token make no further call.
    let mut again = json_request("GET", "/api/projects/templates", Some(&token), "");
    again
        .headers_mut()
        .insert("x-request-id", "flight-later".parse().unwrap());
    assert_eq!(support::send(router, again).await.status, 200);
    assert!(
        !stack
            .backends
            .recent_request_ids(ServiceKind::Auth)
            .contains(&"flight-later".to_owned())
    );
}
