//! Adding an annotated method to a `.proto` adds its route, with no gateway code: this test
//! compiles a test-only `.proto`, serves it from a dynamic gRPC server, and calls the new route
//! through the gateway.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc,
};

use axum::{body::Body, http::Request};
use gateway::{App, Config, Seams, codec::DynamicCodec, config::BackendConfig};
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use seams::{SystemClock, TokioNet};
use tower::ServiceExt;

fn echo_descriptors() -> DescriptorPool {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut compiler =
        protox::Compiler::new([here.join("tests/protos"), here.join("../proto/proto")])
            .expect("include paths exist");
    compiler
        .include_imports(true)
        .open_files(["echo.proto"])
        .expect("echo.proto compiles");
    compiler.descriptor_pool()
}

/// Shouts the body's text back `repeat` times, upper-cased, with the request ID it was sent.
#[derive(Clone)]
struct Shout {
    output: MessageDescriptor,
}

impl tonic::server::UnaryService<DynamicMessage> for Shout {
    type Response = DynamicMessage;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<DynamicMessage>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        let output = self.output.clone();
        Box::pin(async move {
            let request_id = request
                .metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let message = request.into_inner();
            let channel = message
                .get_field_by_name("channel")
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned();
            let repeat = message
                .get_field_by_name("repeat")
                .unwrap()
                .as_i32()
                .unwrap();
            let text = message
                .get_field_by_name("message")
                .and_then(|m| {
                    m.as_message()
                        .and_then(|m| m.get_field_by_name("text"))
                        .map(|t| t.as_str().unwrap_or_default().to_owned())
                })
                .unwrap_or_default();
            let mut response = DynamicMessage::new(output);
            response.set_field_by_name("channel", Value::String(channel));
            response.set_field_by_name(
                "text",
                Value::String(text.to_uppercase().repeat(repeat.max(1) as usize)),
            );
            response.set_field_by_name("request_id", Value::String(request_id));
            Ok(tonic::Response::new(response))
        })
    }
}

async fn start_echo_backend(pool: &DescriptorPool) -> SocketAddr {
    let method = pool
        .get_service_by_name("echo.v1.EchoService")
        .unwrap()
        .methods()
        .next()
        .unwrap();
    let input = method.input();
    let shout = Shout {
        output: method.output(),
    };
    let service = tower::service_fn(move |request: Request<Body>| {
        let input = input.clone();
        let shout = shout.clone();
        async move {
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(input));
            Ok::<_, Infallible>(grpc.unary(shout, request).await)
        }
    });
    let router = axum::Router::new().route_service("/echo.v1.EchoService/Shout", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

#[tokio::test]
async fn a_new_annotated_method_is_routed_with_no_gateway_code() {
    let pool = echo_descriptors();
    let echo_address = start_echo_backend(&pool).await;
    let mut config = Config::default();
    config.backends.insert(
        "echo".to_owned(),
        BackendConfig {
            services: vec!["echo.v1.EchoService".to_owned()],
            ..config.backends["auth"].clone()
        },
    );
    config.backends.get_mut("echo").unwrap().address = echo_address.to_string();
    config
        .auth
        .public_methods
        .push("echo.v1.EchoService/Shout".to_owned());
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 1,
    };
    let app = App::new(config, &seams, &pool).expect("gateway builds from the test descriptors");

    let response = app
        .api_router()
        .oneshot(
            Request::post("/api/echo/room%201:shout?repeat=2")
                .header("content-type", "application/json")
                .header("x-request-id", "echo-test-1")
                .body(Body::from(r#"{"text":"hi"}"#))
                .unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"channel": "room 1", "text": "HIHI", "requestId": "echo-test-1"})
    );
}
