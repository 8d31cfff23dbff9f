//! [`BusError`], what every part of the bus returns when it cannot do what was asked: below
//! `presence` and `bus`, which both use it.

/// Why the bus could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The bus's backing store cannot be reached; retrying later may work.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The payload or audience could not be encoded.
    #[error("invalid event: {0}")]
    Invalid(String),
}
