//! A gRPC backend for test-only `.proto` files: compiled at test time with protox and served with
//! the gateway's own dynamic codec, so a test can add a service without generated code.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc,
};

use axum::{body::Body, http::Request};
use gateway::backends::codec::DynamicCodec;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::{Status, metadata::MetadataMap};

/// Compiles `tests/protos/{file}` with the project's `google/api` annotations.
pub fn compile(file: &str) -> DescriptorPool {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut compiler =
        protox::Compiler::new([here.join("tests/protos"), here.join("../proto/proto")])
            .expect("include paths exist");
    compiler
        .include_imports(true)
        .open_files([file])
        .expect("the test proto compiles");
    compiler.descriptor_pool()
}

/// What a dynamic method does: request and metadata in, response message or status out.
pub type Handler = Arc<
    dyn Fn(DynamicMessage, &MetadataMap, MessageDescriptor) -> Result<DynamicMessage, Status>
        + Send
        + Sync,
>;

#[derive(Clone)]
struct Unary {
    handler: Handler,
    output: MessageDescriptor,
}

impl tonic::server::UnaryService<DynamicMessage> for Unary {
    type Response = DynamicMessage;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<DynamicMessage>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        let answer = (self.handler)(
            request.get_ref().clone(),
            request.metadata(),
            self.output.clone(),
        );
        Box::pin(async move { answer.map(tonic::Response::new) })
    }
}

/// Serves one method of `pool` on a free local port; returns the address.
pub async fn serve(
    pool: &DescriptorPool,
    service: &str,
    method: &str,
    handler: Handler,
) -> SocketAddr {
    let method = pool
        .get_service_by_name(service)
        .expect("service exists")
        .methods()
        .find(|m| m.name() == method)
        .expect("method exists");
    let path = format!("/{service}/{}", method.name());
    let input = method.input();
    let unary = Unary {
        handler,
        output: method.output(),
    };
    let grpc_service = tower::service_fn(move |request: Request<Body>| {
        let input = input.clone();
        let unary = unary.clone();
        async move {
            let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(input));
            Ok::<_, Infallible>(grpc.unary(unary, request).await)
        }
    });
    let router = axum::Router::new().route_service(&path, grpc_service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// A gateway config with one extra backend at `address` serving `service`, whose `public`
/// methods need no token.
pub fn config_with_backend(service: &str, address: SocketAddr, public: &[&str]) -> gateway::Config {
    let mut config = gateway::Config::default();
    let mut backend = config.backends["auth"].clone();
    backend.address = address.to_string();
    backend.services = vec![service.to_owned()];
    config.backends.insert("extra".to_owned(), backend);
    config
        .auth
        .public_methods
        .extend(public.iter().map(|m| format!("{service}/{m}")));
    config
}

/// A gateway routed from `pool` with `config` (as [`config_with_backend`] makes), on the real
/// network, with the embedded event bus.
pub fn app(config: gateway::Config, pool: &DescriptorPool) -> gateway::App {
    let seams = gateway::Seams {
        net: seams::TokioNet,
        clock: Arc::new(seams::SystemClock),
        seed: 1,
    };
    gateway::App::new(config, &seams, pool, gateway::app::embedded_bus(1))
        .expect("gateway builds from the test descriptors")
}
