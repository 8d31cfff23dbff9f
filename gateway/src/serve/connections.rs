//! Connections on the public ports: how many may be open (per process and per client IP), the
//! polite refusal past that, and the per-connection HTTP settings (the request-head timeout
//! against slow loris, the idle timeout). Each accepted connection is served by hyper with the
//! router.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _},
    time::Instant,
};
use tower::ServiceExt as _;

use crate::{
    drain::Drain,
    ops::metrics::ConnectionGauges,
    request::{Peer, error::ApiError, error_code::ErrorCode},
};

/// Limits on open connections, shared by the ports they apply to.
#[derive(Debug)]
pub struct ConnectionLimits {
    total_max: usize,
    per_ip_max: usize,
    /// Open connections, in total and by client IP (entries removed at zero).
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// `gateway_connections_open` and `gateway_connections_refused_total`.
    gauges: ConnectionGauges,
}

/// An admitted connection's place under the limits. Each of the connection's requests carries a
/// clone (as an extension); the place is freed when the last clone drops: when the connection
/// closes or, for one upgraded to a WebSocket, when the WebSocket closes, since the socket is the
/// same descriptor.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Freed when the last clone drops.
    _place: Arc<Place>,
}

/// The counted place behind an [`Admission`].
#[derive(Debug)]
struct Place {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        self.limits.gauges.open.dec();
        if let Some(count) = open.1.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// At most `total_max` connections open at once, and `per_ip_max` from one client IP (0:
    /// no per-IP limit). Both explicit: the binaries derive `http.connections_max` from the
    /// open-file limit ([`crate::serve::open_files`]), the library never reads the host's limits.
    /// What is open and what is refused is recorded in `gauges`.
    pub fn new(total_max: usize, per_ip_max: usize, gauges: ConnectionGauges) -> Arc<Self> {
        Arc::new(Self {
            total_max,
            per_ip_max,
            open: Mutex::new((0, HashMap::new())),
            gauges,
        })
    }

    /// The most connections open at once.
    pub fn total_max(&self) -> usize {
        self.total_max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Admits a connection from `ip`, or `None` when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= self.total_max || (self.per_ip_max > 0 && from_ip >= self.per_ip_max) {
            self.gauges.refused.inc();
            return None;
        }
        open.0 += 1;
        self.gauges.open.inc();
        *open.1.entry(ip).or_insert(0) += 1;
        Some(Admission {
            _place: Arc::new(Place {
                limits: self.clone(),
                ip,
            }),
        })
    }
}

/// The answer to a connection past a limit: 503 in the error shape (no request was read, so
/// `request_id` is empty), then close.
fn refusal() -> Vec<u8> {
    let body = ApiError::unavailable(
        ErrorCode::TooManyConnections,
        "too many open connections; retry later",
    )
    .body("");
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

/// Answers a refused connection, without waiting long for a client that does not read.
pub async fn refuse<S: AsyncWrite + Unpin>(mut stream: S) {
    let written = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("refused connection did not take the answer");
    }
}

/// Requests in flight on one connection, and since when none has been, for the idle timeout.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request in flight ended.
    idle_since_ms: AtomicU64,
}

/// One request in flight; dropping it (the response head is out, or the request was dropped)
/// ends it.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When the connection will have been idle for `timeout`, if nothing is in flight now.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        Some(self.opened + since + timeout)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.opened.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle_for(activity: &Activity, timeout: Duration) {
    loop {
        match activity.idle_deadline(timeout) {
            Some(deadline) if Instant::now() >= deadline => return,
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            // Busy: look again after a timeout's length (a request may run long).
            None => tokio::time::sleep(timeout).await,
        }
    }
}

/// How one connection is served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// For each request head (`http.header_read_timeout_ms`).
    pub header_read: Duration,
    /// With no request in flight (`http.idle_timeout_ms`).
    pub idle: Duration,
}

/// Serves one connection with `router` until it ends, until the drain starts or until it has had no
/// request in flight for the idle timeout (then gracefully: in-flight requests finish, no new
/// ones start). HTTP/1.1 and cleartext HTTP/2, with upgrades (WebSocket); the peer reaches
/// handlers as `ConnectInfo<Peer>`, and the connection's `admission` (on limited ports) as an
/// extension, so an upgraded socket can keep its place. The idle timeout matters for HTTP/2, which hyper would keep
/// open forever; an idle HTTP/1.1 connection meets the head timeout first.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    timeouts: ConnectionTimeouts,
    mut drain: Drain,
    admission: Option<Admission>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let tracked = activity.clone();
    let service = tower::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(Peer(peer)));
        if let Some(admission) = &admission {
            request.extensions_mut().insert(admission.clone());
        }
        let in_flight = tracked.begin();
        let answer = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = answer.await;
            drop(in_flight);
            response
        }
    });
    let service = TowerToHyperService::new(tower::util::MapErr::new(service, |e: Infallible| e));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    // CONNECT, for WebSockets over HTTP/2.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // A change or a dropped sender: stop taking requests, let in-flight ones finish.
        _ = drain.started() => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
        () = idle_for(&activity, timeouts.idle) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissions_count_until_dropped_per_ip_and_in_total() {
        let gauges = ConnectionGauges::default();
        let limits = ConnectionLimits::new(3, 2, gauges.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "two per IP");
        let _third = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "three in total");
        assert_eq!(gauges.open.get(), 3, "the gauge counts what is open");
        assert_eq!(gauges.refused.get(), 2, "and what was refused");
        drop(first);
        assert_eq!(gauges.open.get(), 2);
        assert!(
            limits.admit(b).is_some(),
            "a closed connection frees its place"
        );
        assert_eq!(gauges.open.get(), 2, "the admission above dropped at once");
    }

    #[test]
    fn a_place_is_held_until_the_last_clone_of_its_admission_drops() {
        let limits = ConnectionLimits::new(1, 0, ConnectionGauges::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let connection = limits.admit(ip).unwrap();
        // What an upgraded WebSocket keeps once hyper is done with the connection.
        let upgraded = connection.clone();
        drop(connection);
        assert_eq!(limits.open(), 1);
        assert!(
            limits.admit(ip).is_none(),
            "the WebSocket still holds the place"
        );
        drop(upgraded);
        assert_eq!(limits.open(), 0);
        assert!(limits.admit(ip).is_some());
    }

    #[test]
    fn the_refusal_is_well_formed() {
        let refusal = refusal();
        let text = std::str::from_utf8(&refusal).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
