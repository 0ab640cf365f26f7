//! What a WAL frame holds: the writes of one commit in the embedded
//! backend's own stored encoding, decoupled from the [`Write`] API so the
//! API can grow without making older segments unreadable.
//!
//! Variants are append-only: the first three are the frames every earlier
//! version wrote (`Write` itself was encoded then), so a WAL left by an
//! older binary after `kill -9` replays. This module must never reorder or
//! change an existing variant.

use bincode::{Decode, Encode};
use parkme_engine::{BookingId, Millis, Seq, UserId};

use crate::model::{Epoch, Write, ZoneKey};

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(super) enum Logged {
    Event {
        zone: ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    },
    /// A booking record kept until written again.
    Booking { id: BookingId, bytes: Vec<u8> },
    Idempotency {
        owner: UserId,
        key: String,
        booking: BookingId,
        expires_at: Millis,
    },
    /// A booking record that may be forgotten after `forget_after`.
    BookingUntil {
        id: BookingId,
        bytes: Vec<u8>,
        forget_after: Millis,
    },
}

impl From<&Write> for Logged {
    fn from(write: &Write) -> Self {
        match write.clone() {
            Write::Event {
                zone,
                epoch,
                seq,
                bytes,
            } => Logged::Event {
                zone,
                epoch,
                seq,
                bytes,
            },
            Write::Booking {
                id,
                bytes,
                forget_after: None,
            } => Logged::Booking { id, bytes },
            Write::Booking {
                id,
                bytes,
                forget_after: Some(forget_after),
            } => Logged::BookingUntil {
                id,
                bytes,
                forget_after,
            },
            Write::Idempotency {
                owner,
                key,
                booking,
                expires_at,
                replaces: _,
            } => Logged::Idempotency {
                owner,
                key,
                booking,
                expires_at,
            },
        }
    }
}

impl From<Logged> for Write {
    fn from(logged: Logged) -> Self {
        match logged {
            Logged::Event {
                zone,
                epoch,
                seq,
                bytes,
            } => Write::Event {
                zone,
                epoch,
                seq,
                bytes,
            },
            Logged::Booking { id, bytes } => Write::Booking {
                id,
                bytes,
                forget_after: None,
            },
            Logged::BookingUntil {
                id,
                bytes,
                forget_after,
            } => Write::Booking {
                id,
                bytes,
                forget_after: Some(forget_after),
            },
            Logged::Idempotency {
                owner,
                key,
                booking,
                expires_at,
            } => Write::Idempotency {
                owner,
                key,
                booking,
                expires_at,
                replaces: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use parkme_engine::codec;
    use parkme_engine::{FacilityId, ZoneId};

    use super::*;

    /// The shape every WAL frame had before this module existed.
    #[derive(Debug, Encode, Decode)]
    enum Before {
        Event {
            zone: ZoneKey,
            epoch: Epoch,
            seq: Seq,
            bytes: Vec<u8>,
        },
        Booking {
            id: BookingId,
            bytes: Vec<u8>,
        },
        Idempotency {
            owner: UserId,
            key: String,
            booking: BookingId,
            expires_at: Millis,
        },
    }

    #[test]
    fn frames_written_by_earlier_versions_still_decode() {
        let zone = ZoneKey::new(
            FacilityId::parse("f").expect("id"),
            ZoneId::parse("z").expect("id"),
        );
        let old = vec![
            Before::Event {
                zone: zone.clone(),
                epoch: Epoch(3),
                seq: Seq(7),
                bytes: vec![1, 2],
            },
            Before::Booking {
                id: BookingId::parse("b").expect("id"),
                bytes: vec![9],
            },
            Before::Idempotency {
                owner: UserId::parse("u").expect("id"),
                key: "k".into(),
                booking: BookingId::parse("b").expect("id"),
                expires_at: Millis(5),
            },
        ];
        let decoded: Vec<Logged> =
            codec::decode_stable(&codec::encode_stored(&old)).expect("decodes");
        assert_eq!(
            decoded,
            vec![
                Logged::Event {
                    zone,
                    epoch: Epoch(3),
                    seq: Seq(7),
                    bytes: vec![1, 2]
                },
                Logged::Booking {
                    id: BookingId::parse("b").expect("id"),
                    bytes: vec![9]
                },
                Logged::Idempotency {
                    owner: UserId::parse("u").expect("id"),
                    key: "k".into(),
                    booking: BookingId::parse("b").expect("id"),
                    expires_at: Millis(5)
                },
            ]
        );
    }
}
