//! The gate every accepted connection passes through. It makes two things real transport failures
//! rather than gRPC statuses: the `down` fault (existing connections are reset, new ones closed as
//! soon as they are accepted) and the end of the shutdown grace period (every connection still
//! open is reset, so shutdown is bounded even with calls in flight).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};
use seams::NetListener;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
};

use crate::faults::Faults;

/// A listener whose connections close when the backend is down or the server is killed.
#[derive(Debug)]
pub struct GatedListener<L> {
    inner: L,
    faults: Faults,
    killed: watch::Receiver<bool>,
}

impl<L> GatedListener<L> {
    /// Gates `inner` by `faults.down` and by `killed` (which the server sets when the shutdown
    /// grace period runs out).
    pub fn new(inner: L, faults: Faults, killed: watch::Receiver<bool>) -> Self {
        Self {
            inner,
            faults,
            killed,
        }
    }
}

impl<L: NetListener> NetListener for GatedListener<L> {
    type Stream = GatedStream<L::Stream>;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        loop {
            let (stream, peer) = self.inner.accept().await?;
            if self.faults.is_down() {
                // Dropping the stream closes it: the client sees its connection fail during the
                // HTTP/2 handshake, as it would against a crashed process with a live kernel.
                tracing::debug!(%peer, "backend is down; closing new connection");
                drop(stream);
                continue;
            }
            let stream = GatedStream::new(stream, self.faults.clone(), self.killed.clone());
            return Ok((stream, peer));
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write with `ConnectionReset` once its backend is down
/// or its server is killed. A read waiting for data is woken when that happens, so idle
/// connections close at once rather than at their next request.
pub struct GatedStream<S> {
    inner: S,
    faults: Faults,
    killed: watch::Receiver<bool>,
    /// Completes when `down` or `killed` is set (or the server that owns `killed` is gone).
    closing: BoxFuture<'static, ()>,
}

impl<S> std::fmt::Debug for GatedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedStream").finish_non_exhaustive()
    }
}

impl<S> GatedStream<S> {
    fn new(inner: S, faults: Faults, killed: watch::Receiver<bool>) -> Self {
        let closing = closing_signal(&faults, &killed);
        Self {
            inner,
            faults,
            killed,
            closing,
        }
    }

    fn must_close(&self) -> bool {
        // A killed channel whose sender is gone means the server is gone: nothing is left to
        // serve this connection either.
        self.faults.is_down() || *self.killed.borrow() || self.killed.has_changed().is_err()
    }

    /// Polls the close signal; `true` when the connection must close now.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> bool {
        while self.closing.poll_unpin(cx).is_ready() {
            if self.must_close() {
                return true;
            }
            // `down` was set and cleared again before this connection looked: wait afresh.
            self.closing = closing_signal(&self.faults, &self.killed);
        }
        false
    }
}

/// A future that completes when `down` or `killed` is set, or either sender is dropped.
fn closing_signal(faults: &Faults, killed: &watch::Receiver<bool>) -> BoxFuture<'static, ()> {
    let mut down = faults.subscribe();
    let mut kill = killed.clone();
    async move {
        tokio::select! {
            biased;
            _ = kill.wait_for(|killed| *killed) => {}
            _ = down.wait_for(|settings| settings.down) => {}
        }
    }
    .boxed()
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "mock backend connection reset",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for GatedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.must_close() {
            return Poll::Ready(Err(reset()));
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                // Also register for the close signal, so a read parked on an idle connection
                // wakes and fails when the backend goes down.
                if this.poll_closing(cx) {
                    return Poll::Ready(Err(reset()));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.must_close() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.must_close() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;
    use crate::{FaultSettings, ServiceKind};

    #[tokio::test]
    async fn going_down_wakes_an_idle_read_with_connection_reset() {
        let faults = Faults::seeded(FaultSettings::default(), 0, ServiceKind::Auth).unwrap();
        let (_kill, killed) = watch::channel(false);
        let (client, server) = duplex(64);
        let mut gated = GatedStream::new(server, faults.clone(), killed);
        let read = tokio::spawn(async move {
            let mut buf = [0_u8; 8];
            gated.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        faults.set_down(true);
        let error = read.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        drop(client);
    }

    #[tokio::test]
    async fn killed_connections_fail_writes() {
        let faults = Faults::seeded(FaultSettings::default(), 0, ServiceKind::Auth).unwrap();
        let (kill, killed) = watch::channel(false);
        let (_client, server) = duplex(64);
        let mut gated = GatedStream::new(server, faults, killed);
        gated.write_all(b"ok").await.unwrap();
        kill.send_replace(true);
        let error = gated.write_all(b"no").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }
}
