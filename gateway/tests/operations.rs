//! What operators rely on: liveness and readiness with per-dependency detail, Prometheus metrics,
//! and a graceful shutdown that finishes in-flight requests.

mod support;

use std::{net::SocketAddr, time::Duration};

use axum::{body::Body, http::Request};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mock_backends::ServiceKind;
use support::{Answer, Stack};

async fn probe(stack: &Stack, path: &str) -> Answer {
    support::send(
        stack.app.health_router(),
        Request::get(path).body(Body::empty()).unwrap(),
    )
    .await
}

/// Polls readiness until it reports `status` (bounded: 100 tries, 50 ms apart).
async fn wait_for_readiness(stack: &Stack, status: u16) -> Answer {
    for _ in 0..100 {
        let answer = probe(stack, "/health/ready").await;
        if answer.status.as_u16() == status {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never reached {status}");
}

#[tokio::test]
async fn readiness_follows_backend_health_with_per_dependency_detail() {
    let stack = Stack::start_with(|_| {}, |config| config.health.check_interval_ms = 50).await;
    let _checks = stack.app.spawn_health_checks();

    let ready = wait_for_readiness(&stack, 200).await;
    assert_eq!(ready.json["status"], "ready");
    for backend in ["auth", "project", "simulation"] {
        assert_eq!(
            ready.json["dependencies"][backend]["healthy"], true,
            "{}",
            ready.json
        );
    }
    assert_eq!(probe(&stack, "/health/live").await.status, 200);
    // The metrics say the same (operators alert on them: ops/prometheus/).
    assert_metrics(
        &stack,
        &[
            "gateway_ready 1",
            "gateway_draining 0",
            r#"gateway_backend_up{backend="project"} 1"#,
            r#"gateway_backend_up{backend="event_bus"} 1"#,
        ],
    );

    stack.backends.faults(ServiceKind::Project).set_down(true);
    let not_ready = wait_for_readiness(&stack, 503).await;
    assert_eq!(not_ready.json["status"], "not_ready");
    assert_eq!(not_ready.json["dependencies"]["project"]["healthy"], false);
    assert_eq!(not_ready.json["dependencies"]["auth"]["healthy"], true);
    assert_metrics(
        &stack,
        &[
            "gateway_ready 0",
            r#"gateway_backend_up{backend="project"} 0"#,
        ],
    );
    // Liveness does not depend on backends.
    assert_eq!(probe(&stack, "/health/live").await.status, 200);
    // `/health` on the API port carries the same report.
    let on_api = support::send(
        stack.api(),
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(on_api.status, 503);
    assert_eq!(on_api.json["dependencies"]["project"]["healthy"], false);

    stack.backends.faults(ServiceKind::Project).set_down(false);
    wait_for_readiness(&stack, 200).await;

    // Probes take GET only, and say so in the error shape.
    let wrong_method = support::send(
        stack.app.health_router(),
        Request::post("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert_eq!(wrong_method.headers["allow"], "GET, HEAD");

    // Draining is unready on purpose, and says so apart.
    stack.app.begin_shutdown();
    assert_eq!(
        probe(&stack, "/health/ready").await.json["status"],
        "draining"
    );
    assert_metrics(&stack, &["gateway_ready 0", "gateway_draining 1"]);
}

/// Asserts that the metrics exposition has each of `lines`, exactly.
fn assert_metrics(stack: &Stack, lines: &[&str]) {
    let metrics = stack.app.metrics().render();
    for line in lines {
        assert!(metrics.lines().any(|l| l == *line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_time_backend_calls() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    assert_eq!(
        stack.get("/api/projects/templates", &token).await.status,
        200
    );
    assert_eq!(stack.get("/api/nowhere", &token).await.status, 404);

    let response = support::metrics_text(&stack.app).await;
    assert!(
        response.contains(
            r#"gateway_http_requests_total{route="GET /api/projects/templates",method="GET",status="200"} 1"#
        ),
        "{response}"
    );
    assert!(
        response.contains(
            r#"gateway_http_requests_total{route="unmatched",method="GET",status="404"} 1"#
        ),
        "{response}"
    );
    assert!(
        response.contains(
            r#"gateway_backend_call_duration_seconds_count{service="project.v1.ProjectService",code="Ok"} 1"#
        ),
        "{response}"
    );
    assert!(response.contains("gateway_http_request_duration_seconds_bucket"));
}

async fn http_get(address: SocketAddr, path: &str, token: &str) -> std::io::Result<u16> {
    http_get_with_id(address, (path, "operations-test"), token).await
}

/// A GET of `path` with the request ID `id`, on a connection of its own; the status.
async fn http_get_with_id(
    address: SocketAddr,
    (path, id): (&str, &str),
    token: &str,
) -> std::io::Result<u16> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "gateway")
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_listening() {
    let stack = Stack::start_with(|_| {}, |config| config.shutdown.grace_period_ms = 5_000).await;
    let token = stack.login("alice").await;
    let support::Served {
        api: api_address,
        stop,
        server,
        ..
    } = support::serve_on_loopback(stack.app.clone()).await;

    stack
        .backends
        .faults(ServiceKind::Project)
        .set_latency_ms(400);
    let in_flight = tokio::spawn({
        let token = token.clone();
        async move {
            let request = ("/api/projects/templates", "in-flight-at-shutdown");
            http_get_with_id(api_address, request, &token).await
        }
    });
    support::wait_until("the request to reach Project", || {
        let seen = stack.backends.recent_request_ids(ServiceKind::Project);
        seen.iter().any(|id| id == "in-flight-at-shutdown")
    })
    .await;
    stop.send(true).unwrap();

    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the in-flight request completes"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns within the grace period")
        .unwrap()
        .unwrap();
    assert!(
        http_get(api_address, "/api/projects/templates", &token)
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}
