//! `bench-peer`: the load mix's four routes written by hand, used only to measure the gateway
//! against (`ci/bench-peer.sh`). Parses the flags, connects the backends lazily, binds the
//! listener and serves until Ctrl-C or SIGTERM.

use std::{net::SocketAddr, process::ExitCode};

use bench_peer::{Backends, Peer};
use clap::Parser;

/// The load mix's routes written by hand, for measurement against the gateway only.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address of the HTTP listener (HTTP/1.1 and HTTP/2 with prior knowledge).
    #[arg(long, default_value = "127.0.0.1:8010")]
    listen: SocketAddr,
    /// The Auth backend, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    auth: String,
    /// The Project backend, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:10000")]
    project: String,
    /// The Simulation backend, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:11000")]
    simulation: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let backends = match Backends::connect_lazy(&cli.auth, &cli.project, &cli.simulation) {
        Ok(backends) => backends,
        Err(error) => {
            eprintln!("bench-peer: invalid backend URL: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bench-peer: cannot listen on {}: {error}", cli.listen);
            return ExitCode::from(1);
        }
    };
    println!("bench-peer listening on {}", cli.listen);
    match bench_peer::serve(listener, Peer::new(backends), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-peer: {error}");
            ExitCode::from(1)
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
