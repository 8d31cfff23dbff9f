//! Backend connections: one lazily connected HTTP/2 channel per configured backend, dialled
//! through the [`Net`] seam, and the generic unary call every route uses.

use std::{collections::BTreeMap, time::Duration};

use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use seams::{Net, adapters::NetConnector};
use tonic::{
    Status,
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
};

use crate::{
    codec::DynamicCodec,
    config::{BackendConfig, Config, millis},
};

/// HTTP/2 flow-control windows on backend connections: large enough that one connection carries
/// many concurrent calls without stalling on window updates.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// One backend service's connection and call settings.
#[derive(Debug, Clone)]
pub struct Backend {
    name: String,
    channel: Channel,
    deadline: Duration,
}

/// Why the backend connections could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("backend {name}: invalid address {address:?}")]
pub struct BackendSetupError {
    name: String,
    address: String,
}

impl Backend {
    /// Builds the channel for one backend. Nothing is dialled until the first call, so the gateway
    /// starts (and reports not-ready) while a backend is down.
    pub fn connect_lazy<N: Net>(
        net: &N,
        name: &str,
        config: &BackendConfig,
    ) -> Result<Self, BackendSetupError> {
        let endpoint = Endpoint::from_shared(format!("http://{}", config.address))
            .map_err(|_| BackendSetupError {
                name: name.to_owned(),
                address: config.address.clone(),
            })?
            // Explicit at the boundary: every timeout and window is chosen here, not inherited.
            .connect_timeout(millis(config.connect_timeout_ms))
            .http2_keep_alive_interval(millis(config.keepalive_interval_ms))
            .keep_alive_timeout(millis(config.keepalive_timeout_ms))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
        let channel = endpoint.connect_with_connector_lazy(NetConnector(net.clone()));
        Ok(Self {
            name: name.to_owned(),
            channel,
            deadline: millis(config.deadline_ms),
        })
    }

    /// The backend's name in config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying channel, for typed clients (token validation, health checks).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The default deadline of a call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Calls a unary method with a dynamic request. The deadline is sent as `grpc-timeout` and
    /// also enforced here, so a backend that never answers cannot hold the request past it.
    pub async fn unary(
        &self,
        path: PathAndQuery,
        request: DynamicMessage,
        response_type: MessageDescriptor,
        metadata: MetadataMap,
        deadline: Duration,
    ) -> Result<DynamicMessage, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("backend not ready: {e}")))?;
            let mut request =
                tonic::Request::from_parts(metadata, tonic::Extensions::default(), request);
            request.set_timeout(deadline);
            grpc.unary(request, path, DynamicCodec::new(response_type))
                .await
                .map(tonic::Response::into_inner)
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("backend deadline exceeded")),
        }
    }
}

/// Every backend, and which one serves each gRPC service.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    by_name: BTreeMap<String, Backend>,
    by_service: BTreeMap<String, String>,
}

impl Backends {
    /// Builds a lazily connected channel for each configured backend.
    pub fn from_config<N: Net>(net: &N, config: &Config) -> Result<Self, BackendSetupError> {
        let mut backends = Self::default();
        for (name, backend_config) in &config.backends {
            backends.by_name.insert(
                name.clone(),
                Backend::connect_lazy(net, name, backend_config)?,
            );
            for service in &backend_config.services {
                backends.by_service.insert(service.clone(), name.clone());
            }
        }
        Ok(backends)
    }

    /// The backend serving a gRPC service (`auth.v1.AuthService`).
    pub fn for_service(&self, service: &str) -> Option<&Backend> {
        self.by_service
            .get(service)
            .and_then(|name| self.by_name.get(name))
    }

    /// A backend by its name in config.
    pub fn by_name(&self, name: &str) -> Option<&Backend> {
        self.by_name.get(name)
    }

    /// Every backend with the services it serves, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Backend, Vec<&str>)> {
        self.by_name.values().map(|backend| {
            let services = self
                .by_service
                .iter()
                .filter(|(_, name)| **name == backend.name)
                .map(|(service, _)| service.as_str())
                .collect();
            (backend, services)
        })
    }
}
