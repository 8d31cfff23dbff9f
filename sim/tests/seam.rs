//! The seam proof: the real gateway and the real mock Auth run on turmoil's network and clock. A
//! client logs in and reads its profile through the gateway. A partition between gateway and Auth
//! turns the same call into a 503 with the error shape within the validation and backend
//! deadlines (the token itself still passes, verified locally against Auth's JWKS, and a forged
//! one still gets 401); after the partition heals the call succeeds again.

use std::time::{Duration, UNIX_EPOCH};

use gateway::Config;
use http::{Method, StatusCode};
use mock_backends::ServiceKind;
use sim::{SimClock, hosts, seed, topology::any};

/// Deadline of a token validation in this scenario.
const VALIDATION_DEADLINE: Duration = Duration::from_millis(1_000);

/// Deadline of a routed backend call in this scenario.
const BACKEND_DEADLINE: Duration = Duration::from_millis(2_000);

fn gateway_config() -> Config {
    let mut config = Config::default();
    config.listen.api = any(8000);
    config.listen.websocket = any(8001);
    config.listen.health = any(8002);
    config.listen.metrics = any(8003);
    for (name, backend) in config.backends.iter_mut() {
        backend.address = match name.as_str() {
            "auth" => "auth:9000".to_owned(),
            "project" => "project:10000".to_owned(),
            _ => "simulation:11000".to_owned(),
        };
        backend.deadline_ms = BACKEND_DEADLINE.as_millis() as u64;
    }
    config.auth.validation_deadline_ms = VALIDATION_DEADLINE.as_millis() as u64;
    // One HTTP client (a simulated gateway is always given its cap: see `connections_max_for`).
    config.http.connections_max = sim::topology::connections_max_for(0, 1);
    // Validate on every request, so each call crosses the gateway–Auth link this test cuts.
    config.auth.token_cache_ttl_ms = 1;
    config
}

/// One HTTP/1.1 request from the client host to the gateway's API.
async fn call(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    sim::client::http("gateway:8000", method, path, token, body)
        .await
        .expect("the gateway answers")
}

#[test]
fn partition_between_gateway_and_auth_gives_503_then_recovers() {
    seed::replayable(
        seed::seed_or(7),
        "seam",
        "partition_between_gateway_and_auth_gives_503_then_recovers",
        run,
    );
}

fn run(seed: u64) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600)) // 2026-01-01
        .simulation_duration(Duration::from_secs(60))
        .build();

    hosts::mock_backend(
        &mut sim,
        "auth",
        ServiceKind::Auth,
        seed,
        None,
        Default::default(),
        Default::default(),
    );
    hosts::gateway(&mut sim, "gateway", gateway_config(), seed, SimClock::new());

    sim.client("client", async move {
        let (status, login) = call(
            Method::POST,
            "/api/auth/login",
            None,
            r#"{"username":"alice","password":"demo-password"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "login: {login}");
        let token = login["accessToken"]
            .as_str()
            .expect("an access token")
            .to_owned();

        let (status, profile) = call(Method::GET, "/api/auth/profile", Some(&token), "").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "profile before the partition: {profile}"
        );
        assert_eq!(profile["username"], "alice");

        turmoil::partition("gateway", "auth");
        let started = tokio::time::Instant::now();
        let (status, error) = call(Method::GET, "/api/auth/profile", Some(&token), "").await;
        let elapsed = started.elapsed();
        // The token is verified locally; the profile itself lives on the unreachable Auth.
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "during the partition: {error}"
        );
        assert_eq!(error["error"]["code"], "unavailable");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(
            error["error"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        let deadlines = VALIDATION_DEADLINE + BACKEND_DEADLINE;
        assert!(
            elapsed <= deadlines + Duration::from_millis(100),
            "the 503 took {elapsed:?}, past the {deadlines:?} of the two deadlines"
        );
        let forged = "eyJhbGciOiJFZERTQSIsImtpZCI6Im5vbmUifQ.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl";
        let (status, error) = call(Method::GET, "/api/auth/profile", Some(forged), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a forged token: {error}");

        turmoil::repair("gateway", "auth");
        let (status, profile) = call(Method::GET, "/api/auth/profile", Some(&token), "").await;
        assert_eq!(status, StatusCode::OK, "after repair: {profile}");
        assert_eq!(profile["username"], "alice");
        Ok(())
    });

    sim.run().expect("the simulation runs to completion");
}
