//! Adding an annotated method to a `.proto` adds its route, with no gateway code: this test
//! compiles a test-only `.proto`, serves it from a dynamic gRPC server, and calls the new route
//! through the gateway.

mod support;

use std::sync::Arc;

use axum::{body::Body, http::Request};
use prost_reflect::{DynamicMessage, Value};
use support::dynamic;

#[tokio::test]
async fn a_new_annotated_method_is_routed_with_no_gateway_code() {
    let pool = dynamic::compile("echo.proto");
    // Shouts the body's text back `repeat` times, upper-cased, with the request ID it received.
    let shout: dynamic::Handler = Arc::new(|request, metadata, output| {
        let field = |name: &str| request.get_field_by_name(name).unwrap().into_owned();
        let text = match field("message") {
            Value::Message(message) => message
                .get_field_by_name("text")
                .and_then(|t| t.as_str().map(str::to_owned))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let repeat = field("repeat").as_i32().unwrap_or(1).max(1) as usize;
        let mut response = DynamicMessage::new(output);
        response.set_field_by_name("channel", field("channel"));
        response.set_field_by_name("text", Value::String(text.to_uppercase().repeat(repeat)));
        let request_id = metadata
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        response.set_field_by_name("request_id", Value::String(request_id.to_owned()));
        Ok(response)
    });
    let address = dynamic::serve(&pool, "echo.v1.EchoService", "Shout", shout).await;
    let config = dynamic::config_with_backend("echo.v1.EchoService", address, &["Shout"]);
    let app = dynamic::app(config, &pool);

    let answer = support::send(
        app.api_router(),
        Request::post("/api/echo/room%201:shout?repeat=2")
            .header("content-type", "application/json")
            .header("x-request-id", "echo-test-1")
            .body(Body::from(r#"{"text":"hi"}"#))
            .unwrap(),
    )
    .await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        answer.json,
        serde_json::json!({"channel": "room 1", "text": "HIHI", "requestId": "echo-test-1"})
    );
}
