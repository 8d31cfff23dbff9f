//! The WebSocket frames, both directions (documented field by field in `docs/protocol.md`).
//! Every frame is one JSON text message with a `type`.

use std::sync::Arc;

use events::{Event, PresenceMember};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Frames the client may send.
#[derive(Debug)]
pub enum ClientFrame {
    /// Publishes on the connection's channel (collaboration channels only).
    Publish {
        /// Any JSON value, passed on verbatim.
        data: Box<RawValue>,
    },
    /// Asks for a `pong`, echoing `id` when given.
    Ping {
        /// An opaque client value.
        id: Option<String>,
    },
}

/// Why a client frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or not an object of the expected shape.
    #[error("invalid frame: {0}")]
    Invalid(String),
    /// A well-formed frame of a type the server does not take.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
}

impl FrameError {
    /// The `code` of the error frame answering it.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Invalid(_) => "invalid_frame",
            FrameError::UnknownType(_) => "unknown_type",
        }
    }
}

/// Every field any client frame may carry; read first, then checked against the frame's type.
/// (serde's internally tagged enums cannot hold a `RawValue`, which keeps `data` verbatim.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

impl ClientFrame {
    /// Parses one text message from a client.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let raw: RawClientFrame =
            serde_json::from_str(text).map_err(|e| FrameError::Invalid(e.to_string()))?;
        match (raw.kind.as_str(), raw.data) {
            ("ping", None) => Ok(ClientFrame::Ping { id: raw.id }),
            ("ping", Some(_)) => Err(FrameError::Invalid("ping takes no data".into())),
            ("publish", Some(data)) if raw.id.is_none() => Ok(ClientFrame::Publish { data }),
            ("publish", _) => Err(FrameError::Invalid(
                "publish takes exactly one field, data".into(),
            )),
            (other, _) => Err(FrameError::UnknownType(other.chars().take(64).collect())),
        }
    }
}

/// Frames the server sends, except `event`, which is serialised once per event for all
/// recipients (see [`event_frame`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame on every connection.
    Welcome {
        /// This connection's ID (also its request ID in logs).
        connection_id: &'a str,
        /// The channel the connection is subscribed to.
        channel: &'a str,
        /// The channel's current epoch.
        epoch: &'a str,
        /// The newest offset published on the channel when the client joined.
        latest_offset: u64,
    },
    /// Offsets the client will never receive: history no longer holds them, the epoch changed,
    /// or they were conflated away.
    Gap {
        /// The channel.
        channel: &'a str,
        /// First missing offset.
        from_offset: u64,
        /// Last missing offset; `None` when unknown (the epoch changed).
        to_offset: Option<u64>,
        /// `history_trimmed`, `epoch_changed`, `conflated` or `delivery_interrupted`.
        reason: &'a str,
    },
    /// Something the client should know; `fatal` errors are followed by a close.
    Error {
        /// Stable code (`invalid_frame`, `unknown_type`, `read_only_channel`, `rate_limited`, ...).
        code: &'a str,
        /// Human-readable detail.
        message: &'a str,
    },
    /// Who is on a collaboration channel, right after `welcome`. It reflects every presence
    /// event up to `offset`: apply only presence events with a greater offset.
    PresenceState {
        /// The channel.
        channel: &'a str,
        /// The epoch `offset` belongs to.
        epoch: &'a str,
        /// The offset of the last presence event the state includes (the client's own join).
        offset: u64,
        /// One entry per connection, ordered by connection.
        members: &'a [PresenceMember],
        /// Which entry of `members` is this connection.
        you: &'a str,
    },
    /// The answer to `ping`.
    Pong {
        /// The ping's `id`, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_text(&self) -> Arc<str> {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default().into()
    }
}

/// The `event` frame of one event, serialised once and shared by every recipient.
pub fn event_frame(event: &Event) -> Arc<str> {
    #[derive(Serialize)]
    struct EventFrame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a str,
        offset: u64,
        epoch: &'a str,
        data: &'a RawValue,
    }
    serde_json::to_string(&EventFrame {
        kind: "event",
        channel: &event.channel,
        offset: event.offset,
        epoch: &event.epoch,
        data: &event.data,
    })
    .unwrap_or_default()
    .into()
}

/// Close codes the gateway uses (`docs/protocol.md`).
pub mod close_code {
    /// The gateway is shutting down; reconnect (with `since`) after the delay in the reason.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol repeatedly (for example, kept exceeding the message rate).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// The event bus could not be reached when the connection joined; reconnect later.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// No frame from the client within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// The token was revoked, or the permission to read the channel.
    pub const REVOKED: u16 = 4003;
    /// The client fell too far behind on a channel that does not conflate.
    pub const SLOW_CONSUMER: u16 = 4008;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_reject_unknown_shapes() {
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ping","id":"7"}"#),
            Ok(ClientFrame::Ping { id: Some(_) })
        ));
        match ClientFrame::parse(r#"{"type":"publish","data":{"x": 1.50}}"#) {
            Ok(ClientFrame::Publish { data }) => assert_eq!(data.get(), r#"{"x": 1.50}"#),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"shout"}"#),
            Err(FrameError::UnknownType(_))
        ));
        for bad in [
            r#"{"type":"ping","extra":1}"#,
            r#"{"type":"publish"}"#,
            "[]",
            "{",
        ] {
            assert!(
                matches!(ClientFrame::parse(bad), Err(FrameError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn event_frames_carry_the_data_verbatim() {
        let event: Event = serde_json::from_str(
            r#"{"channel":"simulation:s-1","offset":3,"epoch":"e","data":{"p":1.50}}"#,
        )
        .unwrap();
        assert_eq!(
            &*event_frame(&event),
            r#"{"type":"event","channel":"simulation:s-1","offset":3,"epoch":"e","data":{"p":1.50}}"#
        );
    }
}
