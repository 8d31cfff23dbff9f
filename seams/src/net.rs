//! The network seam: every listener and every outbound connection goes through [`Net`].

use std::{future::Future, io, net::SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

/// A network the code can bind on and dial out of: real sockets ([`TokioNet`]) or a simulated
/// network (turmoil, in `sim/`).
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A bound listener that yields [`Net::Stream`]s.
    type Listener: NetListener<Stream = Self::Stream>;

    /// Binds a listener on `addr` (port 0 picks a free port).
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Binds a listener on `addr` that other processes may bind too (`SO_REUSEPORT`): the
    /// kernel spreads incoming connections over them. A network that cannot share a port binds
    /// it alone, as [`Net::bind`].
    fn bind_shared(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        self.bind(addr)
    }

    /// Opens a connection to `addr`, written `host:port` (host names are resolved by the network).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// A bound listener.
pub trait NetListener: Send + Sync + 'static {
    /// The stream each accepted connection yields.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection and returns it with the peer's address.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The real network, through tokio's TCP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        listen(addr, false)
    }

    async fn bind_shared(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        listen(addr, true)
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        // Requests and gRPC frames are small and latency-bound: never wait to coalesce them.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// The pending-connection queue of each listener: bursts of thousands of connections (load
/// campaigns, a fleet of clients reconnecting) should wait in the queue, not be refused. The
/// kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4_096;

/// A TCP listener on `addr`, with `SO_REUSEADDR` (as `TcpListener::bind`) and, when
/// `reuse_port`, `SO_REUSEPORT`.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        #[cfg(not(unix))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "sharing a port (SO_REUSEPORT) needs a Unix",
        ));
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl NetListener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shared_port_takes_a_second_listener_and_a_plain_one_does_not() {
        let first = TokioNet
            .bind_shared("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = first.local_addr().unwrap();
        let second = TokioNet.bind_shared(port).await;
        assert!(second.is_ok(), "{second:?}");
        let plain = TokioNet.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let error = TokioNet
            .bind(plain.local_addr().unwrap())
            .await
            .expect_err("a plain port is bound once");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }
}
