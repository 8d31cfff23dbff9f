//! The `watch` binary, as the README runs it: against a served gateway whose mock Simulation
//! publishes the demo run's progress, it prints the welcome and then the events, one JSON frame
//! a line; with a bad token it prints the gateway's refusal and exits with 1.

use std::{net::SocketAddr, process::Command, sync::Arc};

use gateway::{App, Config, Listeners, Seams};
use mock_backends::{MockBackends, MockConfig, ServiceKind, StartOptions};
use seams::{SystemClock, TokioNet};

/// Mock backends publishing into an in-memory bus, and a gateway reading it, served on loopback
/// ports; the WebSocket port and a token for alice.
async fn served_stack() -> (SocketAddr, String, tokio::sync::watch::Sender<bool>) {
    let bus = events::MemoryBus::new(Default::default(), "watch-test".to_owned());
    let mut mocks = MockConfig::for_tests();
    mocks.simulation.updates_per_second = 20;
    let backends = MockBackends::start_with(
        TokioNet,
        Arc::new(SystemClock),
        mocks,
        StartOptions::with_publisher(Arc::new(bus.clone())),
    )
    .await
    .expect("mock backends start");
    let mut config = Config::default();
    config.http.connections_max = 100;
    for (name, kind) in [
        ("auth", ServiceKind::Auth),
        ("project", ServiceKind::Project),
        ("simulation", ServiceKind::Simulation),
    ] {
        config.backends.get_mut(name).unwrap().address = backends.addr(kind).to_string();
    }
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen = gateway::serve::ListenConfig {
        api: loopback,
        websocket: loopback,
        health: loopback,
        metrics: loopback,
        reuse_port: false,
    };
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 7,
    };
    let listeners = Listeners::bind(&seams.net, &config.listen).await.unwrap();
    let websocket = listeners.websocket.local_addr().unwrap();
    let app = App::from_config(config, &seams, Arc::new(bus)).expect("gateway builds");
    let token = backends.auth().issue_token_for("alice").unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _backends = backends;
        gateway::serve(app, listeners, async move {
            let _ = stopped.changed().await;
        })
        .await
    });
    (websocket, token, stop)
}

/// Runs `watch` with `args` and `TOKEN=token`, for 30 s at most (coreutils' `timeout` ends it
/// with status 124 otherwise); its exit code, standard output and error.
async fn run_watch(args: Vec<String>, token: String) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("30")
            .arg(env!("CARGO_BIN_EXE_watch"))
            .args(args)
            .env("TOKEN", token)
            .output()
            .expect("watch runs")
    })
    .await
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn watch_prints_the_welcome_then_the_demo_runs_events_one_frame_a_line() {
    let (websocket, token, _stop) = served_stack().await;
    let args = ["--url", &format!("ws://{websocket}"), "--frames", "4"];
    let args = args.iter().map(|arg| arg.to_string()).collect();
    // The mock publishes 20 events a second: four frames take a fraction of a second.
    let (code, stdout, stderr) = run_watch(args, token).await;
    assert_eq!(code, Some(0), "{stderr}");
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(frames.len(), 4, "{stdout}");
    assert_eq!(frames[0]["type"], "welcome", "{stdout}");
    assert_eq!(frames[0]["channel"], "simulation:s-2");
    let offsets: Vec<u64> = frames[1..]
        .iter()
        .map(|event| {
            assert_eq!(event["type"], "event", "{event}");
            assert_eq!(event["data"]["type"], "progress", "{event}");
            event["offset"].as_u64().unwrap()
        })
        .collect();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
}

#[tokio::test]
async fn watch_with_a_bad_token_prints_the_refusal_and_fails() {
    let (websocket, _, _stop) = served_stack().await;
    let args = vec!["--url".to_owned(), format!("ws://{websocket}")];
    let (code, stdout, stderr) = run_watch(args, "not.a.token".to_owned()).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("401") && stderr.contains("unauthenticated"),
        "{stderr}"
    );
}
