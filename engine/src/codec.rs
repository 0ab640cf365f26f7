//! The one place that turns values into bytes and back.
//!
//! Two encodings, both bincode 2 with the standard config:
//! - *stored* records (journal events, snapshots, booking records) start
//!   with a format byte so the format can move without a flag day;
//! - *peer* messages (what one cluster node sends another: a facility's
//!   published deltas and images) start with the same format byte and are
//!   read with the stored limit, so nodes of two versions can tell;
//! - *wire* messages (the sensor socket's `parkme.v1.bincode`) are plain
//!   bincode, as the contract specifies, and decoding is size-limited.
//!   A wire *batch* (a bincode `Vec`) is read element by element by
//!   [`decode_wire_batch`]: bincode's own `Vec` decoder charges
//!   `len × size_of::<T>()` against the limit before it reads anything
//!   (to bound the allocation a length prefix can ask for), which refuses
//!   honest batches of a few thousand small messages; here a claimed
//!   length is checked against the bytes that follow instead, and the
//!   `Vec` only grows with elements actually read.
//!
//! Stored formats. Format 2 (this version) added advance reservations,
//! stay windows and sensor liveness to bookings, layouts, events and
//! snapshots. A type read with [`decode_stored`] says, through [`Stored`],
//! how format 1 wrote it ([`crate::format1`] holds the old shapes), so a
//! record written by an older binary decodes into today's type; types
//! whose shape never changed (storage frames holding other records as
//! opaque bytes) are read with [`decode_stable`].
//!
//! Nothing else in the workspace may call bincode directly. This module
//! must never panic on bad bytes: every decode returns a `CodecError`.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};

/// The format byte of stored records written by this version.
pub const STORED_FORMAT: u8 = 2;
/// The format before advance reservations, stay windows and liveness.
pub const FORMAT_1: u8 = 1;
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
    #[error("{len} bytes is over the {limit}-byte wire limit")]
    TooLarge { len: usize, limit: usize },
    #[error("the batch claims {claimed} items but only {available} bytes follow")]
    ClaimedTooMany { claimed: u64, available: usize },
    #[error("batch item {index}: {reason}")]
    Item { index: usize, reason: String },
}

/// Elements reserved up front for a wire batch; past it the `Vec` grows
/// as elements are read, so a length prefix alone never allocates more.
const BATCH_PREALLOCATE: usize = 1024;

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

/// A type kept in storage whose shape may differ between formats.
pub trait Stored: Decode<()> + Sized {
    /// How format 1 wrote it; `Self` when its shape did not change.
    type Format1: Decode<()> + Into<Self>;
}

/// Encodes a record as format 1 wrote it (`value` of a
/// [`crate::format1`] shape), for tests of the upgrade path.
pub fn encode_stored_as_format1<T: Encode>(value: &T) -> Vec<u8> {
    let mut out = encode_stored(value);
    out[0] = FORMAT_1;
    out
}

fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::decode_from_slice(body, stored_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

/// Decodes a stored record written by [`encode_stored`] of this version
/// or of format 1 (converted to today's shape).
pub fn decode_stored<T: Stored>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match format {
        STORED_FORMAT => decode_body(body),
        FORMAT_1 => decode_body::<T::Format1>(body).map(Into::into),
        other => Err(CodecError::UnknownFormat(other)),
    }
}

/// Decodes a stored record of a type whose shape is the same in every
/// format (storage frames that hold other records as opaque bytes).
pub fn decode_stable<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match format {
        STORED_FORMAT | FORMAT_1 => decode_body(body),
        other => Err(CodecError::UnknownFormat(other)),
    }
}

impl Stored for crate::zone::Event {
    type Format1 = crate::format1::Event;
}

impl Stored for crate::zone::ZoneSnapshot {
    type Format1 = crate::format1::ZoneSnapshot;
}

impl Stored for crate::booking::Booking {
    type Format1 = crate::format1::Booking;
}

impl Stored for crate::layout::FacilityLayout {
    type Format1 = crate::format1::FacilityLayout;
}

impl Stored for crate::layout::ZoneLayout {
    type Format1 = crate::format1::ZoneLayout;
}

/// Encodes a message for another cluster node: format byte, then the value.
pub fn encode_peer<T: Encode>(value: &T) -> Vec<u8> {
    encode_stored(value)
}

/// Decodes what [`encode_peer`] wrote (on a node of this format).
pub fn decode_peer<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&format, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match format {
        STORED_FORMAT => decode_body(body),
        other => Err(CodecError::UnknownFormat(other)),
    }
}

/// Encodes a wire message (no format byte).
pub fn encode_wire<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, config::standard()).unwrap_or_default()
}

/// Decodes a wire message; refuses trailing bytes and oversized values.
/// For a batch (`Vec<T>`) use [`decode_wire_batch`], which accepts every
/// batch that fits the limit.
pub fn decode_wire<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::decode_from_slice(bytes, wire_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Decodes a wire batch, a bincode `Vec<T>` (varint length, then the
/// elements), as bincode would but bounded by the bytes instead of by
/// `len × size_of::<T>()`: every batch of at most [`WIRE_LIMIT`] bytes
/// decodes. A claimed length larger than the bytes that follow is
/// refused before anything is allocated (every element takes at least
/// one byte: an enum tag, a length, a number), and memory grows only
/// with elements actually decoded, so it stays proportional to the frame.
pub fn decode_wire_batch<T: Decode<()>>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    if bytes.len() > WIRE_LIMIT {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: WIRE_LIMIT,
        });
    }
    let (claimed, mut used) = bincode::decode_from_slice::<u64, _>(bytes, wire_config())
        .map_err(|e| CodecError::Malformed(format!("batch length: {e}")))?;
    let available = bytes.len() - used;
    let len = usize::try_from(claimed)
        .ok()
        .filter(|&len| len <= available)
        .ok_or(CodecError::ClaimedTooMany { claimed, available })?;
    let mut items = Vec::with_capacity(len.min(BATCH_PREALLOCATE));
    for index in 0..len {
        let rest = &bytes[used..];
        let (item, taken) =
            bincode::decode_from_slice::<T, _>(rest, wire_config()).map_err(|e| {
                CodecError::Item {
                    index,
                    reason: e.to_string(),
                }
            })?;
        used += taken;
        items.push(item);
    }
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(items)
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

    /// Shaped like the sensor socket's messages (the real type lives in
    /// the gateway): an enum tag, a seq, an id, a flag, an option.
    #[derive(Debug, Clone, PartialEq, Encode, Decode)]
    enum Msg {
        Spot {
            seq: u64,
            spot: String,
            occupied: bool,
            at: Option<i64>,
        },
        Beat {
            seq: u64,
            sensor: String,
        },
    }

    fn spot(seq: u64) -> Msg {
        Msg::Spot {
            seq,
            spot: format!("A-{}", seq % 500),
            occupied: seq.is_multiple_of(2),
            at: None,
        }
    }

    /// The longest batch of `spot` messages whose encoding fits `limit`.
    fn largest_batch(limit: usize) -> (Vec<Msg>, Vec<u8>) {
        let mut batch = Vec::new();
        let mut bytes = encode_wire(&batch);
        loop {
            batch.push(spot(batch.len() as u64 + 1));
            let longer = encode_wire(&batch);
            if longer.len() > limit {
                batch.pop();
                return (batch, bytes);
            }
            bytes = longer;
        }
    }

    #[test]
    fn the_largest_batch_that_fits_the_wire_limit_decodes() {
        let (batch, bytes) = largest_batch(WIRE_LIMIT);
        assert!(bytes.len() > WIRE_LIMIT - 16, "{} bytes", bytes.len());
        assert!(batch.len() > 5_000, "{} messages", batch.len());
        // Plain bincode refuses it: its limit counts len × size_of.
        assert!(decode_wire::<Vec<Msg>>(&bytes).is_err());
        assert_eq!(decode_wire_batch::<Msg>(&bytes), Ok(batch));
    }

    #[test]
    fn wire_batches_read_like_bincode_vecs() {
        let empty: Vec<Msg> = Vec::new();
        assert_eq!(decode_wire_batch::<Msg>(&encode_wire(&empty)), Ok(empty));
        let mixed = vec![
            spot(1),
            Msg::Beat {
                seq: 2,
                sensor: "gw".into(),
            },
            spot(300),
        ];
        assert_eq!(decode_wire_batch::<Msg>(&encode_wire(&mixed)), Ok(mixed));
    }

    #[test]
    fn a_huge_claimed_length_is_refused_before_anything_is_allocated() {
        // u64 varint 0xfd: a length of 2^63 - 1 with three bytes after it.
        let mut huge = vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        huge.extend([1, 2, 3]);
        assert_eq!(
            decode_wire_batch::<Msg>(&huge),
            Err(CodecError::ClaimedTooMany {
                claimed: i64::MAX as u64,
                available: 3
            })
        );
        // One more item claimed than there are bytes.
        let mut bytes = encode_wire(&vec![spot(1)]);
        bytes[0] = u8::try_from(bytes.len()).expect("small");
        assert!(matches!(
            decode_wire_batch::<Msg>(&bytes),
            Err(CodecError::ClaimedTooMany { .. })
        ));
        // A claim that the bytes could hold but do not: a clear error
        // naming the item, after reading only what is there.
        let mut short = vec![0xfb, 0x60, 0xea];
        short.extend(std::iter::repeat_n(0x00, 60_000));
        let error = decode_wire_batch::<Msg>(&short).expect_err("truncated");
        assert!(matches!(error, CodecError::Item { .. }), "{error}");
    }

    #[test]
    fn a_bad_item_names_its_index_and_oversized_input_is_refused() {
        let mut bytes = encode_wire(&vec![spot(1), spot(2), spot(3)]);
        let second = 1 + encode_wire(&spot(1)).len();
        bytes[second] = 9; // no such variant
        assert!(matches!(
            decode_wire_batch::<Msg>(&bytes),
            Err(CodecError::Item { index: 1, .. })
        ));
        let (_, mut fits) = largest_batch(WIRE_LIMIT);
        fits.resize(WIRE_LIMIT + 1, 0);
        assert!(matches!(
            decode_wire_batch::<Msg>(&fits),
            Err(CodecError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_to_a_batch_or_an_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_wire_batch::<Msg>(&bytes);
        }

        #[test]
        fn any_batch_within_the_limit_round_trips(seqs in proptest::collection::vec(proptest::num::u64::ANY, 0..2_000)) {
            let batch: Vec<Msg> = seqs.into_iter().map(spot).collect();
            let bytes = encode_wire(&batch);
            proptest::prop_assume!(bytes.len() <= WIRE_LIMIT);
            proptest::prop_assert_eq!(decode_wire_batch::<Msg>(&bytes), Ok(batch));
        }
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
