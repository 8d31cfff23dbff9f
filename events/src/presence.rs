//! Presence on collaboration channels: who is connected, seen identically by every instance.
//!
//! Each open collaboration connection is one presence entry, kept in the bus's store (Redis for
//! [`crate::RedisBus`]) with an expiry that the owning gateway instance pushes forward with
//! heartbeats. An instance that dies stops heartbeating; its entries expire and are swept by the
//! next presence call on the channel from any instance, so nobody sees a ghost for longer than
//! the expiry.
//!
//! Every change is published as an ordinary event on the channel (offset, epoch, history), in the
//! same atomic step that changes the store: join and leave are ordered with the channel's other
//! events, recovered after a reconnect like them, and never announced without happening. The
//! event's `data` is [`PresenceChange`]'s JSON form (see `docs/events.md`).

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{BusError, ChannelName};

/// One connection present on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The connection, unique across instances: `<instance id>.<connection id>`.
    pub connection: String,
    /// The user's ID.
    pub user_id: String,
    /// The user's display name.
    pub username: String,
}

/// The members of a channel as of one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceState {
    /// The channel's epoch.
    pub epoch: String,
    /// The state includes every presence event up to and including this offset, and none after.
    pub offset: u64,
    /// The members, ordered by connection.
    pub members: Vec<PresenceMember>,
}

/// Why a member joined or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAction {
    /// A connection opened, or a heartbeat restored an entry that had expired (its instance
    /// was cut off from the store for longer than the expiry).
    Join,
    /// A connection closed.
    Leave,
    /// An entry's heartbeats stopped for longer than the expiry (its instance died or was cut
    /// off); removed by whichever instance noticed.
    Expire,
}

/// The `data` of a presence event: `{"type":"presence","action":...,"member":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// Always `presence`, so clients can tell these events from other traffic.
    #[serde(rename = "type")]
    pub kind: PresenceKind,
    /// What happened.
    pub action: PresenceAction,
    /// Who it happened to.
    pub member: PresenceMember,
}

/// The `type` of a presence event's data; only `presence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceKind {
    /// The one value.
    Presence,
}

impl PresenceChange {
    /// The event data announcing `action` for `member`.
    pub fn data(action: PresenceAction, member: &PresenceMember) -> Box<RawValue> {
        let change = PresenceChange {
            kind: PresenceKind::Presence,
            action,
            member: member.clone(),
        };
        // Plain strings and enums: serialising cannot fail.
        serde_json::value::to_raw_value(&change).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }
}

/// The presence store. Every call first sweeps the channel's expired entries (announcing each
/// with an `expire` event), and no call ever returns an expired entry.
pub trait Presence: Send + Sync + 'static {
    /// Adds `member` until `ttl` from now, announces it (`join`), and returns the state right
    /// after: it includes the member itself, and `offset` is its join event's.
    fn presence_join(
        &self,
        channel: &ChannelName,
        member: PresenceMember,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>>;

    /// Removes the member with this connection and announces it (`leave`); nothing if it is not
    /// present (for example, it already expired).
    fn presence_leave(
        &self,
        channel: &ChannelName,
        connection: &str,
    ) -> BoxFuture<'static, Result<(), BusError>>;

    /// Extends these members' entries to `ttl` from now. A member whose entry is gone (it expired
    /// while its instance was cut off, or the store lost it) is added back and announced
    /// (`join`), so presence converges after a partition heals.
    fn presence_heartbeat(
        &self,
        channel: &ChannelName,
        members: Vec<PresenceMember>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BusError>>;

    /// The current members.
    fn presence_state(
        &self,
        channel: &ChannelName,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_data_is_the_documented_shape() {
        let member = PresenceMember {
            connection: "9f.3".into(),
            user_id: "u-1".into(),
            username: "alice".into(),
        };
        assert_eq!(
            PresenceChange::data(PresenceAction::Expire, &member).get(),
            r#"{"type":"presence","action":"expire","member":{"connection":"9f.3","user_id":"u-1","username":"alice"}}"#
        );
    }
}
