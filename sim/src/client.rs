//! Clients for client hosts: one HTTP/1.1 request, or a WebSocket, over turmoil's network.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{self, protocol::WebSocketConfig},
};

/// A WebSocket client connection on the simulated network.
pub type WebSocket = WebSocketStream<turmoil::net::TcpStream>;

/// Sends one HTTP/1.1 request to `address` (`host:port`) and returns the status and the body as
/// JSON (`Null` when the body is not JSON).
pub async fn http(
    address: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(StatusCode, serde_json::Value)> {
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
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| other(&e))?;
    let response = sender.send_request(request).await.map_err(|e| other(&e))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| other(&e))?
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
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
pub async fn websocket(address: &str, path: &str) -> Result<WebSocket, tungstenite::Error> {
    let stream = turmoil::net::TcpStream::connect(address).await?;
    // Small buffers: a scale run holds 100,000 of these in one process (the library's default
    // read buffer is 128 KiB).
    let config = WebSocketConfig::default()
        .read_buffer_size(4_096)
        .write_buffer_size(0);
    let (socket, _) =
        client_async_with_config(format!("ws://{address}{path}"), stream, Some(config)).await?;
    Ok(socket)
}
