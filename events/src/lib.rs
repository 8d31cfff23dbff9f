//! The event contract between backends and the gateway's WebSocket hub (see `docs/events.md`).
//!
//! - [`channel`]: channel names (`user:{id}`, `simulation:{id}`, `project:{id}`,
//!   `auth:revocations`) and their validation.
//! - [`envelope`]: the [`Event`] every subscriber receives: channel, offset, epoch, audience, data.
//! - [`error`]: [`BusError`], what the bus's operations fail with.
//! - [`bus`]: the [`Publisher`] and [`EventBus`] traits: the one publishing step backends use, and
//!   what the hub needs (live subscriptions, history for recovery, delivery status).
//! - [`presence`]: who is connected to a collaboration channel, kept in the bus's store with
//!   heartbeats and expiry, every change announced as an event on the channel.
//! - [`members`]: who is subscribed to each channel locally, counted so the first to join opens
//!   the channel and the last to leave closes it (the Redis bus's subscriptions, the hub's).
//! - [`memory`]: [`MemoryBus`], the embedded single-process bus (dev stack, unit tests).
//! - [`redis_bus`]: [`RedisBus`], the production bus shared by every gateway instance through
//!   Redis: the publishing step as a Lua script, history in a bounded Stream per channel,
//!   reference-counted pub/sub subscriptions, reconnection without limit. Connections are
//!   dialled through the `seams::Net` seam, so the same code runs in simulation.
//!
//! Backends, tests and the load generator publish through [`Publisher::publish`] and nothing
//! else, so the offset, epoch and history rules live in one place.

pub mod bus;
pub mod channel;
pub mod envelope;
pub mod error;
pub mod members;
pub mod memory;
pub mod presence;
pub mod redis_bus;

pub use bus::{BusMessage, BusStatus, EventBus, History, Publisher, Subscription};
pub use channel::{ChannelKind, ChannelName, InvalidChannel};
pub use envelope::{Audience, Event};
pub use error::BusError;
pub use memory::MemoryBus;
pub use presence::{Presence, PresenceAction, PresenceChange, PresenceMember, PresenceState};
pub use redis_bus::{InvalidRedisBusConfig, RedisBus, RedisBusConfig};
