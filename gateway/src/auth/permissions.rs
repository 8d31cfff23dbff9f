//! Permission checks through `Auth.CheckPermission`, cached briefly (`websocket.permission_*`).
//! Answers are cached for a short TTL because revocations also arrive as events; failures to ask
//! are never cached.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use proto::auth::v1::CheckPermissionRequest;
use tokio::time::Instant;

use crate::{auth::call::call_auth, backends::Backend};

/// Cache limits and the call deadline.
#[derive(Debug, Clone, Copy)]
pub struct PermissionCacheConfig {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// Most cached answers; past it, answers are not cached.
    pub entries_max: usize,
    /// Deadline of one `CheckPermission` call.
    pub deadline: Duration,
}

/// Why a permission could not be checked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("permission check unavailable: {0}")]
pub struct PermissionUnavailable(String);

type Key = (String, String, String);

/// `CheckPermission` with a small TTL cache.
#[derive(Debug)]
pub struct PermissionCache {
    auth: Backend,
    config: PermissionCacheConfig,
    answers: Mutex<HashMap<Key, (bool, Instant)>>,
}

impl PermissionCache {
    /// A cache asking the Auth backend.
    pub fn new(auth: Backend, config: PermissionCacheConfig) -> Self {
        Self {
            auth,
            config,
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user_id` may `action` on `resource`.
    pub async fn allowed(
        &self,
        user_id: &str,
        resource: &str,
        action: &str,
    ) -> Result<bool, PermissionUnavailable> {
        let key = (user_id.to_owned(), resource.to_owned(), action.to_owned());
        let now = Instant::now();
        if let Some((allowed, until)) = self.lock().get(&key)
            && *until > now
        {
            return Ok(*allowed);
        }
        let allowed = call_auth(
            &self.auth,
            CheckPermissionRequest {
                user_id: key.0.clone(),
                resource: key.1.clone(),
                action: key.2.clone(),
            },
            self.config.deadline,
            |mut client, request| async move { client.check_permission(request).await },
        )
        .await
        .map_err(|status| PermissionUnavailable(status.message().to_owned()))?
        .allowed;
        let mut answers = self.lock();
        if answers.len() >= self.config.entries_max {
            answers.retain(|_, (_, until)| *until > now);
        }
        if answers.len() < self.config.entries_max {
            answers.insert(key, (allowed, now + self.config.ttl));
        }
        Ok(allowed)
    }

    /// Forgets every cached answer (revocations may have been missed).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// Forgets every cached answer for a user (on a revocation).
    pub fn forget_user(&self, user_id: &str) {
        self.lock().retain(|(user, _, _), _| user != user_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (bool, Instant)>> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
