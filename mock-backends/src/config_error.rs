//! The error of a configuration value that cannot be used: below `config`, which assembles and
//! validates the sections, and the modules that own a section (`faults`), which check their own.

/// A configuration value that cannot be used, with the field it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// The dotted path of the offending field, for example `auth.token_ttl_seconds`.
    pub field: String,
    /// Why the value was rejected.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
