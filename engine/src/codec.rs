//! The one place that turns values into bytes and back.
//!
//! Two encodings, both bincode 2 with the standard config:
//! - *stored* records (journal events, snapshots, booking records) start
//!   with a format byte so the format can move without a flag day;
//! - *wire* messages (the sensor socket's `parkme.v1.bincode`) are plain
//!   bincode, as the contract specifies, and decoding is size-limited.
//!
//! Nothing else in the workspace may call bincode directly. This module
//! must never panic on bad bytes: every decode returns a `CodecError`.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};

/// The format byte of stored records written by this version.
pub const STORED_FORMAT: u8 = 1;
/// Largest wire message decoded (the sensor socket's frame limit).
pub const WIRE_LIMIT: usize = 64 * 1024;
/// Largest stored record decoded.
pub const STORED_LIMIT: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty")]
    Empty,
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("malformed bytes: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

fn wire_config() -> Configuration<LittleEndian, Varint, Limit<WIRE_LIMIT>> {
    config::standard().with_limit::<WIRE_LIMIT>()
}

fn stored_config() -> Configuration<LittleEndian, Varint, Limit<STORED_LIMIT>> {
    config::standard().with_limit::<STORED_LIMIT>()
}

/// Encodes a stored record: format byte, then the value.
pub fn encode_stored<T: Encode>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(STORED_FORMAT);
    // Encoding into a Vec cannot fail for our types (no limit on encode).
    if let Err(e) = bincode::encode_into_std_write(value, &mut out, config::standard()) {
        debug_assert!(false, "encoding into a Vec failed: {e}");
    }
    out
}

/// Decodes a stored record written by [`encode_stored`].
pub fn decode_stored<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != STORED_FORMAT {
        return Err(CodecError::UnknownFormat(format));
    }
    let (value, used) = bincode::decode_from_slice(body, stored_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Encodes a wire message (no format byte).
pub fn encode_wire<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, config::standard()).unwrap_or_default()
}

/// Decodes a wire message; refuses trailing bytes and oversized values.
pub fn decode_wire<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::decode_from_slice(bytes, wire_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SpotId;
    use crate::zone::Event;

    #[test]
    fn stored_records_round_trip() {
        let event = Event::SpotSensed {
            spot: SpotId::parse("P1-017").expect("valid id"),
            occupied: true,
        };
        let bytes = encode_stored(&event);
        assert_eq!(bytes[0], STORED_FORMAT);
        assert_eq!(decode_stored::<Event>(&bytes), Ok(event));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode_stored::<Event>(&[]), Err(CodecError::Empty));
        assert_eq!(
            decode_stored::<Event>(&[9, 1, 2]),
            Err(CodecError::UnknownFormat(9))
        );
        assert!(decode_stored::<Event>(&[STORED_FORMAT, 200, 200, 200]).is_err());
        assert!(
            decode_wire::<Vec<Event>>(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .is_err()
        );
    }
}
