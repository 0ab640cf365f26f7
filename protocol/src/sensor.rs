//! The sensor socket (contract §4): [`SensorMessage`] in, [`SensorReply`]
//! out, as JSON (`parkme.v1.json`, text frames) or bincode 2 standard
//! config (`parkme.v1.bincode`, binary frames). A frame is one message or a
//! batch (JSON array / bincode `Vec`). [`SensorMessage::to_reading`] is the
//! one place a wire message becomes the engine's [`Reading`].
//!
//! This module must never panic on what a sensor sends: every frame
//! becomes messages or rejections.

use bincode::{Decode, Encode};
use parkme_engine::{Plate, PlateDirection, Reading, SpotId, ZoneId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::codec::{decode_wire, decode_wire_batch, encode_wire};

/// The direction of a plate read, as the wire spells it (`"in"`, `"out"`;
/// bincode variants 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl From<Direction> for PlateDirection {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::In => PlateDirection::In,
            Direction::Out => PlateDirection::Out,
        }
    }
}

/// Subprotocol of JSON text frames (the default).
pub const JSON_PROTOCOL: &str = "parkme.v1.json";
/// Subprotocol of bincode binary frames.
pub const BINCODE_PROTOCOL: &str = "parkme.v1.bincode";

/// A sensor → server message. The same type is the JSON shape
/// (`{"t":"spot",...}`) and the bincode layout (variants and fields in
/// declaration order), so both encodings carry exactly the same messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, ToSchema)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum SensorMessage {
    Spot {
        seq: u64,
        spot: String,
        occupied: bool,
        /// When the sensor saw it (ms since the epoch); informational.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    Count {
        seq: u64,
        zone: String,
        delta: i32,
    },
    Plate {
        seq: u64,
        gate: String,
        plate: String,
        dir: Direction,
    },
    Heartbeat {
        seq: u64,
        #[serde(default)]
        sensor: String,
    },
}

/// A server → sensor message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode, ToSchema)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum SensorReply {
    /// Every message up to `seq` on this connection is durable or was
    /// answered with an error.
    Ack { seq: u64 },
    /// One message (or an unreadable frame, `seq` unknown) was refused.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        code: String,
        message: String,
    },
}

/// How a sensor connection encodes its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Bincode,
}

impl Codec {
    pub fn from_protocol(protocol: Option<&str>) -> Codec {
        match protocol {
            Some(BINCODE_PROTOCOL) => Codec::Bincode,
            _ => Codec::Json,
        }
    }
}

/// A message the server refuses, answered with an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub seq: Option<u64>,
    pub code: &'static str,
    pub message: String,
}

impl Rejected {
    fn malformed(seq: Option<u64>, message: impl Into<String>) -> Rejected {
        Rejected {
            seq,
            code: "malformed_message",
            message: message.into(),
        }
    }

    pub fn into_reply(self) -> SensorReply {
        SensorReply::Error {
            seq: self.seq,
            code: self.code.to_owned(),
            message: self.message,
        }
    }
}

/// What one frame held, in order: readable messages and refused ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub messages: Vec<SensorMessage>,
    pub rejected: Vec<Rejected>,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.messages.len() + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a JSON text frame: one object or an array of them. A bad
/// element of an array is refused alone; its neighbours still count.
pub fn parse_json(text: &str) -> Frame {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        if let Ok(messages) = serde_json::from_str::<Vec<SensorMessage>>(trimmed) {
            return Frame {
                messages,
                rejected: Vec::new(),
            };
        }
        let Ok(values) = serde_json::from_str::<Vec<Value>>(trimmed) else {
            return Frame {
                messages: Vec::new(),
                rejected: vec![Rejected::malformed(None, "the frame is not a JSON array")],
            };
        };
        let mut frame = Frame::default();
        for value in values {
            match parse_json_value(value) {
                Ok(message) => frame.messages.push(message),
                Err(rejected) => frame.rejected.push(rejected),
            }
        }
        return frame;
    }
    match serde_json::from_str::<SensorMessage>(trimmed) {
        Ok(message) => Frame {
            messages: vec![message],
            rejected: Vec::new(),
        },
        Err(error) => {
            let rejected = match serde_json::from_str::<Value>(trimmed) {
                Ok(value) => parse_json_value(value).err(),
                Err(_) => None,
            }
            .unwrap_or_else(|| Rejected::malformed(None, format!("invalid JSON: {error}")));
            Frame {
                messages: Vec::new(),
                rejected: vec![rejected],
            }
        }
    }
}

fn parse_json_value(value: Value) -> Result<SensorMessage, Rejected> {
    let seq = value.get("seq").and_then(Value::as_u64);
    serde_json::from_value(value).map_err(|e| Rejected::malformed(seq, e.to_string()))
}

/// Parses a bincode binary frame: one message or a `Vec` of them. Any
/// batch that fits the frame decodes, whatever its length (see
/// [`decode_wire_batch`]); a length prefix claiming more than the frame
/// holds is refused without allocating.
///
/// A short frame can, rarely, read both ways (`[1, 3, 0, 0]` is a batch
/// of one heartbeat and also a count message naming the empty zone): a
/// single message is taken only if its ids are well formed, else a batch.
pub fn parse_bincode(bytes: &[u8]) -> Frame {
    let single = decode_wire::<SensorMessage>(bytes);
    if single.as_ref().is_ok_and(|m| m.to_reading().is_ok()) {
        return Frame {
            messages: single.into_iter().collect(),
            rejected: Vec::new(),
        };
    }
    match decode_wire_batch::<SensorMessage>(bytes) {
        Ok(messages) => Frame {
            messages,
            rejected: Vec::new(),
        },
        Err(batch_error) => match single {
            Ok(message) => Frame {
                messages: vec![message],
                rejected: Vec::new(),
            },
            Err(_) => Frame {
                messages: Vec::new(),
                rejected: vec![Rejected::malformed(
                    None,
                    format!("not a bincode message or batch: {batch_error}"),
                )],
            },
        },
    }
}

impl SensorMessage {
    pub fn seq(&self) -> u64 {
        match self {
            SensorMessage::Spot { seq, .. }
            | SensorMessage::Count { seq, .. }
            | SensorMessage::Plate { seq, .. }
            | SensorMessage::Heartbeat { seq, .. } => *seq,
        }
    }

    /// The reading this message asks the node to apply. An id that is not
    /// well formed cannot name anything, so it is unknown.
    pub fn to_reading(&self) -> Result<Reading, Rejected> {
        let seq = Some(self.seq());
        match self {
            SensorMessage::Spot { spot, occupied, .. } => SpotId::parse(spot)
                .map(|spot| Reading::Spot {
                    spot,
                    occupied: *occupied,
                })
                .map_err(|_| Rejected {
                    seq,
                    code: "unknown_spot",
                    message: format!("spot {spot:?} does not exist"),
                }),
            SensorMessage::Count { zone, delta, .. } => ZoneId::parse(zone)
                .map(|zone| Reading::Count {
                    zone,
                    delta: *delta,
                })
                .map_err(|_| Rejected {
                    seq,
                    code: "unknown_zone",
                    message: format!("zone {zone:?} does not exist"),
                }),
            SensorMessage::Plate { plate, dir, .. } => Plate::parse(plate)
                .map(|plate| Reading::Plate {
                    plate,
                    direction: (*dir).into(),
                })
                .map_err(|e| Rejected {
                    seq,
                    code: "invalid_plate",
                    message: e.to_string(),
                }),
            SensorMessage::Heartbeat { sensor, .. } => Ok(Reading::Heartbeat {
                sensor: sensor.clone(),
            }),
        }
    }
}

/// Encodes a reply in the connection's codec: the frame to send is text
/// for JSON, binary for bincode.
#[derive(Debug)]
pub enum Encoded {
    Text(String),
    Binary(Vec<u8>),
}

pub fn encode_reply(codec: Codec, reply: &SensorReply) -> Encoded {
    match codec {
        Codec::Json => Encoded::Text(serde_json::to_string(reply).unwrap_or_default()),
        Codec::Bincode => Encoded::Binary(encode_wire(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(seq: u64, id: &str, occupied: bool) -> SensorMessage {
        SensorMessage::Spot {
            seq,
            spot: id.into(),
            occupied,
            at: None,
        }
    }

    #[test]
    fn json_single_messages_and_batches_parse() {
        let one = parse_json(r#"{"t":"spot","seq":1,"spot":"P1-017","occupied":true}"#);
        assert_eq!(one.messages, vec![spot(1, "P1-017", true)]);
        let batch = parse_json(
            r#"[{"t":"count","seq":2,"zone":"P2","delta":-1},
                {"t":"plate","seq":3,"gate":"north","plate":"AB123CD","dir":"in"},
                {"t":"heartbeat","seq":4,"sensor":"s-9"}]"#,
        );
        assert_eq!(batch.messages.len(), 3);
        assert!(batch.rejected.is_empty());
        assert_eq!(
            batch.messages[1],
            SensorMessage::Plate {
                seq: 3,
                gate: "north".into(),
                plate: "AB123CD".into(),
                dir: Direction::In,
            }
        );
    }

    #[test]
    fn a_bad_element_is_refused_alone_with_its_seq() {
        let frame = parse_json(
            r#"[{"t":"spot","seq":1,"spot":"a","occupied":true},{"t":"spot","seq":2},{"t":"nope","seq":3},7]"#,
        );
        assert_eq!(frame.messages, vec![spot(1, "a", true)]);
        let seqs: Vec<Option<u64>> = frame.rejected.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![Some(2), Some(3), None]);
        assert!(frame.rejected.iter().all(|r| r.code == "malformed_message"));
    }

    #[test]
    fn garbage_is_one_rejection_without_a_seq() {
        for garbage in ["", "{", "[", "null", "\"x\"", "[1,", "{\"t\":\"spot\"}"] {
            let frame = parse_json(garbage);
            assert!(frame.messages.is_empty(), "{garbage}");
            assert_eq!(frame.rejected.len(), 1, "{garbage}");
        }
        let frame = parse_bincode(&[0xff, 0xff, 0xff]);
        assert!(frame.messages.is_empty());
        assert_eq!(frame.rejected.len(), 1);
    }

    #[test]
    fn bincode_layout_is_plain_standard_config() {
        // Variant 0 (spot), seq 1, "a", true, at None.
        assert_eq!(encode_wire(&spot(1, "a", true)), vec![0, 1, 1, b'a', 1, 0]);
        assert_eq!(
            encode_wire(&SensorReply::Ack { seq: 300 }),
            vec![0, 251, 0x2c, 0x01]
        );
    }

    #[test]
    fn bincode_single_messages_and_batches_parse() {
        let one = encode_wire(&spot(7, "P1-017", false));
        assert_eq!(parse_bincode(&one).messages, vec![spot(7, "P1-017", false)]);
        let batch = vec![
            spot(1, "a", true),
            SensorMessage::Heartbeat {
                seq: 2,
                sensor: "x".into(),
            },
            SensorMessage::Count {
                seq: 3,
                zone: "Z".into(),
                delta: -2,
            },
        ];
        assert_eq!(parse_bincode(&encode_wire(&batch)).messages, batch);
        // Ambiguous bytes: a batch of one heartbeat, or a count naming "".
        let tiny = vec![SensorMessage::Heartbeat {
            seq: 0,
            sensor: String::new(),
        }];
        assert_eq!(parse_bincode(&encode_wire(&tiny)).messages, tiny);
    }

    #[test]
    fn the_largest_bincode_batch_that_fits_a_frame_parses_whole() {
        let mut batch = Vec::new();
        loop {
            let seq = batch.len() as u64 + 1;
            batch.push(spot(
                seq,
                &format!("P{}-{}", seq % 7, seq % 1000),
                seq.is_multiple_of(2),
            ));
            if encode_wire(&batch).len() > crate::codec::MAX_FRAME {
                batch.pop();
                break;
            }
        }
        assert!(batch.len() > 4_000, "{} messages", batch.len());
        let frame = parse_bincode(&encode_wire(&batch));
        assert!(frame.rejected.is_empty(), "{:?}", frame.rejected);
        assert_eq!(frame.messages, batch);
    }

    #[test]
    fn a_huge_claimed_batch_length_is_one_clear_rejection() {
        let hostile = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 1];
        let frame = parse_bincode(&hostile);
        assert!(frame.messages.is_empty());
        assert_eq!(frame.rejected.len(), 1);
        assert_eq!(frame.rejected[0].seq, None);
        assert!(
            frame.rejected[0].message.contains("claims"),
            "{}",
            frame.rejected[0].message
        );
    }

    #[test]
    fn ill_formed_ids_are_unknown() {
        let bad = SensorMessage::Spot {
            seq: 4,
            spot: "no spaces".into(),
            occupied: true,
            at: None,
        };
        let rejected = bad.to_reading().expect_err("refused");
        assert_eq!((rejected.seq, rejected.code), (Some(4), "unknown_spot"));
    }
}
