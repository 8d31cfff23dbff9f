//! What a configuration section's check returns, and the range checks the sections share.
//!
//! Each section's type lives with the module that owns it and checks itself (`check`), naming
//! the dotted field it rejects; `config` gathers the sections and checks what spans two of them.
//! This module sits at the bottom of the tree so every owner can use it without reaching up to
//! `config`.

/// A configuration value out of range or inconsistent with another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The offending field, dotted (`http.body_bytes_max`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidField {
    /// `field` is invalid for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks that `value` is greater than zero.
pub fn positive(field: impl Into<String>, value: u64) -> Result<(), InvalidField> {
    if value == 0 {
        return Err(InvalidField::new(field, "must be greater than zero"));
    }
    Ok(())
}

/// Checks that `value` is a share: between 0.0 and 1.0, both included.
pub fn share(field: impl Into<String>, value: f64) -> Result<(), InvalidField> {
    if !(0.0..=1.0).contains(&value) {
        return Err(InvalidField::new(field, "must be between 0.0 and 1.0"));
    }
    Ok(())
}

/// Checks that `address` is `host:port` with a non-empty host and a port number.
pub fn host_port(field: impl Into<String>, address: &str) -> Result<(), InvalidField> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(InvalidField::new(field, "must be host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_the_field_it_rejects() {
        assert_eq!(positive("a.b", 1), Ok(()));
        assert_eq!(
            positive("a.b", 0),
            Err(InvalidField::new("a.b", "must be greater than zero"))
        );
        assert_eq!(share("s", 0.0), Ok(()));
        assert_eq!(share("s", 1.0), Ok(()));
        assert!(share("s", 1.01).is_err());
        assert!(share("s", f64::NAN).is_err());
        assert_eq!(host_port("h", "auth.internal:9000"), Ok(()));
        for bad in ["auth.internal", ":9000", "host:port", "host:70000"] {
            assert_eq!(host_port("h", bad).unwrap_err().field, "h", "{bad}");
        }
    }
}
