//! Request hygiene: the path policy (dot segments refused, empty segments and encoded literals not
//! matched, variables decoded), ambiguous HTTP/1.1 framing unable to smuggle a request on a real
//! connection, and no client header, hop-by-hop or otherwise, reaching a backend as metadata.

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use prost_reflect::{DynamicMessage, Value};
use support::{Stack, dynamic, serve_on_loopback};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn the_path_policy_holds() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    for path in [
        "/api/projects/..",
        "/api/./projects",
        "/api/projects/%2e%2E",
        "/api/projects/p-1/../p-2",
        "/api/nothing/.",
    ] {
        let answer = stack.get(path, &token).await;
        let message = answer.assert_error(400, "invalid_path");
        assert!(message.contains("'.'"), "{path}: {message}");
    }
    for path in ["/api//projects", "/api/projects/", "/api/%70rojects"] {
        let answer = stack.get(path, &token).await;
        let message = answer.assert_error(404, "not_found");
        assert_eq!(message, "no route matches this path", "{path}");
    }
    // Three dots are a name like any other; an encoded slash stays inside its variable. Both reach
    // Project, which knows no such project.
    for path in ["/api/projects/...", "/api/projects/p-1%2Fp-2"] {
        let answer = stack.get(path, &token).await;
        let message = answer.assert_error(404, "not_found");
        assert_ne!(
            message, "no route matches this path",
            "{path} reached the backend"
        );
    }
}

/// Sends raw bytes; returns everything the server sent until it closed the connection.
async fn raw_exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn statuses(answer: &str) -> Vec<&str> {
    answer
        .lines()
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .collect()
}

/// hyper parses HTTP/1.1 heads. A request with both `Transfer-Encoding` and `Content-Length` is
/// read by `Transfer-Encoding` alone and its connection closed after the answer (RFC 9112 §6.1),
/// so bytes smuggled after the body are never taken for a request; `Content-Length`s that
/// disagree are 400; identical repeats are one length (RFC 9110 §8.6).
#[tokio::test]
async fn ambiguous_framing_cannot_smuggle_a_request() {
    let stack = Stack::start().await;
    let served = serve_on_loopback(stack.app.clone()).await;
    let api = served.api;
    let login = r#"{"username":"alice","password":"demo-password"}"#;
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n";
    let smuggled = "GET /api/projects/templates HTTP/1.1\r\nHost: gw\r\n\r\n";

    // Content-Length covers the chunked body and the smuggled request; Transfer-Encoding only
    // the body. Keep-alive is asked for, so only the server's framing rule closes.
    let both = format!(
        "{head}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{login}\r\n0\r\n\r\n{smuggled}",
        login.len() + 10 + smuggled.len(),
        login.len()
    );
    let answer = raw_exchange(api, &both).await;
    assert_eq!(statuses(&answer), ["HTTP/1.1 200 OK"], "{answer}");

    let disagreeing = format!(
        "{head}Content-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{login}",
        login.len(),
        login.len() + 1
    );
    let answer = raw_exchange(api, &disagreeing).await;
    assert_eq!(statuses(&answer), ["HTTP/1.1 400 Bad Request"], "{answer}");

    let repeated = format!(
        "{head}Content-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{login}",
        login.len(),
        login.len()
    );
    let answer = raw_exchange(api, &repeated).await;
    assert_eq!(statuses(&answer), ["HTTP/1.1 200 OK"], "{answer}");
}

#[tokio::test]
async fn no_client_header_reaches_a_backend() {
    let pool = dynamic::compile("echo.proto");
    // Answers with the names of the metadata it received, sorted.
    let echo: dynamic::Handler = Arc::new(|_request, metadata, output| {
        let mut names: Vec<String> = metadata
            .keys()
            .map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => key.as_str().to_owned(),
                tonic::metadata::KeyRef::Binary(key) => key.as_str().to_owned(),
            })
            .collect();
        names.sort();
        let mut response = DynamicMessage::new(output);
        response.set_field_by_name("text", Value::String(names.join(",")));
        Ok(response)
    });
    let address = dynamic::serve(&pool, "echo.v1.EchoService", "Shout", echo).await;
    let config = dynamic::config_with_backend("echo.v1.EchoService", address, &["Shout"]);
    let app = dynamic::app(config, &pool);
    let answer = support::send(
        app.api_router(),
        Request::post("/api/echo/room:shout")
            .header("content-type", "application/json")
            .header("connection", "keep-alive, x-secret")
            .header("keep-alive", "timeout=5")
            .header("x-secret", "1")
            .header("proxy-authorization", "Basic YTpi")
            .header("upgrade", "h2c")
            .header("te", "trailers, deflate")
            .header("cookie", "session=1")
            .header("x-user-id", "u-999")
            .header("x-user-roles", "admin")
            .header("x-forwarded-for", "1.2.3.4")
            .header("x-request-id", "hygiene-1")
            .body(Body::from(r#"{"text":"hi"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let received: Vec<&str> = answer.json["text"].as_str().unwrap().split(',').collect();
    // What a gRPC call carries by itself, and the request ID the gateway sets.
    let allowed = [
        "content-type",
        "grpc-accept-encoding",
        "grpc-timeout",
        "te",
        "user-agent",
        "x-request-id",
    ];
    for name in &received {
        assert!(
            allowed.contains(name),
            "{name} reached the backend: {received:?}"
        );
    }
    assert!(received.contains(&"x-request-id"));
}
