//! Runs the mock backends on real sockets: parses flags (and an optional TOML file), sets up
//! tracing, starts the chosen backends, prints their addresses, and waits for Ctrl-C or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use mock_backends::{
    FaultSettings, JwtAlgorithm, MockBackends, MockConfig, RunningBackends, RunningService,
    ServiceKind,
};
use seams::{SystemClock, TokioNet};

/// Mock Auth, Project and Simulation gRPC backends with fault knobs.
///
/// Settings come from the defaults, then `--config`, then `MOCK_BACKENDS_*` environment
/// variables (nested with `__`, for example `MOCK_BACKENDS_AUTH__TOKEN_TTL_SECONDS=60`), then
/// these flags. Demo users: alice (user, admin) and bob (user), password `demo-password`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Which backends to run in this process.
    #[arg(long, value_enum, default_value_t = Which::All)]
    service: Which,
    /// A TOML file with any `MockConfig` fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Auth's listen address [default: 127.0.0.1:9000].
    #[arg(long)]
    auth_addr: Option<SocketAddr>,
    /// Project's listen address [default: 127.0.0.1:10000].
    #[arg(long)]
    project_addr: Option<SocketAddr>,
    /// Simulation's listen address [default: 127.0.0.1:11000].
    #[arg(long)]
    simulation_addr: Option<SocketAddr>,
    /// Where Project and Simulation reach Auth, `host:port` [default: the Auth started here,
    /// else --auth-addr].
    #[arg(long)]
    upstream_auth_addr: Option<String>,
    /// Seed of every random choice (keys, tokens, injected errors) [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Token signing algorithm [default: eddsa].
    #[arg(long, value_enum)]
    jwt_algorithm: Option<AlgorithmArg>,
    /// The HS256 secret (at least 32 bytes).
    #[arg(long, env = "MOCK_BACKENDS_HS256_SECRET", hide_env_values = true)]
    hs256_secret: Option<String>,
    /// Latency added to every call of the selected backends, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Fraction of calls (0.0 to 1.0) the selected backends answer UNAVAILABLE.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Start with the selected backends hung: calls are never answered.
    #[arg(long)]
    hang: bool,
    /// Start with the selected backends down: every connection is refused.
    #[arg(long)]
    down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Auth,
    Project,
    Simulation,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Eddsa,
    Hs256,
}

impl Cli {
    /// The backends selected, in start order.
    fn services(&self) -> Vec<ServiceKind> {
        match self.service {
            Which::All => ServiceKind::ALL.to_vec(),
            Which::Auth => vec![ServiceKind::Auth],
            Which::Project => vec![ServiceKind::Project],
            Which::Simulation => vec![ServiceKind::Simulation],
        }
    }

    fn into_config(self) -> anyhow::Result<MockConfig> {
        let mut figment = Figment::from(Serialized::defaults(MockConfig::default()));
        if let Some(path) = &self.config {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("MOCK_BACKENDS_")
                .split("__")
                .ignore(&["hs256_secret"]),
        );
        let mut config: MockConfig = figment.extract().context("reading configuration")?;

        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        for (kind, addr) in [
            (ServiceKind::Auth, self.auth_addr),
            (ServiceKind::Project, self.project_addr),
            (ServiceKind::Simulation, self.simulation_addr),
        ] {
            if let Some(addr) = addr {
                *config.addr_mut(kind) = addr;
            }
        }
        if let Some(addr) = &self.upstream_auth_addr {
            config.upstream.auth_addr = Some(addr.clone());
        }
        if let Some(algorithm) = self.jwt_algorithm {
            config.auth.jwt_algorithm = match algorithm {
                AlgorithmArg::Eddsa => JwtAlgorithm::EdDsa,
                AlgorithmArg::Hs256 => JwtAlgorithm::Hs256,
            };
        }
        if let Some(secret) = &self.hs256_secret {
            config.auth.hs256_secret = secret.clone();
        }
        for kind in self.services() {
            let faults: &mut FaultSettings = config.faults_mut(kind);
            if let Some(latency_ms) = self.latency_ms {
                faults.latency_ms = latency_ms;
            }
            if let Some(error_rate) = self.error_rate {
                faults.error_rate = error_rate;
            }
            faults.hang |= self.hang;
            faults.down |= self.down;
        }
        config.validate()?;
        Ok(config)
    }
}

/// What is running: all three together, or one alone.
enum Running {
    All(RunningBackends),
    One(RunningService),
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr so stdout carries only the bound addresses, for scripts to read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mock-backends: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let which = cli.service;
    let config = cli.into_config()?;
    let clock = Arc::new(SystemClock);
    let running = match which {
        Which::All => Running::All(MockBackends::start(TokioNet, clock, config).await?),
        one => {
            let kind = match one {
                Which::Auth => ServiceKind::Auth,
                Which::Project => ServiceKind::Project,
                _ => ServiceKind::Simulation,
            };
            Running::One(MockBackends::start_service(TokioNet, clock, config, kind).await?)
        }
    };
    match &running {
        Running::All(backends) => {
            for kind in ServiceKind::ALL {
                println!("{kind} listening on {}", backends.addr(kind));
            }
        }
        Running::One(service) => println!("{} listening on {}", service.kind(), service.addr()),
    }

    shutdown_signal().await?;
    match running {
        Running::All(backends) => backends.shutdown().await?,
        Running::One(service) => service.shutdown().await?,
    }
    Ok(())
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
