//! Time to answer 503 `circuit_open` while a backend's breaker is open: the whole API router
//! (request ID, metrics, head limits, routing, the breaker's refusal, the error body), with no
//! backend involved; beside it, the breaker's own decision. Run:
//! `cargo bench -p gateway --bench breaker`.

use std::sync::Arc;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::{
    App, Config, Seams,
    backends::resilience::{Breaker, BreakerConfig},
};
use http::Request;
use seams::{SystemClock, TokioNet};
use tower::ServiceExt;

const PATH: &str = "/api/projects/templates";

fn open_breaker(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = runtime.block_on(async {
        // Nothing listens on the project backend's port; its breaker opens on the first refusal
        // and stays open for the whole run. The route is made public so no Auth is involved.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut config = Config::default();
        let project = config.backends.get_mut("project").expect("default backend");
        project.address = format!("127.0.0.1:{port}");
        project.retry.max_attempts = 1;
        project.breaker.consecutive_failures = 1;
        project.breaker.open_ms = 3_600_000;
        project.breaker.open_max_ms = 3_600_000;
        config
            .auth
            .public_methods
            .push("project.v1.ProjectService/ListTemplates".to_owned());
        let seams = Seams {
            net: TokioNet,
            clock: Arc::new(SystemClock),
            seed: 1,
        };
        let app = App::from_config(config, &seams, gateway::app::embedded_bus(1)).expect("app");
        let router = app.api_router();
        let first = send(&router).await;
        assert_eq!(first.0, 503, "the refused connection");
        let refused = send(&router).await;
        assert!(refused.1.contains("circuit_open"), "open: {}", refused.1);
        router
    });

    c.bench_function("503 circuit_open through the API router", |b| {
        // block_on per iteration adds the runtime's entry, well under a microsecond.
        b.iter(|| runtime.block_on(send(&router)));
    });

    let breaker = Breaker::new(BreakerConfig {
        consecutive_failures: 1,
        open_ms: 3_600_000,
        open_max_ms: 3_600_000,
        ..BreakerConfig::default()
    });
    let _entered = runtime.enter();
    breaker.try_acquire().expect("closed").failed();
    c.bench_function("open breaker refuses (decision only)", |b| {
        b.iter(|| breaker.try_acquire().is_err());
    });
}

async fn send(router: &axum::Router) -> (u16, String) {
    let request = Request::get(PATH).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

criterion_group!(benches, open_breaker);
criterion_main!(benches);
