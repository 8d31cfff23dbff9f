//! The event envelope: what a subscriber receives for every event on a channel.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One event on a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The channel, `kind:id`.
    pub channel: String,
    /// Position on the channel: 1 for the first event of an epoch, then +1 per event.
    pub offset: u64,
    /// Changes when the channel's history is lost (offsets restart at 1); recovery across epochs
    /// is impossible and is reported as a gap.
    pub epoch: String,
    /// Who may receive it; `None` means every permitted subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// The payload, any JSON value, passed through untouched.
    pub data: Box<RawValue>,
}

/// Restricts an event to some users or roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// User IDs that may receive the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Roles whose holders may receive the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Audience {
    /// Whether a user with these roles is in the audience.
    pub fn admits(&self, user_id: &str, roles: &[String]) -> bool {
        self.users.iter().any(|u| u == user_id) || self.roles.iter().any(|r| roles.contains(r))
    }
}

impl Event {
    /// Whether this user may receive the event, as far as its audience is concerned.
    pub fn is_for(&self, user_id: &str, roles: &[String]) -> bool {
        self.audience
            .as_ref()
            .is_none_or(|audience| audience.admits(user_id, roles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_admits_listed_users_and_roles_only() {
        let audience = Audience {
            users: vec!["u-1".into()],
            roles: vec!["admin".into()],
        };
        assert!(audience.admits("u-1", &[]));
        assert!(audience.admits("u-9", &["admin".into()]));
        assert!(!audience.admits("u-2", &["user".into()]));
    }

    #[test]
    fn the_envelope_round_trips_and_keeps_data_verbatim() {
        let text =
            r#"{"channel":"simulation:s-1","offset":7,"epoch":"e1","data":{"progress":12.50}}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        assert_eq!(event.offset, 7);
        assert!(event.is_for("anyone", &[]));
        assert_eq!(event.data.get(), r#"{"progress":12.50}"#);
        assert_eq!(serde_json::to_string(&event).unwrap(), text);
    }
}
