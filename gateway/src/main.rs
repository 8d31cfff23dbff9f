//! The gateway binary: reads config, sets up logging, binds the listeners and serves until
//! SIGINT or SIGTERM.

// mimalloc by default: 5 to 8 % more requests a second than glibc's malloc at the same memory
// per WebSocket connection (`ci/bench-alloc.sh`, docs/benchmarks.md "Allocator");
// `--no-default-features` builds with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use gateway::{App, Config, Listeners, Seams};
use seams::{Net, SystemClock, TokioNet};

fn usage() -> &'static str {
    "usage: gateway [--config PATH]\n\
     Reads PATH (or $GATEWAY_CONFIG) as TOML, then GATEWAY_* environment overrides.\n\
     See docs/configuration.md."
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path = std::env::var_os("GATEWAY_CONFIG").map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(path) => config_path = Some(PathBuf::from(path)),
                None => {
                    eprintln!("--config needs a path\n{}", usage());
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{}", usage());
                return ExitCode::from(2);
            }
        }
    }
    // The configuration says how to log, so it is read before the logger exists: its errors
    // go to stderr as one line either way.
    let config = match Config::load(config_path.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(1);
        }
    };
    gateway::ops::logs::init(&config.log);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    gateway::serve::open_files::resolve_connections_max(&mut config.http)?;
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: process_seed(),
    };
    let listeners = Listeners::bind(&seams.net, &config.listen).await?;
    let bound = |listener: &<TokioNet as Net>::Listener| {
        seams::NetListener::local_addr(listener)
            .map(|addr| addr.to_string())
            .unwrap_or_else(|_| "?".to_owned())
    };
    tracing::info!(
        api = %bound(&listeners.api),
        websocket = %bound(&listeners.websocket),
        health = %bound(&listeners.health),
        metrics = %bound(&listeners.metrics),
        allocator = if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" },
        "gateway listening"
    );
    let bus = gateway::app::bus_from_config(&config.event_bus, &seams)?;
    let app = App::from_config(config, &seams, bus)?;
    gateway::serve(app, listeners, gateway::serve::server::shutdown_signal()).await?;
    Ok(())
}

/// A seed for this process's RNG: std's per-process random hasher keys come from the OS.
fn process_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
