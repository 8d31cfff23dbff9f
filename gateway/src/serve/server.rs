//! The listeners: binding the four ports, and the accept loop of one port (connection caps,
//! TLS handshake, one task per connection) until the stop signal, then its graceful drain.

use std::{io, sync::Arc};

use axum::Router;
use seams::{Net, NetListener, adapters::AxumListener};

use crate::drain::Drain;
use crate::serve::{
    ListenConfig,
    connections::{self, ConnectionLimits, ConnectionTimeouts},
};

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

/// How one port serves its connections.
pub struct Port {
    /// Caps on open connections (the public ports share one).
    pub limits: Option<Arc<ConnectionLimits>>,
    /// TLS termination, when configured (public ports only).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Time for a request head (and for the TLS handshake), and idle time.
    pub timeouts: ConnectionTimeouts,
}

/// Accepts connections until the drain starts, serves each on its own task (refusing those past
/// the port's limits), then waits for the connections to finish gracefully.
pub async fn serve_port<L: NetListener>(listener: L, router: Router, port: Port, mut drain: Drain) {
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
            _ = drain.started() => break,
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
        let (router, drain) = (router.clone(), drain.clone());
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => {
                    connections::serve_connection(stream, peer, router, timeouts, drain, admission)
                        .await
                }
                Some(acceptor) => {
                    // The handshake gets the head's time: a slow one is a slow loris too.
                    let handshake =
                        tokio::time::timeout(timeouts.header_read, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            connections::serve_connection(
                                stream, peer, router, timeouts, drain, admission,
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
