//! Clients for client hosts: one HTTP/1.1 request, a WebSocket, or the mock backends' control
//! plane, over turmoil's network.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mock_backends::control_proto::control_service_client::ControlServiceClient;
use seams::adapters::NetConnector;
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{self, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig},
};
use tonic::transport::{Channel, Endpoint};

/// A WebSocket client connection on the simulated network.
pub type WebSocket = WebSocketStream<turmoil::net::TcpStream>;

/// How long a client waits for a whole HTTP exchange. A request to a host that crashed may never
/// be answered (turmoil's TCP has no retransmission and no keepalive here); the client gives up.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP answer as the workload reads it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// The `x-cache` header (`hit`, `miss`, `stale`) of an answer from a cached route.
    pub x_cache: Option<String>,
}

/// Sends one HTTP/1.1 request to `address` (`host:port`) and returns the status and the body as
/// JSON (`Null` when the body is not JSON). Gives up after [`HTTP_TIMEOUT`].
pub async fn http(
    address: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(StatusCode, serde_json::Value)> {
    let answer = http_with_id(address, method, path, token, body, None).await?;
    Ok((answer.status, answer.body))
}

/// [`http`] with an `x-request-id`, which the gateway passes on to every backend call (retries
/// included), so a backend's request log tells how many attempts the request cost; the answer
/// also says whether it came from the gateway's cache.
pub async fn http_with_id(
    address: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
    request_id: Option<&str>,
) -> std::io::Result<Answer> {
    let exchange = exchange(address, method, path, token, body, request_id);
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

async fn exchange(
    address: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
    request_id: Option<&str>,
) -> std::io::Result<Answer> {
    let other = |error: &dyn std::fmt::Display| std::io::Error::other(error.to_string());
    let stream = turmoil::net::TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other(&e))?;
    tokio::spawn(connection);
    let host = address.split(':').next().unwrap_or(address);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| other(&e))?;
    let response = sender.send_request(request).await.map_err(|e| other(&e))?;
    let status = response.status();
    let x_cache = response
        .headers()
        .get("x-cache")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| other(&e))?
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answer {
        status,
        body,
        x_cache,
    })
}

/// Logs in as a demo user through the gateway at `address`; returns the access token.
pub async fn login(address: &str, username: &str) -> std::io::Result<String> {
    let body = format!(r#"{{"username":"{username}","password":"demo-password"}}"#);
    let (status, reply) = http(address, Method::POST, "/api/auth/login", None, &body).await?;
    reply["accessToken"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("login answered {status}: {reply}")))
}

/// Opens a WebSocket to `address` (`host:port`) at `path` (query included).
/// Gives up after [`HTTP_TIMEOUT`] (a crashed gateway never answers the handshake).
pub async fn websocket(address: &str, path: &str) -> Result<WebSocket, tungstenite::Error> {
    tokio::time::timeout(HTTP_TIMEOUT, open_websocket(address, path))
        .await
        .map_err(|_| {
            tungstenite::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no handshake in time",
            ))
        })?
}

/// The `Origin` the sim's WebSocket clients present, as a browser would; scenario gateways list
/// it in `websocket.allowed_origins` (`faults::Sabotage::RefuseUpgrades` takes it off).
pub const WEBSOCKET_ORIGIN: &str = "http://app.sim";

async fn open_websocket(address: &str, path: &str) -> Result<WebSocket, tungstenite::Error> {
    let mut request = format!("ws://{address}{path}").into_client_request()?;
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_static(WEBSOCKET_ORIGIN));
    let stream = turmoil::net::TcpStream::connect(address).await?;
    // Small buffers: a scale run holds 100,000 of these in one process (the library's default
    // read buffer is 128 KiB).
    let config = WebSocketConfig::default()
        .read_buffer_size(4_096)
        .write_buffer_size(0);
    let (socket, _) = client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// The control plane of the mock backend at `address` (`host:port`): fault knobs, revocations.
pub fn control(address: &str) -> Result<ControlServiceClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    Ok(ControlServiceClient::new(
        endpoint.connect_with_connector_lazy(NetConnector(crate::TurmoilNet)),
    ))
}

/// The `jti` of a JWT, read from its payload without verifying it (the client's own token).
pub fn token_id(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["jti"].as_str().map(str::to_owned)
}
