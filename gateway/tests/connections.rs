//! Connections on a served gateway: a slow request head (slow loris) and an idle keep-alive
//! connection are closed after the head timeout; past the per-IP or total connection limit a new
//! connection gets a 503 in the error shape and is closed, and a closed connection frees its place.
//! A WebSocket holds its place until it closes, and the health and metrics ports answer at the
//! cap. An idle HTTP/2 connection is closed after the idle timeout. With `listen.reuse_port`, two
//! instances serve one port.

mod support;

use std::time::Duration;

use gateway::Config;
use support::{Served, Stack, serve_on_loopback};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

async fn serve(adjust: impl FnOnce(&mut Config)) -> (Stack, Served) {
    let stack = Stack::start_with(|_| {}, adjust).await;
    let served = serve_on_loopback(stack.app.clone()).await;
    (stack, served)
}

/// Reads until the server closes; panics if it does not within `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

const GET: &str = "GET /api/projects/templates HTTP/1.1\r\nHost: gw\r\n";

/// Sends a whole request on `stream` and reads its answer (401: no token), leaving the
/// connection open. Once answered, the connection has certainly been accepted and counted.
async fn answered(stream: &mut TcpStream) {
    stream
        .write_all(format!("{GET}\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|length| length.trim().parse::<usize>().ok())
            .unwrap_or(0);
        body.len() >= length
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !complete(&answer) {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before the answer");
            answer.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("an answer within 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
}

#[tokio::test]
async fn a_slow_head_and_an_idle_keep_alive_connection_are_closed() {
    let (_stack, served) = serve(|config| config.http.header_read_timeout_ms = 300).await;
    let api = served.api;

    // Half a head, then nothing: closed without an answer.
    let mut slow = TcpStream::connect(api).await.unwrap();
    slow.write_all(GET.as_bytes()).await.unwrap();
    let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(!answer.contains(" 200 "), "{answer}");

    // A whole request is answered; the connection, kept alive, is closed once idle that long.
    let mut idle = TcpStream::connect(api).await.unwrap();
    idle.write_all(format!("{GET}\r\n").as_bytes())
        .await
        .unwrap();
    let answer = until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
}

async fn refused(stream: &mut TcpStream) -> bool {
    let answer = until_closed(stream, Duration::from_secs(5)).await;
    if answer.is_empty() {
        return false;
    }
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );
    true
}

#[tokio::test]
async fn past_the_per_ip_limit_a_connection_is_refused_politely() {
    let (_stack, served) = serve(|config| {
        config.http.connections_per_ip_max = 2;
        // Long enough that the held connections stay open during the test.
        config.http.header_read_timeout_ms = 30_000;
    })
    .await;
    let api = served.api;
    let mut first = TcpStream::connect(api).await.unwrap();
    let mut second = TcpStream::connect(api).await.unwrap();
    answered(&mut first).await;
    answered(&mut second).await;
    let mut third = TcpStream::connect(api).await.unwrap();
    assert!(refused(&mut third).await, "the third connection is refused");

    // A closed connection frees its place.
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut next = TcpStream::connect(api).await.unwrap();
        next.write_all(format!("{GET}Connection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = until_closed(&mut next, Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 401 ") {
            admitted = true;
            break;
        }
    }
    assert!(
        admitted,
        "a place freed by a closed connection is given again"
    );
}

#[tokio::test]
async fn past_the_total_limit_a_connection_is_refused_politely() {
    let (_stack, served) = serve(|config| {
        config.http.connections_max = 1;
        config.http.header_read_timeout_ms = 30_000;
    })
    .await;
    let api = served.api;
    let mut held = TcpStream::connect(api).await.unwrap();
    answered(&mut held).await;
    let mut next = TcpStream::connect(api).await.unwrap();
    assert!(refused(&mut next).await);
}

/// Two gateway instances bound to one API port with `listen.reuse_port`: the kernel spreads
/// connections over both, told apart by their request-ID prefixes (one per instance seed).
#[tokio::test]
async fn two_instances_share_one_port_with_reuse_port() {
    use std::{collections::BTreeSet, net::SocketAddr, sync::Arc};

    let stack = Stack::start().await;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut listen = gateway::serve::ListenConfig {
        api: loopback,
        websocket: loopback,
        health: loopback,
        metrics: loopback,
        reuse_port: true,
    };
    let mut stops = Vec::new();
    for seed in [1u64, 2] {
        let seams = gateway::Seams {
            net: seams::TokioNet,
            clock: Arc::new(seams::SystemClock),
            seed,
        };
        let bus = gateway::app::embedded_bus(seed);
        let app = gateway::App::from_config(stack.app.config().clone(), &seams, bus).unwrap();
        let listeners = gateway::Listeners::bind(&seams::TokioNet, &listen)
            .await
            .expect("a shared port binds twice");
        // The second instance binds the first one's API port.
        listen.api = seams::NetListener::local_addr(&listeners.api).unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(gateway::serve(app, listeners, async move {
            let _ = stopped.changed().await;
        }));
        stops.push(stop);
    }
    let mut prefixes = BTreeSet::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(listen.api).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut stream, Duration::from_secs(5)).await;
        let id = answer
            .lines()
            .find_map(|line| line.strip_prefix("x-request-id: "))
            .unwrap_or_else(|| panic!("no request ID in {answer}"));
        prefixes.insert(id.split('-').next().unwrap().to_owned());
    }
    assert_eq!(prefixes.len(), 2, "both instances answered: {prefixes:?}");
}

/// hyper keeps an HTTP/2 connection open forever; the gateway closes one that has had no request
/// in flight for `http.idle_timeout_ms`, and not before.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (_stack, served) = serve(|config| config.http.idle_timeout_ms = 300).await;
    let stream = TcpStream::connect(served.api).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 with prior knowledge");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/openapi.json", served.api))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let idle_from = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the idle HTTP/2 connection is closed within 5 s")
        .unwrap()
        .ok();
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(250),
        "closed after {idle:?} idle, before the 300 ms timeout"
    );
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `/ws/notifications` with `token`: the client once welcomed, or the refusal's status and
/// error code.
async fn open_websocket(
    address: std::net::SocketAddr,
    token: &str,
) -> Result<WebSocket, (u16, String)> {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

    let mut request = format!("ws://{address}/ws/notifications")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .expect("a handshake answer within 5 s")
    {
        Ok((mut client, _)) => {
            let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .expect("a frame within 5 s")
                .expect("the connection is open")
                .expect("a valid frame");
            let Message::Text(text) = frame else {
                panic!("expected the welcome, got {frame:?}");
            };
            let welcome: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => {
            let body: serde_json::Value = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or_default();
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Err((response.status().as_u16(), code))
        }
        Err(other) => panic!("unexpected WebSocket error: {other}"),
    }
}

/// A plain `GET` on its own connection; the status code.
async fn status_of(address: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream, Duration::from_secs(5)).await;
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// An upgraded WebSocket is the same descriptor as the connection it came on, so it keeps the
/// connection's place under `http.connections_max` until it closes (hyper is done with the
/// connection at the upgrade). The API and WebSocket ports share the count; at the cap, both
/// refuse with 503 before any upgrade, while the health and metrics ports still answer.
#[tokio::test]
async fn websockets_hold_their_place_under_the_connection_cap_until_they_close() {
    let (stack, served) = serve(|config| config.http.connections_max = 2).await;
    let token = stack.login("alice").await;
    let first = open_websocket(served.websocket, &token)
        .await
        .expect("the first WebSocket is welcomed");
    let _second = open_websocket(served.websocket, &token)
        .await
        .expect("the second WebSocket is welcomed");

    for _ in 0..2 {
        let refusal = open_websocket(served.websocket, &token).await.err();
        assert_eq!(
            refusal,
            Some((503, "too_many_connections".to_owned())),
            "two open WebSockets fill a cap of two"
        );
    }
    let mut api = TcpStream::connect(served.api).await.unwrap();
    assert!(refused(&mut api).await, "the API port shares the count");
    assert_eq!(status_of(served.health, "/health/live").await, 200);
    assert_eq!(status_of(served.metrics, "/metrics").await, 200);
    // What operators alert on: how full the cap is, and what it refused.
    let metrics = stack.app.metrics().render();
    for line in [
        "gateway_connections_open 2",
        "gateway_connections_max 2",
        "gateway_connections_refused_total 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    // Closing a WebSocket frees its place.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open_websocket(served.websocket, &token).await {
            Ok(_) => break,
            Err(refusal) if tokio::time::Instant::now() < deadline => {
                assert_eq!(refusal, (503, "too_many_connections".to_owned()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(refusal) => panic!("a closed WebSocket's place was not freed: {refusal:?}"),
        }
    }
}
