//! How Project and Simulation reach Auth: a tonic channel dialled through the [`Net`], with
//! explicit timeouts, forwarding the caller's request ID so Auth records it too.

use std::time::Duration;

use proto::auth::v1::{
    CheckPermissionRequest, GrantPermissionRequest, auth_service_client::AuthServiceClient,
};
use seams::{Net, adapters::NetConnector};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    config::{ConfigError, UpstreamConfig},
    metadata::{Caller, REQUEST_ID},
};

/// A client of Auth's permission methods. Cheap to clone; clones share the channel.
#[derive(Debug, Clone)]
pub struct AuthClient {
    client: AuthServiceClient<Channel>,
}

impl AuthClient {
    /// A client for Auth at `auth_addr` (`host:port`), dialled through `net` on first use and
    /// redialled after failures.
    pub fn connect_lazy<N: Net>(
        net: N,
        auth_addr: &str,
        config: &UpstreamConfig,
    ) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::from_shared(format!("http://{auth_addr}"))
            .map_err(|error| ConfigError::new("upstream.auth_addr", error.to_string()))?
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .http2_keep_alive_interval(Duration::from_millis(config.keepalive_interval_ms))
            .keep_alive_timeout(Duration::from_millis(config.keepalive_timeout_ms))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_with_connector_lazy(NetConnector(net));
        Ok(Self {
            client: AuthServiceClient::new(channel),
        })
    }

    /// Whether `caller` may do `action` on `resource`.
    pub async fn check(
        &self,
        caller: &Caller,
        resource: &str,
        action: &str,
    ) -> Result<bool, Status> {
        let request = with_request_id(
            CheckPermissionRequest {
                user_id: caller.user_id.clone(),
                resource: resource.to_owned(),
                action: action.to_owned(),
            },
            caller,
        );
        let response = self
            .client
            .clone()
            .check_permission(request)
            .await
            .map_err(upstream_failure)?;
        Ok(response.into_inner().allowed)
    }

    /// PERMISSION_DENIED unless `caller` may do `action` on `resource`.
    pub async fn require(
        &self,
        caller: &Caller,
        resource: &str,
        action: &str,
    ) -> Result<(), Status> {
        if self.check(caller, resource, action).await? {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{action} on {resource} not allowed"
            )))
        }
    }

    /// Grants `caller` `action` on `resource`.
    pub async fn grant(&self, caller: &Caller, resource: &str, action: &str) -> Result<(), Status> {
        let request = with_request_id(
            GrantPermissionRequest {
                user_id: caller.user_id.clone(),
                resource: resource.to_owned(),
                action: action.to_owned(),
            },
            caller,
        );
        self.client
            .clone()
            .grant_permission(request)
            .await
            .map_err(upstream_failure)?;
        Ok(())
    }
}

fn with_request_id<T>(message: T, caller: &Caller) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = caller
        .request_id
        .as_deref()
        .and_then(|id| MetadataValue::try_from(id).ok())
    {
        request.metadata_mut().insert(REQUEST_ID, value);
    }
    request
}

/// What our caller sees when Auth fails: UNAVAILABLE when Auth is unreachable, slow or shedding
/// load (worth retrying), INTERNAL otherwise (a bug between us and Auth). Auth's own message is
/// logged, not passed on.
fn upstream_failure(status: Status) -> Status {
    tracing::warn!(code = ?status.code(), message = status.message(), "auth call failed");
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            Status::unavailable("auth service unavailable")
        }
        _ => Status::internal("auth service error"),
    }
}
