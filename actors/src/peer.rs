//! A facility's published state as one cluster node hands it to another:
//! each delta its owner publishes ([`PeerDelta`], sent once per facility
//! over Redis) and the image a node keeping a copy starts from or resyncs
//! to ([`PeerImage`], fetched from the owner).
//!
//! Plain values and their bytes, through the engine's one codec (peer
//! encoding: a format byte, then bincode). This module must never do I/O
//! nor trust the bytes it decodes: a bad message is an error, never a
//! panic.

use std::sync::Arc;
use std::time::Instant;

use bincode::{Decode, Encode};
use parkme_engine::codec::{self, CodecError};
use parkme_engine::{FacilityId, Seq, SpotView};

use crate::publish::{Delta, FacilityView, Snapshot, ZoneView};

/// One published delta, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct PeerDelta {
    pub facility: FacilityId,
    pub prev: Seq,
    pub seq: Seq,
    pub zones: Vec<ZoneView>,
    pub spots: Vec<SpotView>,
    pub relaid: bool,
}

impl PeerDelta {
    pub fn of(delta: &Delta) -> Self {
        PeerDelta {
            facility: delta.facility.clone(),
            prev: delta.prev,
            seq: delta.seq,
            zones: delta.zones.clone(),
            spots: delta.spots.clone(),
            relaid: delta.relaid,
        }
    }

    /// The delta as this node publishes it to its own subscribers;
    /// `published_at` is when it arrived here.
    pub fn into_delta(self, published_at: Instant) -> Delta {
        Delta {
            facility: self.facility,
            prev: self.prev,
            seq: self.seq,
            zones: self.zones,
            spots: self.spots,
            relaid: self.relaid,
            published_at,
            edge: Default::default(),
        }
    }
}

/// A facility's whole published state at `view.seq`, then the deltas
/// that follow it (the owner's snapshot may be a shared, slightly older
/// one: `catch_up` brings it up to date).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct PeerImage {
    pub view: FacilityView,
    pub spots: Vec<SpotView>,
    pub catch_up: Vec<PeerDelta>,
}

impl PeerImage {
    pub fn of(snapshot: &Snapshot, catch_up: &[Arc<Delta>]) -> Self {
        PeerImage {
            view: snapshot.view.clone(),
            spots: snapshot.spots.clone(),
            catch_up: catch_up.iter().map(|d| PeerDelta::of(d)).collect(),
        }
    }

    /// The seq the image reaches with its catch-up.
    pub fn seq(&self) -> Seq {
        self.catch_up.last().map_or(self.view.seq, |d| d.seq)
    }
}

pub fn encode_delta(delta: &Delta) -> Vec<u8> {
    codec::encode_peer(&PeerDelta::of(delta))
}

pub fn decode_delta(bytes: &[u8]) -> Result<PeerDelta, CodecError> {
    codec::decode_peer(bytes)
}

pub fn encode_image(image: &PeerImage) -> Vec<u8> {
    codec::encode_peer(image)
}

pub fn decode_image(bytes: &[u8]) -> Result<PeerImage, CodecError> {
    codec::decode_peer(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkme_engine::{BookingId, SpotId, SpotKind, SpotState, ZoneCounts, ZoneId};

    fn spot(id: &str, state: SpotState) -> SpotView {
        SpotView {
            id: SpotId::parse(id).expect("id"),
            zone: ZoneId::parse("z1").expect("zone"),
            kind: SpotKind::Ev,
            state,
            booking: Some(BookingId::parse("b-1").expect("booking")),
            overstay: true,
        }
    }

    fn zone() -> ZoneView {
        ZoneView {
            id: ZoneId::parse("z1").expect("zone"),
            name: "Level 1".into(),
            capacity: Some(40),
            reservable: 3,
            counts: ZoneCounts::default(),
        }
    }

    #[test]
    fn a_delta_and_an_image_read_back_as_they_were_sent() {
        let delta = PeerDelta {
            facility: FacilityId::parse("f1").expect("fid"),
            prev: Seq(4),
            seq: Seq(6),
            zones: vec![zone()],
            spots: vec![spot("s-1", SpotState::Reserved)],
            relaid: false,
        };
        let bytes = codec::encode_peer(&delta);
        assert_eq!(decode_delta(&bytes), Ok(delta.clone()));
        let image = PeerImage {
            view: FacilityView {
                id: delta.facility.clone(),
                name: "Centre".into(),
                timezone: "Europe/Paris".into(),
                location: None,
                seq: Seq(4),
                totals: ZoneCounts::default(),
                zones: vec![zone()],
            },
            spots: vec![spot("s-1", SpotState::Occupied)],
            catch_up: vec![delta],
        };
        assert_eq!(image.seq(), Seq(6));
        assert_eq!(decode_image(&encode_image(&image)), Ok(image));
    }

    #[test]
    fn bad_bytes_are_an_error_not_a_panic() {
        assert!(decode_delta(&[]).is_err());
        assert!(decode_delta(&[2, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_image(&[9, 1, 2, 3]).is_err());
        let mut bytes = codec::encode_peer(&PeerDelta {
            facility: FacilityId::parse("f1").expect("fid"),
            prev: Seq(1),
            seq: Seq(2),
            zones: vec![zone()],
            spots: vec![],
            relaid: true,
        });
        bytes.truncate(bytes.len() - 1);
        assert!(decode_delta(&bytes).is_err());
    }
}
