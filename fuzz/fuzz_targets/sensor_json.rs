//! Sensor socket, JSON text frames (`parkme_protocol::sensor::parse_json`):
//! never panics; every element of an array frame is answered (a message
//! or a refusal), a lone value is one answer; what was read, written back
//! as JSON (alone or as a batch), reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_protocol::sensor::{Frame, SensorMessage, parse_json};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the websocket layer checks before us).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = parse_json(text);
    let answers = match serde_json::from_str::<Value>(text.trim_start()) {
        Ok(Value::Array(items)) => items.len(),
        _ => 1,
    };
    assert_eq!(frame.len(), answers, "{frame:?}");
    for refused in &frame.rejected {
        assert_eq!(refused.code, "malformed_message");
    }
    for message in &frame.messages {
        let _ = message.to_reading();
        let alone = serde_json::to_string(message).expect("a message serializes");
        assert_eq!(
            parse_json(&alone),
            Frame {
                messages: vec![message.clone()],
                rejected: Vec::new(),
            },
            "{alone}"
        );
    }
    let batch: &[SensorMessage] = &frame.messages;
    let batch = serde_json::to_string(batch).expect("a batch serializes");
    assert_eq!(
        parse_json(&batch),
        Frame {
            messages: frame.messages.clone(),
            rejected: Vec::new(),
        }
    );
});
