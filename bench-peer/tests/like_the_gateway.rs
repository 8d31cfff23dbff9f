//! The peer answers the load mix's four routes as the gateway does, against one set of in-process
//! mock backends: the same status and the same JSON (the same values where the backends' state is
//! the same; the same keys for the projects each creates), and errors in the same shape.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use bench_peer::{Backends, Peer};
use http_body_util::BodyExt as _;
use mock_backends::{MockBackends, MockConfig, RunningBackends, ServiceKind};
use seams::{SystemClock, TokioNet};
use serde_json::Value;
use tower::ServiceExt as _;

/// The mock backends, and the gateway's and the peer's routers on them.
struct Both {
    backends: RunningBackends,
    gateway: Router,
    peer: Router,
}

impl Both {
    async fn start() -> Self {
        let backends =
            MockBackends::start(TokioNet, Arc::new(SystemClock), MockConfig::for_tests())
                .await
                .expect("mock backends start");
        let mut config = gateway::Config::default();
        config.http.connections_max = 1_000;
        for (name, kind) in [
            ("auth", ServiceKind::Auth),
            ("project", ServiceKind::Project),
            ("simulation", ServiceKind::Simulation),
        ] {
            let backend = config.backends.get_mut(name).expect("default backend");
            backend.address = backends.addr(kind).to_string();
        }
        let seams = gateway::Seams {
            net: TokioNet,
            clock: Arc::new(SystemClock),
            seed: 42,
        };
        let bus = events::MemoryBus::new(Default::default(), "test-epoch".to_owned());
        let gateway = gateway::App::from_config(config, &seams, Arc::new(bus))
            .expect("gateway builds")
            .api_router();
        let url = |kind| format!("http://{}", backends.addr(kind));
        let peer = Peer::new(
            Backends::connect_lazy(
                &url(ServiceKind::Auth),
                &url(ServiceKind::Project),
                &url(ServiceKind::Simulation),
            )
            .expect("backend URLs"),
        )
        .router();
        Self {
            backends,
            gateway,
            peer,
        }
    }

    fn token(&self, username: &str) -> String {
        self.backends
            .auth()
            .issue_token_for(username)
            .expect("demo user")
    }
}

/// A request with an optional bearer token and JSON body.
fn request(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

/// Sends `request` to `router`; its status and JSON body.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    assert!(
        response.headers().contains_key("x-request-id"),
        "every answer names its request"
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!("not JSON: {}", String::from_utf8_lossy(&bytes));
    });
    (status, json)
}

fn keys(json: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn the_mix_routes_answer_what_the_gateway_answers() {
    let both = Both::start().await;
    let token = both.token("alice");
    let reads = [
        "/api/auth/profile",
        "/api/projects?pageSize=20",
        "/api/projects?pageSize=1",
        "/api/simulations/s-1",
    ];
    for path in reads {
        let from_gateway = send(&both.gateway, request("GET", path, Some(&token), None)).await;
        let from_peer = send(&both.peer, request("GET", path, Some(&token), None)).await;
        assert_eq!(from_gateway.0, StatusCode::OK, "{path}: {}", from_gateway.1);
        assert_eq!(from_peer, from_gateway, "{path}");
    }

    // Each creates its own project: the same keys, the same values but the ID and times.
    let body = r#"{"name":"load","description":"made twice","templateId":"t-fluid"}"#;
    let created = |router| {
        send(
            router,
            request("POST", "/api/projects", Some(&token), Some(body)),
        )
    };
    let (gateway_status, from_gateway) = created(&both.gateway).await;
    let (peer_status, from_peer) = created(&both.peer).await;
    assert_eq!(gateway_status, StatusCode::OK, "{from_gateway}");
    assert_eq!(peer_status, gateway_status, "{from_peer}");
    assert_eq!(keys(&from_peer), keys(&from_gateway));
    for key in ["name", "description", "ownerId", "templateId"] {
        assert_eq!(from_peer[key], from_gateway[key], "{key}");
    }
    assert_ne!(from_peer["id"], from_gateway["id"]);

    // Both list the two new projects alike.
    let list = "/api/projects?pageSize=20";
    let from_gateway = send(&both.gateway, request("GET", list, Some(&token), None)).await;
    let from_peer = send(&both.peer, request("GET", list, Some(&token), None)).await;
    assert_eq!(from_peer, from_gateway);
}

#[tokio::test]
async fn errors_have_the_gateway_status_and_shape() {
    let both = Both::start().await;
    let token = both.token("bob");
    let cases = [
        ("/api/auth/profile", None),
        ("/api/auth/profile", Some("not.a-valid.token")),
        ("/api/simulations/s-404", Some(token.as_str())),
        // Bob may not read Alice's simulation.
        ("/api/simulations/s-1", Some(token.as_str())),
        ("/api/projects?pageSize=-1", Some(token.as_str())),
    ];
    for (path, token) in cases {
        let (gateway_status, from_gateway) =
            send(&both.gateway, request("GET", path, token, None)).await;
        let (peer_status, from_peer) = send(&both.peer, request("GET", path, token, None)).await;
        assert!(gateway_status.is_client_error(), "{path}: {from_gateway}");
        assert_eq!(peer_status, gateway_status, "{path}: {from_peer}");
        assert_eq!(keys(&from_peer), ["error"]);
        assert_eq!(keys(&from_peer["error"]), keys(&from_gateway["error"]));
    }
}
