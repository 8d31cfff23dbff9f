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

use std::sync::{
    Arc, Weak,
    atomic::{AtomicBool, Ordering},
};

use futures::future::BoxFuture;

use events::{BusMessage, ChannelName, Event, EventBus, History};
use serde::Deserialize;

use crate::{
    auth::TokenValidator,
    auth::permissions::PermissionCache,
    drain::Drain,
    realtime::hub::{Hub, RevocationGate, protocol::close_code},
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
pub fn apply_revocation(
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

/// The revocations this instance has applied, and the way to apply the ones it missed.
///
/// Revocations are events like any other: they have offsets and history. While the bus is
/// interrupted this instance misses them, so before any channel replays the events its
/// connections missed, the hub asks the log to catch up (see [`Hub::set_revocation_gate`]): a
/// token revoked during the outage closes its connections before they are sent anything
/// published after the revocation. And while the revocation stream is interrupted, no connection
/// joins: a cached validation could otherwise let a token revoked meanwhile in.
pub struct RevocationLog {
    hub: Weak<Hub>,
    validator: Arc<TokenValidator>,
    permissions: Arc<PermissionCache>,
    /// The last revocation applied, as (epoch, offset). Held across a catch-up, so the catch-ups
    /// of the listener and of every channel apply each revocation once, in order.
    applied: tokio::sync::Mutex<Option<(String, u64)>>,
    /// False from an interruption of the revocation stream until a catch-up succeeds.
    current: AtomicBool,
}

impl RevocationGate for RevocationLog {
    fn catch_up(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.apply_missed().await })
    }

    fn is_current(&self) -> bool {
        self.current.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for RevocationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationLog").finish_non_exhaustive()
    }
}

impl RevocationLog {
    /// A log applying revocations to `hub`'s connections and to the caches; it becomes the hub's
    /// catch-up gate.
    pub fn install(
        hub: &Arc<Hub>,
        validator: Arc<TokenValidator>,
        permissions: Arc<PermissionCache>,
    ) -> Arc<Self> {
        let log = Arc::new(Self {
            hub: Arc::downgrade(hub),
            validator,
            permissions,
            applied: tokio::sync::Mutex::new(None),
            current: AtomicBool::new(true),
        });
        hub.set_revocation_gate(log.clone());
        log
    }

    /// Applies the revocations history holds after the last one applied (all of it, the first
    /// time). When history no longer holds some of them, fails safe: see
    /// [`RevocationLog::assume_any_revoked`].
    pub async fn apply_missed(&self) {
        let mut applied = self.applied.lock().await;
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let channel = ChannelName::revocations();
        if let Some(history) = hub.read_missed(&channel, applied.as_ref()).await {
            self.apply_history(&hub, &mut applied, &history);
            self.current.store(true, Ordering::SeqCst);
        }
    }

    fn apply_history(&self, hub: &Hub, applied: &mut Option<(String, u64)>, history: &History) {
        let next = match applied.as_ref() {
            Some((epoch, offset)) if *epoch == history.epoch => offset + 1,
            // A new epoch: Redis lost its data, and with it whatever the old epoch held past the
            // last revocation applied here. None of that can be read any more, and this instance
            // was cut off when it was lost, so it cannot tell whether anything was revoked. (The
            // simulation found a token revoked just before a Redis crash keep its connection.)
            // The new epoch's revocations start at offset 1.
            Some((epoch, offset)) => {
                let lost = format!("epoch {epoch} after offset {offset}");
                self.assume_any_revoked(hub, &lost);
                1
            }
            // The first read: whatever history holds is all there is to know.
            None => history.oldest_offset.max(1),
        };
        if history.latest_offset >= next && history.oldest_offset > next {
            let trimmed = format!("offsets {next} to {}", history.oldest_offset - 1);
            self.assume_any_revoked(hub, &trimmed);
        }
        let mut last = applied
            .as_ref()
            .filter(|(epoch, _)| *epoch == history.epoch)
            .map_or(0, |(_, offset)| *offset);
        for event in history.events.iter().filter(|event| event.offset >= next) {
            self.apply_event(hub, event);
            last = last.max(event.offset);
        }
        *applied = Some((history.epoch.clone(), last.max(history.latest_offset)));
    }

    /// Applies one live revocation, unless a catch-up already did; a live revocation that skips
    /// offsets reads the skipped ones from history first, so they apply in order.
    pub async fn apply_live(&self, event: &Event) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut applied = self.applied.lock().await;
        match applied.as_ref() {
            Some((epoch, offset)) if *epoch == event.epoch && event.offset <= *offset => {}
            Some((epoch, offset)) if *epoch == event.epoch && event.offset == offset + 1 => {
                self.apply_event(&hub, event);
                *applied = Some((event.epoch.clone(), event.offset));
            }
            _ => {
                drop(applied);
                self.apply_missed().await;
            }
        }
    }

    fn apply_event(&self, hub: &Hub, event: &Event) {
        match serde_json::from_str::<Revocation>(event.data.get()) {
            Ok(revocation) => {
                let closed = apply_revocation(&revocation, hub, &self.validator, &self.permissions);
                tracing::info!(
                    ?revocation,
                    offset = event.offset,
                    closed,
                    "revocation applied"
                );
            }
            Err(error) => tracing::warn!(%error, "unreadable revocation event ignored"),
        }
    }

    /// Revocations (`lost`: which) are gone from history unread: any token or permission may
    /// have been revoked. Forgets every cached validation and permission answer and closes every
    /// connection with 1001, so each client reconnects and is judged by Auth afresh.
    fn assume_any_revoked(&self, hub: &Hub, lost: &str) {
        self.validator.forget_all();
        self.permissions.forget_all();
        let closed = hub.close_where(
            |_, _| true,
            close_code::GOING_AWAY,
            "revocations were missed; reconnect",
        );
        tracing::warn!(
            lost,
            closed,
            "revocations missed beyond history; every connection closed"
        );
    }
}

/// Subscribes to `auth:revocations` now, then applies what history holds and what arrives until
/// the drain starts. The subscription exists when this returns, so no revocation published
/// afterwards is missed.
pub fn listen(
    log: Arc<RevocationLog>,
    bus: &dyn EventBus,
    drain: Drain,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let subscription = bus.subscribe(&ChannelName::revocations());
    apply_all(log, subscription, drain)
}

async fn apply_all(
    log: Arc<RevocationLog>,
    mut subscription: events::Subscription,
    mut drain: Drain,
) {
    // Tokens revoked before this instance started stay revoked for local verification too.
    log.apply_missed().await;
    loop {
        let message = tokio::select! {
            biased;
            _ = drain.started() => return,
            message = subscription.next() => message,
        };
        match message {
            Some(BusMessage::Event { event, .. }) => log.apply_live(&event).await,
            Some(BusMessage::Interrupted) => {
                log.current.store(false, Ordering::SeqCst);
                tracing::warn!(
                    "revocation stream interrupted; missed revocations are read from history when it is back"
                );
            }
            Some(BusMessage::Restored) => log.apply_missed().await,
            None => return,
        }
    }
}
