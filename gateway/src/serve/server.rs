//! Serving: runs the four routers on listeners the caller bound, and shuts down gracefully.
//!
//! Shutdown order: readiness turns false (`draining`), listeners stop accepting, in-flight requests
//! finish, and everything still running when `shutdown.grace_period_ms` ends is dropped.

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::Router;
use seams::{Net, NetListener, adapters::AxumListener};
use tokio::sync::watch;

use crate::{
    app::App,
    config::ListenConfig,
    connections::{self, ConnectionLimits, ConnectionTimeouts},
};

/// The address of a request's connection peer, in its extensions as `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

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
    /// Binds the four listeners at the configured addresses through `net`; the API and
    /// WebSocket ports shared with other processes when `listen.reuse_port`.
    pub async fn bind<N: Net<Listener = L>>(net: &N, listen: &ListenConfig) -> io::Result<Self> {
        let public = |addr| async move {
            if listen.reuse_port {
                net.bind_shared(addr).await
            } else {
                net.bind(addr).await
            }
        };
        Ok(Self {
            api: public(listen.api).await?,
            websocket: public(listen.websocket).await?,
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
///
/// `http.connections_max` must be set: 0 ("derive it from the open-file limit") is for the
/// binaries to resolve first ([`crate::open_files::resolve_connections_max`]), since the library
/// never reads the host's limits.
pub async fn serve<L: NetListener>(
    app: App,
    listeners: Listeners<L>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let http = &app.config().http;
    if http.connections_max == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "http.connections_max is 0 (derive it from the open-file limit): resolve it with \
             gateway::open_files::resolve_connections_max before serving, or set it",
        ));
    }
    let (stop_sender, stop) = watch::channel(false);
    let health_checks = app.spawn_health_checks(stop.clone());
    let revocations = app.spawn_revocation_listener(stop.clone());
    let rate_limit_preparation = app.spawn_rate_limit_preparation(stop.clone());
    let timeouts = ConnectionTimeouts {
        header_read: Duration::from_millis(http.header_read_timeout_ms),
        idle: Duration::from_millis(http.idle_timeout_ms),
    };
    // One count for both public ports; the health and metrics ports are not limited (probes and
    // scrapes must get through when clients have taken every place).
    let public = Some(ConnectionLimits::new(
        http.connections_max,
        http.connections_per_ip_max,
    ));
    let tls = app.tls().cloned();
    let servers = [
        (listeners.api, app.api_router(), public.clone(), tls.clone()),
        (listeners.websocket, app.websocket_router(), public, tls),
        (listeners.health, app.health_router(), None, None),
        (listeners.metrics, app.metrics_router(), None, None),
    ]
    .into_iter()
    .map(|(listener, router, limits, tls)| {
        let port = Port {
            limits,
            tls,
            timeouts,
        };
        tokio::spawn(serve_one(listener, router, port, stop.clone()))
    })
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
    rate_limit_preparation.abort();
    match drained {
        Ok(_) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            grace_period_ms = grace.as_millis() as u64,
            "grace period over; dropping remaining connections"
        ),
    }
    Ok(())
}

/// How one port serves its connections.
struct Port {
    /// Caps on open connections (the public ports share one).
    limits: Option<Arc<ConnectionLimits>>,
    /// TLS termination, when configured (public ports only).
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Time for a request head (and for the TLS handshake), and idle time.
    timeouts: ConnectionTimeouts,
}

/// Accepts connections until `stop` changes, serves each on its own task (refusing those past
/// the port's limits), then waits for the connections to finish gracefully.
async fn serve_one<L: NetListener>(
    listener: L,
    router: Router,
    port: Port,
    mut stop: watch::Receiver<bool>,
) {
    let Port {
        limits,
        tls,
        timeouts,
    } = port;
    let mut listener = AxumListener::new(listener);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            // Either a change or a dropped sender means stop.
            _ = stop.changed() => break,
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
        };
        let admission = match &limits {
            Some(limits) => match limits.admit(peer.ip()) {
                Some(admission) => Some(admission),
                None => {
                    tracing::debug!(%peer, "connection refused: too many open connections");
                    connections.spawn(connections::refuse(stream));
                    continue;
                }
            },
            None => None,
        };
        // The connection keeps its place until it closes, and an upgraded WebSocket until the
        // WebSocket closes (it holds a clone of the admission).
        let (router, stop) = (router.clone(), stop.clone());
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => {
                    connections::serve_connection(stream, peer, router, timeouts, stop, admission)
                        .await
                }
                Some(acceptor) => {
                    // The handshake gets the head's time: a slow one is a slow loris too.
                    let handshake =
                        tokio::time::timeout(timeouts.header_read, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            connections::serve_connection(
                                stream, peer, router, timeouts, stop, admission,
                            )
                            .await
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}
