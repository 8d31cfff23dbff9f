//! The resilience mechanisms against the mock backends' fault knobs: retries of safe calls only,
//! within the retry budget; the circuit breaker opening, refusing at once with `Retry-After`,
//! showing in `/health` and metrics, and closing again after the backend recovers.

mod support;

use std::{sync::Arc, time::Duration};

use axum::body::Body;
use gateway::{App, Seams};
use http::Request;
use mock_backends::{MockBackends, MockConfig, ServiceKind};
use seams::{SystemClock, TokioNet};
use support::{Stack, json_request, send};

/// How many calls with this request ID the backend received.
fn attempts(stack: &Stack, kind: ServiceKind, request_id: &str) -> usize {
    stack
        .backends
        .recent_request_ids(kind)
        .iter()
        .filter(|id| *id == request_id)
        .count()
}

async fn send_with_id(
    stack: &Stack,
    method: &str,
    path: &str,
    token: &str,
    id: &str,
) -> support::Answer {
    let body = if method == "POST" {
        r#"{"name":"n"}"#
    } else {
        ""
    };
    let mut request = json_request(method, path, Some(token), body);
    request
        .headers_mut()
        .insert("x-request-id", id.parse().unwrap());
    stack.send(request).await
}

#[tokio::test]
async fn safe_calls_are_retried_within_the_budget_and_unsafe_ones_never() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            let project = config.backends.get_mut("project").unwrap();
            project.breaker.enabled = false;
            project.retry.max_attempts = 3;
            // Room for exactly two retries in the window, whatever the traffic.
            project.retry.budget_ratio = 0.0;
            project.retry.budget_min_per_second = 1;
            project.retry.budget_window_ms = 2_000;
        },
    )
    .await;
    let token = stack.login("alice").await;
    stack
        .backends
        .faults(ServiceKind::Project)
        .set_error_rate(1.0)
        .unwrap();

    // GET: three attempts, then the backend's 503.
    let answer = send_with_id(&stack, "GET", "/api/projects", &token, "get-1").await;
    answer.assert_error(503, "unavailable");
    assert_eq!(attempts(&stack, ServiceKind::Project, "get-1"), 3);

    // POST /api/projects (CreateProject: neither GET nor marked idempotent): one attempt.
    let answer = send_with_id(&stack, "POST", "/api/projects", &token, "post-1").await;
    answer.assert_error(503, "unavailable");
    assert_eq!(attempts(&stack, ServiceKind::Project, "post-1"), 1);

    // The budget is spent: the next GET is not retried, and the metrics say why.
    let answer = send_with_id(&stack, "GET", "/api/projects", &token, "get-2").await;
    answer.assert_error(503, "unavailable");
    assert_eq!(attempts(&stack, ServiceKind::Project, "get-2"), 1);
    let metrics = stack.app.metrics().render();
    assert!(
        metrics.contains(r#"gateway_backend_retries_total{backend="project",outcome="retried"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"gateway_backend_retries_total{backend="project",outcome="budget_exhausted"} 1"#
        ),
        "{metrics}"
    );

    // A retry that succeeds is invisible to the client.
    stack
        .backends
        .faults(ServiceKind::Project)
        .set_error_rate(0.0)
        .unwrap();
    let answer = send_with_id(&stack, "GET", "/api/projects", &token, "get-3").await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

#[tokio::test]
async fn an_open_breaker_refuses_at_once_shows_in_health_and_metrics_and_closes_after_recovery() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            config.health.check_interval_ms = 50;
            let simulation = config.backends.get_mut("simulation").unwrap();
            simulation.retry.max_attempts = 1;
            simulation.breaker.consecutive_failures = 3;
            simulation.breaker.open_ms = 400;
            simulation.breaker.half_open_probes = 1;
        },
    )
    .await;
    let _checks = stack.app.spawn_health_checks();
    let token = stack.login("alice").await;
    let faults = stack.backends.faults(ServiceKind::Simulation);

    faults.set_error_rate(1.0).unwrap();
    for n in 0..3 {
        let id = format!("failing-{n}");
        send_with_id(&stack, "GET", "/api/simulations", &token, &id)
            .await
            .assert_error(503, "unavailable");
    }
    // Open: refused without a call, with the breaker's own code and a Retry-After.
    let answer = send_with_id(&stack, "GET", "/api/simulations", &token, "refused").await;
    answer.assert_error(503, "circuit_open");
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(attempts(&stack, ServiceKind::Simulation, "refused"), 0);
    // Other backends are not affected.
    assert_eq!(stack.get("/api/projects", &token).await.status, 200);

    let breaker = |report: &serde_json::Value, backend: &str| {
        report["dependencies"][backend]["instances"][0]["breaker"].clone()
    };
    let report = until_health(&stack.app, |report| breaker(report, "simulation") == "open").await;
    assert_eq!(breaker(&report, "project"), "closed");
    let metrics = stack.app.metrics().render();
    let address = stack.backends.addr(ServiceKind::Simulation);
    let state =
        format!(r#"gateway_backend_breaker_state{{backend="simulation",instance="{address}"}} 1"#);
    assert!(metrics.contains(&state), "{metrics}");
    assert!(
        metrics.contains(r#"gateway_backend_breaker_refusals_total{backend="simulation"} 1"#),
        "{metrics}"
    );

    // The backend recovers; after the open period one probe succeeds and the breaker closes.
    faults.set_error_rate(0.0).unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let answer = send_with_id(&stack, "GET", "/api/simulations", &token, "probe").await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    until_health(&stack.app, |report| {
        breaker(report, "simulation") == "closed"
    })
    .await;
}

/// The `/health` report once `ready` holds of it (within two seconds).
async fn until_health(app: &App, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..40 {
        let request = Request::get("/health").body(Body::empty()).unwrap();
        last = send(app.health_router(), request).await.json;
        if ready(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never showed the expected state: {last}");
}

#[test]
fn routes_are_retryable_when_get_or_marked_idempotent_in_the_proto() {
    use gateway::{app::builtin_descriptors, routing::RouteTable};
    let table = RouteTable::from_pool(&builtin_descriptors(), &[]).unwrap();
    let retryable = |label: &str| {
        table
            .routes()
            .iter()
            .find(|route| *route.label == *label)
            .unwrap_or_else(|| panic!("no route {label}"))
            .retryable
    };
    assert!(retryable("GET /api/projects"));
    assert!(retryable("DELETE /api/projects/{id}"), "IDEMPOTENT");
    assert!(retryable("POST /api/simulations/{id}:stop"), "IDEMPOTENT");
    assert!(!retryable("POST /api/projects"));
    assert!(!retryable("PATCH /api/projects/{id}"));
    assert!(!retryable("POST /api/simulations"));
}

#[tokio::test]
async fn calls_go_round_robin_over_instances_and_an_unhealthy_one_leaves_the_rotation() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    // A second Project instance, calling the same Auth.
    let mut mock = MockConfig::for_tests();
    mock.upstream.auth_addr = Some(stack.backends.addr(ServiceKind::Auth).to_string());
    let clock = std::sync::Arc::new(SystemClock);
    let second = MockBackends::start_service(TokioNet, clock.clone(), mock, ServiceKind::Project)
        .await
        .unwrap();
    let mut config = stack.app.config().clone();
    config.health.check_interval_ms = 50;
    let project = config.backends.get_mut("project").unwrap();
    project.replicas = vec![second.addr().to_string()];
    project.retry.max_attempts = 1;
    let seams = Seams {
        net: TokioNet,
        clock,
        seed: 7,
    };
    let app = App::from_config(config, &seams, std::sync::Arc::new(stack.bus.clone())).unwrap();
    let _checks = app.spawn_health_checks();
    let get = |id: String| {
        let mut request = json_request("GET", "/api/projects", Some(&token), "");
        request
            .headers_mut()
            .insert("x-request-id", id.parse().unwrap());
        send(app.api_router(), request)
    };
    let served_by = |id: &str| {
        let id = id.to_owned();
        let first = stack
            .backends
            .recent_request_ids(ServiceKind::Project)
            .contains(&id);
        let other = second.recent_request_ids().contains(&id);
        (first, other)
    };
    let first_healthy = |healthy: bool| {
        move |report: &serde_json::Value| {
            report["dependencies"]["project"]["instances"][0]["healthy"] == healthy
        }
    };

    let mut first_count = 0;
    for n in 0..6 {
        let id = format!("spread-{n}");
        assert_eq!(get(id.clone()).await.status, 200);
        let (first, other) = served_by(&id);
        assert!(first != other, "one instance serves each call");
        first_count += usize::from(first);
    }
    assert_eq!(first_count, 3, "round robin: half each");

    // The first instance fails its health checks: it leaves the rotation, no call fails, and the
    // gateway stays ready (the backend still has a healthy instance).
    stack.backends.faults(ServiceKind::Project).set_down(true);
    let report = until_health(&app, first_healthy(false)).await;
    assert_eq!(
        report["dependencies"]["project"]["healthy"], true,
        "{report}"
    );
    assert_eq!(
        report["dependencies"]["project"]["instances"][1]["healthy"],
        true
    );
    assert_eq!(report["status"], "ready");
    for n in 0..4 {
        let id = format!("failover-{n}");
        let answer = get(id.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(served_by(&id), (false, true));
    }

    // Back in rotation once healthy.
    stack.backends.faults(ServiceKind::Project).set_down(false);
    until_health(&app, first_healthy(true)).await;
    let mut back = 0;
    for n in 0..4 {
        let id = format!("back-{n}");
        assert_eq!(get(id.clone()).await.status, 200);
        back += usize::from(served_by(&id).0);
    }
    assert_eq!(back, 2);
}

#[tokio::test]
async fn a_route_group_has_its_own_deadline() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            // The Simulation backend's deadline stays 2 s (the test stack's); one method gets 300 ms.
            let group = "simulation.v1.SimulationService/ListSimulations";
            config.routes.deadlines_ms.insert(group.to_owned(), 300);
            config
                .backends
                .get_mut("simulation")
                .unwrap()
                .breaker
                .enabled = false;
        },
    )
    .await;
    let token = stack.login("alice").await;
    stack
        .backends
        .faults(ServiceKind::Simulation)
        .set_hang(true);

    let started = tokio::time::Instant::now();
    stack
        .get("/api/simulations", &token)
        .await
        .assert_error(504, "deadline_exceeded");
    let grouped = started.elapsed();
    // Generous bound: this pins which deadline applies, not a latency figure.
    assert!(grouped < Duration::from_millis(1_500), "took {grouped:?}");

    let started = tokio::time::Instant::now();
    stack
        .get("/api/simulations/status", &token)
        .await
        .assert_error(504, "deadline_exceeded");
    let ungrouped = started.elapsed();
    assert!(
        ungrouped >= Duration::from_millis(2_000),
        "the backend's 2 s: took {ungrouped:?}"
    );
}

#[tokio::test]
async fn route_groups_must_name_a_routed_service_or_method() {
    let seams = Seams {
        net: TokioNet,
        clock: std::sync::Arc::new(SystemClock),
        seed: 1,
    };
    let build = |group: &str| {
        let mut config = gateway::Config::default();
        config.routes.deadlines_ms.insert(group.to_owned(), 100);
        App::from_config(config, &seams, gateway::app::embedded_bus(1)).map(|_| ())
    };
    assert!(build("project.v1.ProjectService").is_ok());
    assert!(build("project.v1.ProjectService/GetProject").is_ok());
    let typo = build("project.v1.ProjectService/GetProjetc").unwrap_err();
    assert!(
        typo.to_string().contains("no route it applies to calls"),
        "{typo}"
    );
    let malformed = build("ListProjects").unwrap_err();
    assert!(
        malformed
            .to_string()
            .contains("routes.deadlines_ms.ListProjects"),
        "{malformed}"
    );
}

/// A client that goes away mid-request cancels its backend call: hyper drops the request's
/// future, dropping the tonic call resets its HTTP/2 stream, and the backend drops its handler.
#[tokio::test]
async fn a_client_that_disconnects_cancels_its_backend_call() {
    use tokio::io::AsyncWriteExt;

    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    let faults = stack.backends.faults(ServiceKind::Simulation);
    faults.set_hang(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = stack.app.api_router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /api/simulations HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    client.write_all(request.as_bytes()).await.unwrap();
    until(|| faults.hung_calls() == 1, "the call to reach the backend").await;
    drop(client);
    until(
        || faults.hung_calls() == 0,
        "the backend call to be cancelled",
    )
    .await;
    faults.set_hang(false);
}

/// Waits (one second at most: well before the backend's 2 s deadline would end the call anyway)
/// for `condition`.
async fn until(condition: impl Fn() -> bool, what: &str) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A gRPC server that takes calls and never answers them, and can break its connections: what
/// the calls in flight see when a backend crashes, or closes a connection whose client reset too
/// many streams (hyper's guard against rapid resets does that).
struct BreakingServer {
    address: std::net::SocketAddr,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl BreakingServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counted, held) = (calls.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counted = counted.clone();
                let service = hyper::service::service_fn(move |_request| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    std::future::pending::<Result<http::Response<Body>, std::io::Error>>()
                });
                let connection = tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
                });
                held.lock().unwrap().push(connection);
            }
        });
        Self {
            address,
            calls,
            connections,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every connection at once, as a crashing process does.
    fn break_connections(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

fn backend_at(address: std::net::SocketAddr) -> gateway::backends::Backend {
    let config = serde_json::from_value(serde_json::json!({
        "address": address.to_string(),
        "services": ["test.v1.Test"],
        "pool": {"min_channels": 1, "max_channels": 1},
        "deadline_ms": 10_000,
        "breaker": {"consecutive_failures": 3, "min_calls": 1_000},
        "retry": {"max_attempts": 1},
    }))
    .unwrap();
    gateway::backends::Backend::connect_lazy(&TokioNet, "test", &config, 7).unwrap()
}

fn call(
    backend: &gateway::backends::Backend,
) -> impl std::future::Future<Output = Result<bytes::Bytes, gateway::backends::CallError>> + use<> {
    let backend = backend.clone();
    async move {
        let (result, _) = backend
            .call(
                http::uri::PathAndQuery::from_static("/test.v1.Test/Hang"),
                bytes::Bytes::new(),
                tonic::metadata::MetadataMap::new(),
                Duration::from_secs(10),
                false,
            )
            .await;
        result
    }
}

/// Every call in flight on a connection fails when the connection breaks: one event, which the
/// breaker counts once (were it counted per call, a burst of client cancellations that makes a
/// backend close a busy connection would open the breaker on a healthy backend). Connections
/// that break one after another are separate failures and open it.
#[tokio::test]
async fn a_broken_connection_is_one_failure_for_the_breaker_however_many_calls_it_carried() {
    use gateway::{backends::CallError, backends::resilience::BreakerState};

    let server = BreakingServer::start().await;
    let backend = backend_at(server.address);
    let breaker = || backend.instances()[0].breaker_state();

    let calls: Vec<_> = (0..20).map(|_| tokio::spawn(call(&backend))).collect();
    until(|| server.calls() == 20, "20 calls to reach the server").await;
    server.break_connections();
    for call in calls {
        match call.await.unwrap() {
            Err(CallError::Status(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}")
            }
            other => panic!("a call on a broken connection gave {other:?}"),
        }
    }
    assert_eq!(
        breaker(),
        BreakerState::Closed,
        "20 calls on one broken connection count as one failure of three"
    );

    for broken in 1..=2 {
        let before = server.calls();
        let pending = tokio::spawn(call(&backend));
        until(|| server.calls() > before, "the call to reach the server").await;
        server.break_connections();
        assert!(pending.await.unwrap().is_err());
        let expected = if broken < 2 {
            BreakerState::Closed
        } else {
            BreakerState::Open
        };
        assert_eq!(
            breaker(),
            expected,
            "after {} broken connections",
            broken + 1
        );
    }
    assert!(
        matches!(call(&backend).await, Err(CallError::Refused(_))),
        "the open breaker refuses at once"
    );
}
