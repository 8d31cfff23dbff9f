//! Shared test harness: mock backends started in-process on free ports, a gateway built on them,
//! and helpers that call the gateway's router in-process (`oneshot`, no sockets on the HTTP side).

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod dynamic;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode},
};
use gateway::{App, Config, Seams};
use http_body_util::BodyExt;
use mock_backends::{MockBackends, MockConfig, RunningBackends, ServiceKind};
use seams::{SystemClock, TokioNet};
use tower::ServiceExt;

/// The demo password of every seeded user.
pub const PASSWORD: &str = mock_backends::demo::DEMO_PASSWORD;

/// Mock backends and a gateway routed to them.
pub struct Stack {
    /// The running mock backends.
    pub backends: RunningBackends,
    /// The gateway.
    pub app: App,
    /// The event bus the gateway's hub reads (in memory, shared with the test).
    pub bus: events::MemoryBus,
}

/// A gateway answer: status, headers and JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
}

impl Answer {
    /// The `error.code` of an error answer.
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// Asserts the body is exactly the one error shape with this code, and returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.json
        );
        let error = self.json["error"].as_object().unwrap_or_else(|| {
            panic!("not the error shape: {}", self.json);
        });
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["code", "message", "request_id"],
            "error shape: {}",
            self.json
        );
        assert_eq!(
            self.json.as_object().unwrap().len(),
            1,
            "only `error` at the top"
        );
        assert_eq!(error["code"], code, "error code; body: {}", self.json);
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "request_id must be set"
        );
        assert_eq!(
            self.headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            error["request_id"].as_str(),
            "the header and the body carry the same request ID"
        );
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        assert!(!message.is_empty(), "error message must be set");
        message
    }
}

impl Stack {
    /// Starts the backends with default settings and a gateway with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    /// Starts with adjusted backend and gateway configs.
    pub async fn start_with(
        adjust_backends: impl FnOnce(&mut MockConfig),
        adjust_gateway: impl FnOnce(&mut Config),
    ) -> Self {
        let mut mock_config = MockConfig::for_tests();
        adjust_backends(&mut mock_config);
        let backends = MockBackends::start(TokioNet, Arc::new(SystemClock), mock_config)
            .await
            .expect("mock backends start");
        let mut config = Config::default();
        // Explicit, as the binaries make it: the library never derives it from the host.
        config.http.connections_max = 1_000;
        for (name, kind) in [
            ("auth", ServiceKind::Auth),
            ("project", ServiceKind::Project),
            ("simulation", ServiceKind::Simulation),
        ] {
            let backend = config.backends.get_mut(name).expect("default backend");
            backend.address = backends.addr(kind).to_string();
            backend.deadline_ms = 2_000;
        }
        adjust_gateway(&mut config);
        let seams = Seams {
            net: TokioNet,
            clock: Arc::new(SystemClock),
            seed: 42,
        };
        let bus = events::MemoryBus::new(
            events::memory::MemoryBusConfig::default(),
            "test-epoch".to_owned(),
        );
        let app = App::from_config(config, &seams, Arc::new(bus.clone())).expect("gateway builds");
        Self { backends, app, bus }
    }

    /// The API router.
    pub fn api(&self) -> Router {
        self.app.api_router()
    }

    /// Sends a request to the API router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        send(self.api(), request).await
    }

    /// Logs in a demo user and returns the access token.
    pub async fn login(&self, username: &str) -> String {
        let answer = self
            .send(json_request(
                "POST",
                "/api/auth/login",
                None,
                &format!(r#"{{"username":"{username}","password":"{PASSWORD}"}}"#),
            ))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "login failed: {}",
            answer.json
        );
        answer.json["accessToken"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// A GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(json_request("GET", path, Some(token), "")).await
    }
}

/// Sends a request to any router and reads the whole answer.
pub async fn send(router: Router, request: Request<Body>) -> Answer {
    let response = router.oneshot(request).await.expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = body_bytes(response).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

/// The whole body of `response`.
async fn body_bytes(response: axum::response::Response) -> bytes::Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

/// The text of `app`'s `/metrics`.
pub async fn metrics_text(app: &App) -> String {
    let response = app
        .metrics_router()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible router");
    String::from_utf8_lossy(&body_bytes(response).await).into_owned()
}

/// A request with an optional bearer token and a JSON body.
pub fn json_request(method: &str, path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(Body::from(body.to_owned()))
        .expect("valid request")
}

/// A gateway served on loopback listeners (real sockets), until `stop` is sent or dropped.
pub struct Served {
    /// The API port's address.
    pub api: std::net::SocketAddr,
    /// The WebSocket port's address.
    pub websocket: std::net::SocketAddr,
    /// The health port's address.
    pub health: std::net::SocketAddr,
    /// The metrics port's address.
    pub metrics: std::net::SocketAddr,
    /// Stops the server (graceful shutdown).
    pub stop: tokio::sync::watch::Sender<bool>,
    /// The server's task: ends once drained.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `app` on four fresh loopback listeners.
pub async fn serve_on_loopback(app: App) -> Served {
    use seams::Net as _;
    let bind = || TokioNet.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let listeners = gateway::Listeners {
        api: bind().await.expect("bind"),
        websocket: bind().await.expect("bind"),
        health: bind().await.expect("bind"),
        metrics: bind().await.expect("bind"),
    };
    let address = |listener| seams::NetListener::local_addr(listener).expect("bound");
    let (api, websocket) = (address(&listeners.api), address(&listeners.websocket));
    let (health, metrics) = (address(&listeners.health), address(&listeners.metrics));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(gateway::serve(app, listeners, async move {
        let _ = stopped.changed().await;
    }));
    Served {
        api,
        websocket,
        health,
        metrics,
        stop,
        server,
    }
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after 10 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until the gateway has fetched Auth's JWKS (local verification can then judge tokens).
pub async fn until_local_keys(app: &App) {
    for _ in 0..100 {
        if app.validator().has_local_keys().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the gateway never fetched Auth's JWKS");
}

/// The gateway binary, to be spawned: no `GATEWAY_*` variable of this environment reaches it, and
/// every listener binds a free loopback port.
pub fn gateway_binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
    for (key, _) in std::env::vars_os() {
        if key
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("GATEWAY_")
        {
            command.env_remove(key);
        }
    }
    for listener in ["API", "WEBSOCKET", "HEALTH", "METRICS"] {
        command.env(format!("GATEWAY_LISTEN__{listener}"), "127.0.0.1:0");
    }
    command
}
