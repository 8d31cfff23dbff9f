//! Serving: runs the four routers on listeners the caller bound, and shuts down gracefully.
//!
//! Shutdown order: readiness turns false (`draining`), listeners stop accepting, in-flight requests
//! finish, and everything still running when `shutdown.grace_period_ms` ends is dropped.

use std::{future::Future, io, time::Duration};

use axum::Router;
use seams::{Net, NetListener, adapters::AxumListener};
use tokio::sync::watch;

use crate::{app::App, config::ListenConfig};

/// The address of a request's connection peer, in its extensions as `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

impl<L: NetListener>
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, AxumListener<L>>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, AxumListener<L>>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The four listeners, bound by the caller (the caller owns I/O).
#[derive(Debug)]
pub struct Listeners<L> {
    /// HTTP API (8000).
    pub api: L,
    /// WebSocket (8001).
    pub websocket: L,
    /// Health (8002).
    pub health: L,
    /// Metrics (8003).
    pub metrics: L,
}

impl<L: NetListener> Listeners<L> {
    /// Binds the four listeners at the configured addresses through `net`.
    pub async fn bind<N: Net<Listener = L>>(net: &N, listen: &ListenConfig) -> io::Result<Self> {
        Ok(Self {
            api: net.bind(listen.api).await?,
            websocket: net.bind(listen.websocket).await?,
            health: net.bind(listen.health).await?,
            metrics: net.bind(listen.metrics).await?,
        })
    }
}

/// Resolves when the process receives SIGINT or SIGTERM: the shutdown signal of the binaries.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Serves until `shutdown` resolves, then drains within the grace period.
pub async fn serve<L: NetListener>(
    app: App,
    listeners: Listeners<L>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let (stop_sender, stop) = watch::channel(false);
    let health_checks = app.spawn_health_checks(stop.clone());
    let revocations = app.spawn_revocation_listener(stop.clone());
    let servers = [
        (listeners.api, app.api_router()),
        (listeners.websocket, app.websocket_router()),
        (listeners.health, app.health_router()),
        (listeners.metrics, app.metrics_router()),
    ]
    .into_iter()
    .map(|(listener, router)| tokio::spawn(serve_one(listener, router, stop.clone())))
    .collect::<Vec<_>>();

    shutdown.await;
    tracing::info!("shutdown requested; draining");
    app.begin_shutdown();
    // Nothing is listening for the value; only the change matters.
    let _ = stop_sender.send(true);
    let grace = Duration::from_millis(app.config().shutdown.grace_period_ms);
    let drained = tokio::time::timeout(grace, futures::future::join_all(servers)).await;
    health_checks.abort();
    revocations.abort();
    match drained {
        Ok(_) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            grace_period_ms = grace.as_millis() as u64,
            "grace period over; dropping remaining connections"
        ),
    }
    Ok(())
}

async fn serve_one<L: NetListener>(listener: L, router: Router, mut stop: watch::Receiver<bool>) {
    // The peer address travels with each request (`ConnectInfo`): the per-IP rate limit reads it.
    let service = router.into_make_service_with_connect_info::<Peer>();
    let result = axum::serve(AxumListener(listener), service)
        .with_graceful_shutdown(async move {
            // Either a change or a dropped sender means stop.
            let _ = stop.changed().await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "server stopped with an error");
    }
}
