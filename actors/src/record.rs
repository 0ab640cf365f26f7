//! The durable facility record: the declared layout, the hash of its sensor
//! key and the seq base carried across layout changes.

use bincode::{Decode, Encode};
use parkme_engine::codec::{self, CodecError};
use parkme_engine::{FacilityLayout, Millis};
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
}

impl FacilityRecord {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_stored(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_stored(bytes)
    }
}

/// Hashes a sensor key for storage and comparison.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
