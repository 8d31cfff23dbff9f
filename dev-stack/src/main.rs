//! The dev stack: the gateway and the three mock backends in one process, on the embedded
//! defaults (no Redis, no Docker). It prints the URLs, a ready demo token and a curl command.
//!
//! `cargo run -p dev-stack`. Gateway settings come from `GATEWAY_*` variables and an optional
//! `--config PATH`, as for the gateway binary; the listeners default to 127.0.0.1 here because
//! this is a developer's machine, not a server. The production gateway binary holds no mocks.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use gateway::{App, Config, Listeners, Seams};
use mock_backends::{MockBackends, MockConfig, ServiceKind, StartOptions, demo::DEMO_PASSWORD};
use seams::{Clock as _, SystemClock, TokioNet};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,gateway=info".into()),
        )
        .init();
    let config_path = match parse_args() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("{message}\nusage: dev-stack [--config PATH]");
            return ExitCode::from(2);
        }
    };
    match run(config_path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dev-stack: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = Some(PathBuf::from(args.next().ok_or("--config needs a path")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(path)
}

async fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    // One in-memory event bus shared by the mock backends (publishers) and the gateway's hub.
    // Its epoch is new on every start: a new process has lost the last one's history, so a
    // client resuming with an old offset must be told of the gap, not handed new events.
    let bus = events::MemoryBus::new(
        events::memory::MemoryBusConfig::default(),
        format!("dev-stack-{}", clock.now_since_epoch().as_millis()),
    );
    let backends = MockBackends::start_with(
        TokioNet,
        clock.clone(),
        MockConfig::default(),
        StartOptions::with_publisher(Arc::new(bus.clone())),
    )
    .await?;

    let mut config = Config::load(config_path.as_deref())?;
    if config.listen == gateway::config::ListenConfig::default() {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        config.listen.api = local(8000);
        config.listen.websocket = local(8001);
        config.listen.health = local(8002);
        config.listen.metrics = local(8003);
    }
    for (name, kind) in [
        ("auth", ServiceKind::Auth),
        ("project", ServiceKind::Project),
        ("simulation", ServiceKind::Simulation),
    ] {
        if let Some(backend) = config.backends.get_mut(name) {
            backend.address = backends.addr(kind).to_string();
        }
    }
    let seams = Seams {
        net: TokioNet,
        clock,
        seed: 1,
    };
    let listeners = Listeners::bind(&seams.net, &config.listen).await?;
    let api = config.listen.api;
    let health = config.listen.health;
    let metrics = config.listen.metrics;
    let websocket = config.listen.websocket;
    let app = App::from_config(config, &seams, Arc::new(bus.clone()))?;
    let token = backends.auth().issue_token_for("alice")?;

    println!(
        "\
Gateway dev stack is running (Ctrl-C to stop).

  API        http://{api}/api/...
  WebSocket  ws://{websocket}/ws/...
  Health     http://{health}/health/ready
  Metrics    http://{metrics}/metrics
  Mock Auth {auth}, Project {project}, Simulation {simulation} (gRPC)

Demo users: alice, bob — password {DEMO_PASSWORD}
A token for alice (valid 15 minutes):

  export TOKEN={token}

Try:

  curl -s http://{api}/api/auth/profile -H \"Authorization: Bearer $TOKEN\"
  curl -s http://{api}/api/projects -H \"Authorization: Bearer $TOKEN\"
  curl -s -X POST http://{api}/api/auth/login -H 'Content-Type: application/json' \\
       -d '{{\"username\":\"bob\",\"password\":\"{DEMO_PASSWORD}\"}}'

Watch the demo run s-2 live (10 progress events a second), with any WebSocket client, e.g.:

  python3 -m pip install -q websockets
  python3 -c \"import asyncio,os,websockets
async def watch():
    async with websockets.connect('ws://{websocket}/ws/simulation/s-2?access_token='+os.environ['TOKEN']) as ws:
        while True: print(await ws.recv())
asyncio.run(watch())\"
",
        auth = backends.auth_addr(),
        project = backends.project_addr(),
        simulation = backends.simulation_addr(),
    );

    gateway::serve(app, listeners, gateway::server::shutdown_signal()).await?;
    backends.shutdown().await?;
    Ok(())
}
