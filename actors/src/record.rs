//! The durable facility record: the declared layout, the hash of its sensor
//! key and that key's generation, and the seq base carried across layout
//! changes.
//!
//! Records written before key generations existed (no generation field)
//! still decode, as generation 0: an upgrade never locks sensors out.
//! Records of stored format 1 (layouts without reservation quotas) decode
//! through the engine's format-1 layout, with no quota.
//! This module must never store a sensor key itself, only its hash.

use bincode::{Decode, Encode};
use parkme_engine::codec::{self, CodecError, Stored};
use parkme_engine::{FacilityLayout, Millis, format1};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct FacilityRecord {
    pub layout: FacilityLayout,
    /// SHA-256 of the facility's sensor key; the key itself is never stored.
    pub sensor_key_hash: [u8; 32],
    /// Added to the sum of zone seqs to give the facility seq.
    pub seq_base: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Which sensor key is current: 0 until the first rotation, one more
    /// at each. Kept last, so that records without it decode.
    pub sensor_key_generation: u64,
}

/// A record as written before sensor key generations: the same fields
/// without the last one.
#[derive(Decode)]
struct FacilityRecordV1 {
    layout: FacilityLayout,
    sensor_key_hash: [u8; 32],
    seq_base: u64,
    created_at: Millis,
    updated_at: Millis,
}

impl From<FacilityRecordV1> for FacilityRecord {
    fn from(old: FacilityRecordV1) -> Self {
        FacilityRecord {
            layout: old.layout,
            sensor_key_hash: old.sensor_key_hash,
            seq_base: old.seq_base,
            created_at: old.created_at,
            updated_at: old.updated_at,
            sensor_key_generation: 0,
        }
    }
}

impl Stored for FacilityRecord {
    type Format1 = FacilityRecordFormat1;
}

impl Stored for FacilityRecordV1 {
    type Format1 = FacilityRecordV1Format1;
}

/// A current record as stored format 1 wrote it: the format-1 layout.
#[derive(Debug, Decode)]
pub struct FacilityRecordFormat1 {
    layout: format1::FacilityLayout,
    sensor_key_hash: [u8; 32],
    seq_base: u64,
    created_at: Millis,
    updated_at: Millis,
    sensor_key_generation: u64,
}

/// A record without key generations as stored format 1 wrote it.
#[derive(Debug, Decode)]
pub struct FacilityRecordV1Format1 {
    layout: format1::FacilityLayout,
    sensor_key_hash: [u8; 32],
    seq_base: u64,
    created_at: Millis,
    updated_at: Millis,
}

impl From<FacilityRecordFormat1> for FacilityRecord {
    fn from(old: FacilityRecordFormat1) -> Self {
        FacilityRecord {
            layout: old.layout.into(),
            sensor_key_hash: old.sensor_key_hash,
            seq_base: old.seq_base,
            created_at: old.created_at,
            updated_at: old.updated_at,
            sensor_key_generation: old.sensor_key_generation,
        }
    }
}

impl From<FacilityRecordV1Format1> for FacilityRecordV1 {
    fn from(old: FacilityRecordV1Format1) -> Self {
        FacilityRecordV1 {
            layout: old.layout.into(),
            sensor_key_hash: old.sensor_key_hash,
            seq_base: old.seq_base,
            created_at: old.created_at,
            updated_at: old.updated_at,
        }
    }
}

impl FacilityRecord {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_stored(self)
    }

    /// Decodes a record of this version, or of the version before key
    /// generations (as generation 0).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match codec::decode_stored::<FacilityRecord>(bytes) {
            Ok(record) => Ok(record),
            Err(current) => codec::decode_stored::<FacilityRecordV1>(bytes)
                .map(FacilityRecord::from)
                .map_err(|_| current),
        }
    }
}

/// Hashes a sensor key for storage and comparison.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkme_engine::{FacilityId, ZoneId, ZoneLayout, ZoneShape};

    /// The record type as it was before generations, to write old bytes.
    #[derive(Encode)]
    struct OldRecord {
        layout: FacilityLayout,
        sensor_key_hash: [u8; 32],
        seq_base: u64,
        created_at: Millis,
        updated_at: Millis,
    }

    fn layout() -> FacilityLayout {
        FacilityLayout {
            id: FacilityId::parse("f1").expect("id"),
            name: "F1".into(),
            timezone: "UTC".into(),
            location: None,
            zones: vec![ZoneLayout {
                id: ZoneId::parse("z").expect("id"),
                name: "z".into(),
                shape: ZoneShape::Counter {
                    capacity: 3,
                    kind: parkme_engine::SpotKind::Standard,
                },
                reservable: 0,
            }],
        }
    }

    /// The layout as stored format 1 wrote it (no quota).
    fn format1_layout() -> format1::FacilityLayout {
        let layout = layout();
        format1::FacilityLayout {
            id: layout.id,
            name: layout.name,
            timezone: layout.timezone,
            location: layout.location,
            zones: layout
                .zones
                .into_iter()
                .map(|z| format1::ZoneLayout {
                    id: z.id,
                    name: z.name,
                    shape: z.shape,
                })
                .collect(),
        }
    }

    /// Records as the binaries of stored format 1 wrote them: with and
    /// without a key generation.
    #[derive(Encode)]
    struct Format1Record {
        layout: format1::FacilityLayout,
        sensor_key_hash: [u8; 32],
        seq_base: u64,
        created_at: Millis,
        updated_at: Millis,
        sensor_key_generation: u64,
    }

    #[derive(Encode)]
    struct Format1RecordWithoutGeneration {
        layout: format1::FacilityLayout,
        sensor_key_hash: [u8; 32],
        seq_base: u64,
        created_at: Millis,
        updated_at: Millis,
    }

    #[test]
    fn a_record_of_stored_format_1_decodes_with_no_reservation_quota() {
        let old = Format1Record {
            layout: format1_layout(),
            sensor_key_hash: hash_key("sk_old"),
            seq_base: 4,
            created_at: Millis(1),
            updated_at: Millis(2),
            sensor_key_generation: 3,
        };
        let record = FacilityRecord::decode(&codec::encode_stored_as_format1(&old))
            .expect("format-1 bytes decode");
        assert_eq!(record.layout, layout());
        assert_eq!(record.sensor_key_generation, 3);
        assert_eq!(record.seq_base, 4);
        let older = Format1RecordWithoutGeneration {
            layout: format1_layout(),
            sensor_key_hash: hash_key("sk_old"),
            seq_base: 4,
            created_at: Millis(1),
            updated_at: Millis(2),
        };
        let record = FacilityRecord::decode(&codec::encode_stored_as_format1(&older))
            .expect("format-1 bytes without a generation decode");
        assert_eq!(record.layout, layout());
        assert_eq!(record.sensor_key_generation, 0);
    }

    #[test]
    fn a_record_written_before_key_generations_decodes_as_generation_zero() {
        let old = OldRecord {
            layout: layout(),
            sensor_key_hash: hash_key("sk_old"),
            seq_base: 7,
            created_at: Millis(1),
            updated_at: Millis(2),
        };
        let record = FacilityRecord::decode(&codec::encode_stored(&old)).expect("old bytes decode");
        assert_eq!(record.sensor_key_generation, 0);
        assert_eq!(record.sensor_key_hash, hash_key("sk_old"));
        assert_eq!(record.seq_base, 7);
        assert_eq!(record.layout, layout());
    }

    #[test]
    fn a_current_record_round_trips_with_its_generation() {
        let record = FacilityRecord {
            layout: layout(),
            sensor_key_hash: hash_key("sk_new"),
            seq_base: 3,
            created_at: Millis(1),
            updated_at: Millis(2),
            sensor_key_generation: 5,
        };
        assert_eq!(FacilityRecord::decode(&record.encode()), Ok(record));
        assert!(FacilityRecord::decode(&[1, 2, 3]).is_err());
    }
}
