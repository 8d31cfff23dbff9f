//! The bus's Lua scripts and Redis keys: every key of a channel shares the hash tag `{C}`, so
//! each script touches one slot.

use super::*;

/// The publishing step, verbatim; `docs/events.md` documents its keys and arguments.
pub const PUBLISH_SCRIPT: &str = include_str!("publish.lua");

/// The history read, verbatim.
pub const HISTORY_SCRIPT: &str = include_str!("history.lua");

/// Presence (`redis_bus/presence.lua`), with the publishing step in front of it as a local
/// function: Lua scripts cannot call each other, and presence changes must be announced by the
/// very same step every publisher runs. Parameters named `KEYS` and `ARGV` shadow the globals,
/// so `publish.lua` runs unchanged inside the function.
pub const PRESENCE_SCRIPT: &str = concat!(
    "local function publish_event(KEYS, ARGV)\n",
    include_str!("publish.lua"),
    "end\n",
    include_str!("presence.lua"),
);

/// The key holding a channel's current epoch. The channel sits in a hash tag (`{...}`), so all
/// of a channel's keys and its pub/sub channel hash to one Redis Cluster slot.
pub fn epoch_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:epoch")
}

/// The key holding a channel's newest offset in its epoch.
pub fn offset_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:offset")
}

/// The Stream holding a channel's bounded history.
pub fn history_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:history")
}

/// The sorted set of a channel's presence entries: connection → expiry (ms, Redis `TIME`).
pub fn presence_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:presence")
}

/// The hash of a channel's present members: connection → member JSON.
pub fn presence_members_key(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}:presence:members")
}

/// The pub/sub channel a channel's envelopes are published on.
pub fn pubsub_channel(channel: &ChannelName) -> String {
    format!("events:{{{channel}}}")
}

/// The channel name inside a pub/sub channel name, if it is one of ours.
pub(super) fn channel_of_pubsub(name: &str) -> Option<&str> {
    name.strip_prefix("events:{")?.strip_suffix('}')
}
