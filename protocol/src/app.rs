//! The app socket (contract §5): [`ClientOp`] in (JSON text frames),
//! [`ServerMessage`] out: snapshots, gap-free deltas, bookings and errors.
//!
//! This module must never panic on what a client sends: an op that cannot
//! be read is a refusal that still echoes the `req` when it was readable.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::rest::{Booking, BookingInput, Spot, Zone};

/// Subprotocol of the app socket.
pub const JSON_PROTOCOL: &str = crate::sensor::JSON_PROTOCOL;

/// How much of a facility a subscriber follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// Zone counts only.
    #[default]
    Zones,
    /// Zone counts and every spot.
    Spots,
}

impl Detail {
    pub fn with_spots(self) -> bool {
        self == Detail::Spots
    }
}

/// A client → server op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    Subscribe {
        facility: String,
        #[serde(default)]
        detail: Detail,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        req: Option<Value>,
    },
    Unsubscribe {
        facility: String,
        #[serde(default)]
        req: Option<Value>,
    },
    Book {
        #[serde(default)]
        req: Option<Value>,
        facility: String,
        #[serde(flatten)]
        input: BookingInput,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    Cancel {
        #[serde(default)]
        req: Option<Value>,
        booking: String,
    },
}

impl ClientOp {
    /// The `req` to echo in a reply about this op.
    pub fn req(self) -> Option<Value> {
        match self {
            ClientOp::Subscribe { req, .. }
            | ClientOp::Unsubscribe { req, .. }
            | ClientOp::Book { req, .. }
            | ClientOp::Cancel { req, .. } => req,
        }
    }
}

/// An op that could not be read: the `req` to echo (when readable) and
/// why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub req: Option<Value>,
    pub message: String,
}

/// Reads an op from a text frame.
pub fn parse_op(text: &str) -> Result<ClientOp, Unreadable> {
    let value: Value = serde_json::from_str(text).map_err(|e| Unreadable {
        req: None,
        message: format!("invalid JSON: {e}"),
    })?;
    let req = value.get("req").filter(|r| !r.is_null()).cloned();
    serde_json::from_value(value).map_err(|e| Unreadable {
        req,
        message: format!("invalid op: {e}"),
    })
}

/// A server → client message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A facility's full state at `seq` (spots only with `detail: spots`).
    Snapshot {
        facility: String,
        name: String,
        seq: u64,
        zones: Vec<Zone>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spots: Option<Vec<Spot>>,
    },
    /// What changed from `prev` to `seq`.
    Delta {
        facility: String,
        prev: u64,
        seq: u64,
        zones: Vec<Zone>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spots: Option<Vec<Spot>>,
    },
    /// The answer to `book` or `cancel` (`req` echoed, `null` if none).
    Booking {
        req: Option<Value>,
        booking: Box<Booking>,
    },
    /// A refused op, or a facility that stopped publishing.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        facility: Option<String>,
        #[schema(value_type = String)]
        code: Cow<'static, str>,
        message: String,
    },
}

impl ServerMessage {
    /// An error about `req` (and `facility`).
    pub fn error(
        req: Option<&Value>,
        facility: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> ServerMessage {
        ServerMessage::Error {
            req: req.cloned(),
            facility: facility.map(str::to_owned),
            code: Cow::Borrowed(code),
            message: message.into(),
        }
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        // Nothing in these shapes can fail to serialize (string keys only).
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_parse_and_refusals_echo_req() {
        let op = parse_op(r#"{"op":"subscribe","facility":"f1","detail":"spots","since":4}"#);
        assert!(matches!(
            op,
            Ok(ClientOp::Subscribe {
                detail: Detail::Spots,
                since: Some(4),
                ..
            })
        ));
        let op = parse_op(r#"{"op":"book","req":"r1","facility":"f1","plate":"AB1","zone":"A"}"#);
        assert!(matches!(op, Ok(ClientOp::Book { .. })));
        let refused = parse_op(r#"{"op":"book","req":"r2","facility":"f1"}"#);
        assert!(
            matches!(refused, Err(Unreadable { req: Some(Value::String(r)), .. }) if r == "r2")
        );
        assert!(parse_op("nope").is_err());
    }

    #[test]
    fn server_messages_spell_the_contract() {
        let error = ServerMessage::error(None, Some("f1"), "unknown_facility", "no");
        assert_eq!(
            serde_json::from_str::<Value>(&error.to_json()).expect("json"),
            serde_json::json!({"t":"error","facility":"f1","code":"unknown_facility","message":"no"})
        );
        let delta = ServerMessage::Delta {
            facility: "f1".into(),
            prev: 1,
            seq: 2,
            zones: Vec::new(),
            spots: None,
        };
        let text = delta.to_json();
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            serde_json::json!({"t":"delta","facility":"f1","prev":1,"seq":2,"zones":[]})
        );
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&text).expect("reads back"),
            delta
        );
    }
}
