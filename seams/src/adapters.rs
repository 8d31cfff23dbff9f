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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::net::{Net, NetListener};

/// How long to wait after a failed `accept` (for example, out of file descriptors) before trying
/// again, so a persistent error does not spin a core.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Adapts a [`NetListener`] to `axum::serve`.
#[derive(Debug)]
pub struct AxumListener<L>(pub L);

impl<L: NetListener> axum::serve::Listener for AxumListener<L> {
    type Io = L::Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
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
/// Accept errors are logged and retried after a short pause rather than ending the server.
pub fn tonic_incoming<L: NetListener>(
    listener: L,
) -> impl Stream<Item = io::Result<IncomingConnection<L::Stream>>> + Send + 'static {
    futures::stream::unfold(listener, |mut listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    return Some((Ok(IncomingConnection { stream, peer }), listener));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
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
