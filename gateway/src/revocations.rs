//! Revocations from Auth, applied at once: Auth publishes on `auth:revocations`; every gateway
//! instance listens, drops what it cached about the revoked token or permission, and closes the
//! affected WebSocket connections with 4003 (see `docs/protocol.md`).
//!
//! Events (`data` of events on `auth:revocations`):
//! - `{"type":"token_revoked","tokenId","userId"}` (`userId` optional): every connection opened with that token closes,
//!   and the token's cached validation is dropped (its next HTTP use asks Auth, which refuses it).
//! - `{"type":"permission_revoked","userId","resource","action"}`: the user's cached permission
//!   answers are dropped, and their connections to that resource close (`read` or `write`: a
//!   collaborator who loses write must reconnect to get read-only rights).

use std::sync::Arc;

use events::{BusMessage, ChannelName};
use serde::Deserialize;
use tokio::sync::watch;

use crate::{
    auth::TokenValidator,
    hub::{Hub, protocol::close_code},
    permissions::PermissionCache,
};

/// One revocation, as Auth publishes it.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Revocation {
    /// A token may no longer be used.
    #[serde(rename_all = "camelCase")]
    TokenRevoked {
        /// The token's `jti`.
        token_id: String,
        /// Its owner; Auth leaves it out when it no longer remembers the token, and the
        /// revocation applies all the same.
        #[serde(default)]
        user_id: Option<String>,
    },
    /// A user lost an action on a resource.
    #[serde(rename_all = "camelCase")]
    PermissionRevoked {
        /// The user.
        user_id: String,
        /// The resource (`project:p-1`), which is also the channel name.
        resource: String,
        /// The action lost.
        action: String,
    },
}

/// Applies one revocation; returns how many connections it closed.
pub fn apply(
    revocation: &Revocation,
    hub: &Hub,
    validator: &TokenValidator,
    permissions: &PermissionCache,
) -> usize {
    match revocation {
        Revocation::TokenRevoked { token_id, .. } => {
            validator.forget_token_id(token_id);
            hub.close_where(
                |_, member| member.token_id == *token_id,
                close_code::REVOKED,
                "token revoked",
            )
        }
        Revocation::PermissionRevoked {
            user_id, resource, ..
        } => {
            permissions.forget_user(user_id);
            hub.close_where(
                |channel, member| member.user_id == *user_id && channel.as_str() == resource,
                close_code::REVOKED,
                "permission revoked",
            )
        }
    }
}

/// Subscribes to `auth:revocations` now, then applies what arrives until `shutdown` changes.
/// The subscription exists when this returns, so no revocation published afterwards is missed.
pub fn listen(
    hub: Arc<Hub>,
    validator: Arc<TokenValidator>,
    permissions: Arc<PermissionCache>,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let subscription = hub.bus().subscribe(&ChannelName::revocations());
    apply_all(hub, validator, permissions, subscription, shutdown)
}

async fn apply_all(
    hub: Arc<Hub>,
    validator: Arc<TokenValidator>,
    permissions: Arc<PermissionCache>,
    mut subscription: events::Subscription,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            message = subscription.next() => message,
        };
        match message {
            Some(BusMessage::Event { event, .. }) => {
                match serde_json::from_str::<Revocation>(event.data.get()) {
                    Ok(revocation) => {
                        let closed = apply(&revocation, &hub, &validator, &permissions);
                        tracing::info!(?revocation, closed, "revocation applied");
                    }
                    Err(error) => tracing::warn!(%error, "unreadable revocation event ignored"),
                }
            }
            Some(BusMessage::Interrupted | BusMessage::Restored) => {
                // Revocations missed while the bus was down are still enforced by Auth on the next
                // validation; cached answers expire within their TTLs.
                tracing::warn!("revocation stream interrupted; relying on cache TTLs meanwhile");
            }
            None => return,
        }
    }
}
