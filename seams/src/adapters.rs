//! The three bridges between [`Net`] and the servers and clients built on it. Each is written once
//! here so the gateway, the mock backends and the simulation share them.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};
use tonic::transport::server::Connected;

use crate::net::{Net, NetListener};

/// The first pause after a failed `accept`; it doubles while failures go on.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// The longest pause between two `accept` attempts that fail.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// A listener logs a failing `accept` at most once per this interval.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Paces the retries after failed `accept`s, and their log lines.
///
/// Out of file descriptors (`EMFILE`, `ENFILE`), every `accept` fails at once until one is
/// freed: retrying at once spins a core, and logging each attempt writes thousands of lines a
/// minute while the process is at its weakest. So the pause doubles from 10 ms to 1 s while the
/// failures go on, a failure is logged at most once per 10 s (with how many were not), and the
/// recovery is logged once. A failure that concerns only the connection being accepted (reset or
/// aborted by the client before it was taken) is retried at once and logged at debug level.
#[derive(Debug)]
pub struct AcceptErrors {
    /// The pause after the next failure.
    pause: Duration,
    /// When a failure was last logged; `None` while accepting works.
    last_logged: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u64,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self {
            pause: ACCEPT_PAUSE_MIN,
            last_logged: None,
            unlogged: 0,
        }
    }
}

impl AcceptErrors {
    /// After a failed `accept`: logs it (paced) and waits before the next attempt.
    pub async fn failed(&mut self, error: &io::Error) {
        use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused
        ) {
            tracing::debug!(%error, "a connection ended before it was accepted");
            return;
        }
        let now = Instant::now();
        match self.last_logged {
            Some(logged) if now.duration_since(logged) < ACCEPT_LOG_INTERVAL => self.unlogged += 1,
            _ => {
                tracing::warn!(
                    %error,
                    pause_ms = self.pause.as_millis() as u64,
                    failures_not_logged = self.unlogged,
                    "accept failed; retrying after a pause (logged at most every 10 s)"
                );
                self.last_logged = Some(now);
                self.unlogged = 0;
            }
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
    }

    /// After a successful `accept`: logs the recovery once, and the next failure starts again
    /// from the shortest pause.
    pub fn succeeded(&mut self) {
        if self.last_logged.take().is_some() {
            tracing::info!(
                failures_not_logged = self.unlogged,
                "accepting connections again"
            );
        }
        self.pause = ACCEPT_PAUSE_MIN;
        self.unlogged = 0;
    }
}

/// Adapts a [`NetListener`] to `axum::serve`; failed accepts are retried, paced by
/// [`AcceptErrors`].
#[derive(Debug)]
pub struct AxumListener<L> {
    listener: L,
    errors: AcceptErrors,
}

impl<L> AxumListener<L> {
    /// Wraps `listener`.
    pub fn new(listener: L) -> Self {
        Self {
            listener,
            errors: AcceptErrors::default(),
        }
    }
}

impl<L: NetListener> axum::serve::Listener for AxumListener<L> {
    type Io = L::Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.errors.succeeded();
                    return accepted;
                }
                Err(error) => self.errors.failed(&error).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A server-side connection with its peer address, as tonic's `serve_with_incoming` expects.
#[derive(Debug)]
pub struct IncomingConnection<S> {
    stream: S,
    peer: SocketAddr,
}

/// What a tonic handler can learn about its peer through `Request::extensions`.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl<S> Connected for IncomingConnection<S> {
    type ConnectInfo = PeerAddr;

    fn connect_info(&self) -> Self::ConnectInfo {
        PeerAddr(self.peer)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IncomingConnection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IncomingConnection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Turns a listener into the stream of connections tonic's `serve_with_incoming` takes.
/// Failed accepts are retried, paced by [`AcceptErrors`], rather than ending the server.
pub fn tonic_incoming<L: NetListener>(
    listener: L,
) -> impl Stream<Item = io::Result<IncomingConnection<L::Stream>>> + Send + 'static {
    let state = (listener, AcceptErrors::default());
    futures::stream::unfold(state, |(mut listener, mut errors)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    errors.succeeded();
                    let connection = IncomingConnection { stream, peer };
                    return Some((Ok(connection), (listener, errors)));
                }
                Err(error) => errors.failed(&error).await,
            }
        }
    })
}

/// A tonic connector (`Endpoint::connect_with_connector`) that dials through a [`Net`].
/// The URI's authority (`host:port`) is the address dialled.
#[derive(Debug, Clone)]
pub struct NetConnector<N>(pub N);

impl<N: Net> tower::Service<http::Uri> for NetConnector<N> {
    type Response = TokioIo<N::Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let net = self.0.clone();
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "backend URI has no host:port")
            })?;
            let stream = net.connect(authority.as_str()).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_of_files() -> io::Error {
        // EMFILE, as `accept` returns it when the process has no descriptor left.
        io::Error::from_raw_os_error(24)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_up_to_a_second_and_are_logged_once_per_interval() {
        let mut errors = AcceptErrors::default();
        let started = Instant::now();
        let mut lines = 0;
        for _ in 0..200 {
            let before = errors.last_logged;
            errors.failed(&out_of_files()).await;
            if errors.last_logged != before {
                lines += 1;
            }
        }
        // 10, 20, ... 640 ms, then 1 s a time: over three minutes, not 200 × 10 ms.
        let waited = started.elapsed();
        assert!(waited > Duration::from_secs(190), "{waited:?}");
        assert_eq!(errors.pause, ACCEPT_PAUSE_MAX);
        // One line per 10 s, not one per failure.
        assert!((19..=21).contains(&lines), "{lines} lines in {waited:?}");

        errors.succeeded();
        assert_eq!(errors.pause, ACCEPT_PAUSE_MIN);
        assert!(errors.last_logged.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_reset_before_accept_is_retried_at_once() {
        let mut errors = AcceptErrors::default();
        let started = Instant::now();
        errors
            .failed(&io::Error::from(io::ErrorKind::ConnectionAborted))
            .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(errors.last_logged.is_none());
    }
}
