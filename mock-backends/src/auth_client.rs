//! How Project and Simulation reach Auth: a tonic channel dialled through the [`Net`], with
//! explicit timeouts, forwarding the caller's request ID so Auth records it too. Auth's "allowed"
//! answers are remembered for `upstream.permission_cache_ttl_ms`, as a real service would, so a
//! busy Project or Simulation does not ask Auth the same question on every request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use proto::auth::v1::{
    CheckPermissionRequest, GrantPermissionRequest, auth_service_client::AuthServiceClient,
};
use seams::{Net, adapters::NetConnector};
use tokio::time::Instant;
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    config::{ConfigError, UpstreamConfig},
    metadata::{Caller, REQUEST_ID},
};

/// A client of Auth's permission methods. Cheap to clone; clones share the channel and the
/// remembered answers.
#[derive(Debug, Clone)]
pub struct AuthClient {
    client: AuthServiceClient<Channel>,
    allowed: Arc<AllowedCache>,
}

/// The permissions Auth said yes to, each until it expires. Only yes is remembered: a grant
/// must work at once, and a no costs nothing to ask again when it matters.
#[derive(Debug)]
struct AllowedCache {
    ttl: Duration,
    /// `user NUL resource NUL action` → when Auth's yes stops counting.
    until: Mutex<HashMap<String, Instant>>,
}

/// Remembered answers at most; when full, all are forgotten (the next requests ask Auth again).
const ALLOWED_CACHE_LEN_MAX: usize = 100_000;

impl AllowedCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            until: Mutex::default(),
        }
    }

    fn allows(&self, user_id: &str, resource: &str, action: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let key = cache_key(user_id, resource, action);
        let until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        until.get(&key).is_some_and(|until| Instant::now() < *until)
    }

    fn remember(&self, user_id: &str, resource: &str, action: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let key = cache_key(user_id, resource, action);
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if until.len() >= ALLOWED_CACHE_LEN_MAX {
            until.clear();
        }
        until.insert(key, Instant::now() + self.ttl);
    }
}

/// One string for the three parts. The user ID comes from gRPC metadata and the action is a
/// fixed word, neither of which can hold a NUL, so the first and last NUL split any key one way
/// only and two different questions never share a key, whatever the resource holds.
fn cache_key(user_id: &str, resource: &str, action: &str) -> String {
    [user_id, resource, action].join("\0")
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
            allowed: Arc::new(AllowedCache::new(Duration::from_millis(
                config.permission_cache_ttl_ms,
            ))),
        })
    }

    /// Whether `caller` may do `action` on `resource`: Auth's answer, or its yes of less than
    /// `upstream.permission_cache_ttl_ms` ago.
    pub async fn check(
        &self,
        caller: &Caller,
        resource: &str,
        action: &str,
    ) -> Result<bool, Status> {
        if self.allowed.allows(&caller.user_id, resource, action) {
            return Ok(true);
        }
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
        let allowed = response.into_inner().allowed;
        if allowed {
            self.allowed.remember(&caller.user_id, resource, action);
        }
        Ok(allowed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl_ms: u64) -> AllowedCache {
        AllowedCache::new(Duration::from_millis(ttl_ms))
    }

    #[tokio::test(start_paused = true)]
    async fn a_yes_counts_until_its_ttl_runs_out() {
        let allowed = cache(1_000);
        assert!(!allowed.allows("u-2", "project:p-3", "read"));
        allowed.remember("u-2", "project:p-3", "read");
        assert!(allowed.allows("u-2", "project:p-3", "read"));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(allowed.allows("u-2", "project:p-3", "read"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!allowed.allows("u-2", "project:p-3", "read"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_yes_answers_only_its_own_question() {
        let allowed = cache(1_000);
        allowed.remember("u-2", "project:p-3", "read");
        assert!(!allowed.allows("u-2", "project:p-3", "write"));
        assert!(!allowed.allows("u-1", "project:p-3", "read"));
        assert!(!allowed.allows("u-2", "project:p-4", "read"));
        // A resource holding the separator cannot pass for another question.
        let allowed = cache(1_000);
        allowed.remember("u-2", "project:p-3\0read", "write");
        assert!(!allowed.allows("u-2", "project:p-3", "read"));
        assert!(!allowed.allows("u-2", "project:p-3\0read", "read"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_remembers_nothing() {
        let allowed = cache(0);
        allowed.remember("u-2", "project:p-3", "read");
        assert!(!allowed.allows("u-2", "project:p-3", "read"));
    }
}
