//! Channel names. A channel is `kind:id`; ids are short and made of safe characters, so a name
//! can be a Redis key suffix, a log field and a JSON string without escaping.

use std::fmt;

/// Longest id accepted in a channel name.
pub const CHANNEL_ID_LEN_MAX: usize = 128;

/// What a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    /// `user:{user_id}`: notifications for one user.
    User,
    /// `simulation:{simulation_id}`: progress of one simulation (conflatable).
    Simulation,
    /// `project:{project_id}`: collaboration on one project (two-way, with presence).
    Project,
    /// `auth:revocations`: token and permission revocations from Auth, read by every gateway.
    AuthRevocations,
}

/// A validated channel name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName {
    name: String,
    kind: ChannelKind,
}

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name {name:?}: {reason}")]
pub struct InvalidChannel {
    name: String,
    reason: &'static str,
}

impl ChannelName {
    /// Parses and validates `kind:id`.
    pub fn parse(name: &str) -> Result<Self, InvalidChannel> {
        let invalid = |reason| InvalidChannel {
            name: name.chars().take(200).collect(),
            reason,
        };
        if name == "auth:revocations" {
            return Ok(Self {
                name: name.to_owned(),
                kind: ChannelKind::AuthRevocations,
            });
        }
        let (kind, id) = name
            .split_once(':')
            .ok_or_else(|| invalid("expected kind:id"))?;
        let kind = match kind {
            "user" => ChannelKind::User,
            "simulation" => ChannelKind::Simulation,
            "project" => ChannelKind::Project,
            _ => return Err(invalid("unknown kind")),
        };
        Self::validate_id(id).map_err(invalid)?;
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    /// The channel of one kind and id.
    pub fn new(kind: ChannelKind, id: &str) -> Result<Self, InvalidChannel> {
        let prefix = match kind {
            ChannelKind::User => "user",
            ChannelKind::Simulation => "simulation",
            ChannelKind::Project => "project",
            ChannelKind::AuthRevocations => return Self::parse("auth:revocations"),
        };
        Self::parse(&format!("{prefix}:{id}"))
    }

    /// The revocation channel.
    pub fn revocations() -> Self {
        Self {
            name: "auth:revocations".to_owned(),
            kind: ChannelKind::AuthRevocations,
        }
    }

    fn validate_id(id: &str) -> Result<(), &'static str> {
        if id.is_empty() || id.len() > CHANNEL_ID_LEN_MAX {
            return Err("the id must be 1 to 128 characters");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("the id may hold only letters, digits, '-', '_' and '.'");
        }
        Ok(())
    }

    /// The full name, `kind:id`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The id part (empty for `auth:revocations`).
    pub fn id(&self) -> &str {
        match self.kind {
            ChannelKind::AuthRevocations => "",
            _ => self.name.split_once(':').map_or("", |(_, id)| id),
        }
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse_with_their_kind() {
        assert_eq!(
            ChannelName::parse("user:u-1").unwrap().kind(),
            ChannelKind::User
        );
        assert_eq!(ChannelName::parse("simulation:s-2").unwrap().id(), "s-2");
        assert_eq!(
            ChannelName::parse("auth:revocations").unwrap().kind(),
            ChannelKind::AuthRevocations
        );
        assert_eq!(
            ChannelName::new(ChannelKind::Project, "p-1")
                .unwrap()
                .as_str(),
            "project:p-1"
        );
    }

    #[test]
    fn invalid_names_are_rejected() {
        let long = format!("user:{}", "a".repeat(129));
        for bad in [
            "",
            "user",
            "user:",
            "team:x",
            "user:a b",
            "user:a\"b",
            "user:ü",
            &long,
        ] {
            assert!(ChannelName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
