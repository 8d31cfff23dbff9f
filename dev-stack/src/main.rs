//! The dev stack: the gateway and the three mock backends in one process, on the embedded
//! defaults (no Redis, no Docker). It prints the URLs, a ready demo token and a curl command.
//!
//! `cargo run -p dev-stack`. Gateway settings come from `GATEWAY_*` variables and an optional
//! `--config PATH`, as for the gateway binary. `--redis HOST:PORT` puts the event bus on Redis
//! instead (the mocks publish through their own Redis bus, as separate backends would), which is
//! how the latency figures in `docs/benchmarks.md` are taken; the listeners default to 127.0.0.1 here because
//! this is a developer's machine, not a server. The production gateway binary holds no mocks.

// mimalloc by default: 5 to 8 % more requests a second than glibc's malloc at the same memory
// per WebSocket connection (`ci/bench-alloc.sh`, docs/benchmarks.md "Allocator");
// `--no-default-features` builds with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\nusage: dev-stack [--config PATH] [--redis HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dev-stack: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// The command line.
#[derive(Debug, Default)]
struct Args {
    config_path: Option<PathBuf>,
    redis: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => {
                parsed.config_path =
                    Some(PathBuf::from(args.next().ok_or("--config needs a path")?))
            }
            "--redis" => parsed.redis = Some(args.next().ok_or("--redis needs HOST:PORT")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    let mut config = Config::load(args.config_path.as_deref())?;
    gateway::serve::open_files::resolve_connections_max(&mut config.http)?;
    // The seed of this run: epochs and jitter derive from it, and it differs per start.
    let seed = clock.now_since_epoch().as_nanos() as u64;
    let seams = Seams {
        net: TokioNet,
        clock: clock.clone(),
        seed,
    };
    // In memory: one bus shared by the mock backends (publishers) and the gateway's hub; its
    // epoch is new on every start, since a new process has lost the last one's history. On
    // Redis: the gateway's bus from its config, and the mocks' own bus, as a separate backend
    // process would have.
    let (gateway_bus, publisher): (Arc<dyn events::EventBus>, Arc<dyn events::Publisher>) =
        match &args.redis {
            None => {
                let bus = events::MemoryBus::new(
                    events::memory::MemoryBusConfig::default(),
                    format!("dev-stack-{seed:016x}"),
                );
                (Arc::new(bus.clone()), Arc::new(bus))
            }
            Some(address) => {
                config.event_bus.kind = gateway::realtime::EventBusKind::Redis;
                config.event_bus.redis.address = address.clone();
                let mocks = events::RedisBusConfig {
                    rng_seed: !seed,
                    ..config.event_bus.redis.clone()
                };
                (
                    gateway::app::bus_from_config(&config.event_bus, &seams)?,
                    Arc::new(events::RedisBus::new(TokioNet, mocks)?),
                )
            }
        };
    let backends = MockBackends::start_with(
        TokioNet,
        clock.clone(),
        MockConfig::default(),
        StartOptions::with_publisher(publisher),
    )
    .await?;

    if config.listen == gateway::serve::ListenConfig::default() {
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
    if config.routes.aggregates.is_empty() {
        // The example aggregate of docs/resilience.md, so the dev stack shows one.
        let parts = [
            ("profile", "/api/auth/profile"),
            ("projects", "/api/projects?page_size=5"),
            ("running", "/api/simulations?state=SIMULATION_STATE_RUNNING"),
        ];
        config.routes.aggregates.insert(
            "/api/dashboard".to_owned(),
            parts
                .into_iter()
                .map(|(name, target)| (name.to_owned(), target.to_owned()))
                .collect(),
        );
    }
    let listeners = Listeners::bind(&seams.net, &config.listen).await?;
    // Where the listeners really are (a configured port 0 is chosen by the kernel).
    let bound = |listener| seams::NetListener::local_addr(listener);
    let (api, websocket) = (bound(&listeners.api)?, bound(&listeners.websocket)?);
    let (health, metrics) = (bound(&listeners.health)?, bound(&listeners.metrics)?);
    // The watcher's defaults fit the default listener; elsewhere it needs the URL.
    let watch_url = if websocket == SocketAddr::from(([127, 0, 0, 1], 8001)) {
        String::new()
    } else {
        format!(" --url ws://{websocket}")
    };
    let app = App::from_config(config, &seams, gateway_bus)?;
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
  curl -s http://{api}/api/dashboard -H \"Authorization: Bearer $TOKEN\"
  curl -s -X POST http://{api}/api/auth/login -H 'Content-Type: application/json' \\
       -d '{{\"username\":\"bob\",\"password\":\"{DEMO_PASSWORD}\"}}'

Watch the demo run s-2 live (10 progress events a second; it reads $TOKEN; --help for more):

  cargo run -p dev-stack --bin watch --{watch_url} /ws/simulation/s-2
",
        auth = backends.auth_addr(),
        project = backends.project_addr(),
        simulation = backends.simulation_addr(),
    );

    gateway::serve(app, listeners, gateway::serve::server::shutdown_signal()).await?;
    backends.shutdown().await?;
    Ok(())
}
