//! The messages of contract §4 (sensor socket) and §5 (app socket), as the
//! harness writes and reads them. JSON is built with serde; bincode reuses
//! the server's own wire type (`parkme_gateway::ws`) and the engine's
//! codec, so both sides stay byte-compatible by construction.
//!
//! Parsing never panics: whatever the server sends becomes a value or an
//! error the caller counts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Encoding;

/// The subprotocol of an encoding.
pub fn subprotocol(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => "parkme.v1.json",
        Encoding::Bincode => "parkme.v1.bincode",
    }
}

/// A sensor message before it is numbered on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorBody {
    Spot {
        spot: Arc<str>,
        occupied: bool,
        /// When the sensor saw it (ms since the epoch).
        at: Option<i64>,
    },
    Heartbeat {
        sensor: Arc<str>,
    },
}

#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum JsonSensorMsg<'a> {
    Spot {
        seq: u64,
        spot: &'a str,
        occupied: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    Heartbeat {
        seq: u64,
        sensor: &'a str,
    },
}

fn json_msg(seq: u64, body: &SensorBody) -> JsonSensorMsg<'_> {
    match body {
        SensorBody::Spot { spot, occupied, at } => JsonSensorMsg::Spot {
            seq,
            spot,
            occupied: *occupied,
            at: *at,
        },
        SensorBody::Heartbeat { sensor } => JsonSensorMsg::Heartbeat { seq, sensor },
    }
}

/// One frame: a single message, or a batch (JSON array / bincode `Vec`).
pub fn sensor_frame(encoding: Encoding, msgs: &[(u64, &SensorBody)]) -> Message {
    match encoding {
        Encoding::Json => {
            let text = if let [(seq, body)] = msgs {
                serde_json::to_string(&json_msg(*seq, body))
            } else {
                let all: Vec<JsonSensorMsg<'_>> = msgs
                    .iter()
                    .map(|(seq, body)| json_msg(*seq, body))
                    .collect();
                serde_json::to_string(&all)
            };
            // Serializing these plain structs cannot fail.
            Message::text(text.unwrap_or_default())
        }
        Encoding::Bincode => Message::binary(bincode_wire::encode(msgs)),
    }
}

/// What the server says on a sensor socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorReply {
    Ack { seq: u64 },
    Error { seq: Option<u64>, code: String },
}

#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum JsonSensorReply {
    Ack {
        seq: u64,
    },
    Error {
        #[serde(default)]
        seq: Option<u64>,
        #[serde(default)]
        code: Option<String>,
    },
}

impl From<JsonSensorReply> for SensorReply {
    fn from(reply: JsonSensorReply) -> Self {
        match reply {
            JsonSensorReply::Ack { seq } => SensorReply::Ack { seq },
            JsonSensorReply::Error { seq, code } => SensorReply::Error {
                seq,
                code: code.unwrap_or_else(|| "unnamed_error".into()),
            },
        }
    }
}

/// Parses a text frame from the sensor socket (one reply or an array).
pub fn parse_sensor_text(text: &str) -> Result<Vec<SensorReply>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let replies: Vec<JsonSensorReply> =
            serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        Ok(replies.into_iter().map(Into::into).collect())
    } else {
        let reply: JsonSensorReply = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        Ok(vec![reply.into()])
    }
}

/// Parses a binary frame from the sensor socket.
pub fn parse_sensor_binary(bytes: &[u8]) -> Result<Vec<SensorReply>, String> {
    bincode_wire::decode(bytes)
}

/// The bincode side: the server's own message types (so the bytes match
/// by construction), encoded through the engine's codec.
pub mod bincode_wire {
    use parkme_engine::codec::{decode_wire, decode_wire_batch, encode_wire};
    pub use parkme_protocol::sensor::{SensorMessage, SensorReply as ServerMessage};

    use super::{SensorBody, SensorReply};

    fn message(seq: u64, body: &SensorBody) -> SensorMessage {
        match body {
            SensorBody::Spot { spot, occupied, at } => SensorMessage::Spot {
                seq,
                spot: spot.to_string(),
                occupied: *occupied,
                at: *at,
            },
            SensorBody::Heartbeat { sensor } => SensorMessage::Heartbeat {
                seq,
                sensor: sensor.to_string(),
            },
        }
    }

    /// One message alone, or a `Vec` for a batch.
    pub fn encode(msgs: &[(u64, &SensorBody)]) -> Vec<u8> {
        if let [(seq, body)] = msgs {
            encode_wire(&message(*seq, body))
        } else {
            let all: Vec<SensorMessage> = msgs.iter().map(|(s, b)| message(*s, b)).collect();
            encode_wire(&all)
        }
    }

    /// One reply, or a `Vec` of them.
    pub fn decode(bytes: &[u8]) -> Result<Vec<SensorReply>, String> {
        let replies = match decode_wire::<ServerMessage>(bytes) {
            Ok(one) => vec![one],
            Err(_) => decode_wire_batch::<ServerMessage>(bytes).map_err(|e| e.to_string())?,
        };
        Ok(replies
            .into_iter()
            .map(|r| match r {
                ServerMessage::Ack { seq } => SensorReply::Ack { seq },
                ServerMessage::Error { seq, code, .. } => SensorReply::Error { seq, code },
            })
            .collect())
    }
}

// ---------------------------------------------------------------------
// App socket
// ---------------------------------------------------------------------

/// A spot entry of a snapshot or delta (only what the harness reads).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamSpot {
    pub id: String,
    #[serde(default)]
    pub state: String,
}

/// A server message on the app socket (only what the harness reads).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamMsg {
    pub t: String,
    #[serde(default)]
    pub facility: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub prev: Option<u64>,
    #[serde(default)]
    pub spots: Option<Vec<StreamSpot>>,
    #[serde(default)]
    pub req: Option<String>,
    #[serde(default)]
    pub booking: Option<Value>,
    #[serde(default)]
    pub code: Option<String>,
}

pub fn parse_stream_text(text: &str) -> Result<StreamMsg, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

pub fn subscribe_op(facility: &str, since: Option<u64>) -> String {
    let mut op = serde_json::json!({"op": "subscribe", "facility": facility, "detail": "spots"});
    if let (Some(since), Value::Object(map)) = (since, &mut op) {
        map.insert("since".into(), since.into());
    }
    op.to_string()
}

pub fn book_op(req: &str, facility: &str, zone: &str, plate: &str, hold_seconds: u64) -> String {
    serde_json::json!({
        "op": "book", "req": req, "facility": facility, "zone": zone,
        "plate": plate, "hold_seconds": hold_seconds,
    })
    .to_string()
}

pub fn cancel_op(req: &str, booking: &str) -> String {
    serde_json::json!({"op": "cancel", "req": req, "booking": booking}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_frames_follow_the_contract() {
        let spot = SensorBody::Spot {
            spot: "A-0001".into(),
            occupied: true,
            at: None,
        };
        let hb = SensorBody::Heartbeat {
            sensor: "A-0002".into(),
        };
        let one = sensor_frame(Encoding::Json, &[(1, &spot)]);
        assert_eq!(
            one.to_text().ok(),
            Some(r#"{"t":"spot","seq":1,"spot":"A-0001","occupied":true}"#)
        );
        let batch = sensor_frame(Encoding::Json, &[(1, &spot), (2, &hb)]);
        let value: Value = serde_json::from_str(batch.to_text().unwrap_or("")).unwrap_or_default();
        assert_eq!(value[1]["t"], "heartbeat");
        assert_eq!(value[1]["seq"], 2);
    }

    #[test]
    fn replies_parse_and_garbage_is_an_error() {
        assert_eq!(
            parse_sensor_text(r#"{"t":"ack","seq":5}"#),
            Ok(vec![SensorReply::Ack { seq: 5 }])
        );
        assert_eq!(
            parse_sensor_text(
                r#"[{"t":"error","seq":2,"code":"unknown_spot"},{"t":"ack","seq":3}]"#
            ),
            Ok(vec![
                SensorReply::Error {
                    seq: Some(2),
                    code: "unknown_spot".into()
                },
                SensorReply::Ack { seq: 3 }
            ])
        );
        assert!(parse_sensor_text("{").is_err());
        assert!(parse_sensor_text(r#"{"t":"ack"}"#).is_err());
        assert!(parse_stream_text("[1,2").is_err());
    }
}
