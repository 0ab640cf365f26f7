//! Sensor socket, bincode binary frames
//! (`parkme_protocol::sensor::parse_bincode`, through
//! `parkme_protocol::codec::{decode_wire, decode_wire_batch}`): never
//! panics; a frame is messages or exactly one refusal; the messages
//! read, re-encoded as a batch, decode to the same batch; a message with
//! well-formed ids, encoded alone, reads as itself; and each carries over
//! to JSON unchanged (both encodings carry the same messages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_engine::codec::WIRE_LIMIT;
use parkme_protocol::codec::{MAX_FRAME, decode_wire, decode_wire_batch, encode_wire};
use parkme_protocol::sensor::{SensorMessage, parse_bincode, parse_json};

fuzz_target!(|data: &[u8]| {
    // Larger frames are refused by the websocket layer before decoding.
    if data.len() > MAX_FRAME {
        return;
    }
    let frame = parse_bincode(data);
    if !frame.rejected.is_empty() {
        assert!(frame.messages.is_empty(), "{frame:?}");
        assert_eq!(frame.rejected.len(), 1);
        assert_eq!(frame.rejected[0].seq, None);
        return;
    }
    for message in &frame.messages {
        let alone = encode_wire(message);
        if message.to_reading().is_ok() {
            assert_eq!(parse_bincode(&alone).messages, vec![message.clone()]);
        }
        let json = serde_json::to_string(message).expect("a message serializes");
        assert_eq!(parse_json(&json).messages, vec![message.clone()], "{json}");
    }
    let batch = encode_wire(&frame.messages);
    if batch.len() <= WIRE_LIMIT {
        assert_eq!(
            decode_wire_batch::<SensorMessage>(&batch).as_ref(),
            Ok(&frame.messages)
        );
        // A batch is read as one message only when it also reads as a
        // single message with well-formed ids (the documented ambiguity).
        let expected = match decode_wire::<SensorMessage>(&batch) {
            Ok(single) if single.to_reading().is_ok() => vec![single],
            _ => frame.messages.clone(),
        };
        assert_eq!(parse_bincode(&batch).messages, expected);
    }
});
