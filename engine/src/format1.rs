//! The shapes of stored format 1: what binaries before advance
//! reservations, stay windows and sensor liveness wrote, field for field,
//! and how each becomes today's type.
//!
//! [`crate::codec::decode_stored`] reads a record with format byte 1
//! through these types (see [`crate::codec::Stored`]). What the old
//! shapes could not say gets its neutral value: no window, no overstay, no
//! quota (`reservable: 0`), no spot stale.
//!
//! This module must never change: these types are a record of bytes
//! already on disks. New formats get their own module.

use bincode::{Decode, Encode};

use crate::ids::{BookingId, FacilityId, Millis, Plate, Seq, SpotId, UserId, ZoneId};
use crate::kinds::{BookingStatus, SpotKind};
use crate::layout::{Location, ZoneShape};

/// A booking of format 1: one kind, no window, no overstay.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Booking {
    pub id: BookingId,
    pub facility: FacilityId,
    pub zone: ZoneId,
    pub spot: Option<SpotId>,
    pub kind: SpotKind,
    pub plate: Plate,
    pub owner: UserId,
    pub status: BookingStatus,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub updated_at: Millis,
}

/// A zone layout of format 1: no `reservable`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ZoneLayout {
    pub id: ZoneId,
    pub name: String,
    pub shape: ZoneShape,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct FacilityLayout {
    pub id: FacilityId,
    pub name: String,
    pub timezone: String,
    pub location: Option<Location>,
    pub zones: Vec<ZoneLayout>,
}

/// The journal events of format 1.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Event {
    SpotSensed { spot: SpotId, occupied: bool },
    ServiceChanged { spot: SpotId, out_of_service: bool },
    Counted { requested: i32, applied: i32 },
    BookingConfirmed(Booking),
    BookingActivated { id: BookingId, at: Millis },
    BookingCompleted { id: BookingId, at: Millis },
    BookingExpired { id: BookingId, at: Millis },
    BookingCancelled { id: BookingId, at: Millis },
    Relaid { layout: ZoneLayout },
}

/// A zone snapshot of format 1: `(occupied, out_of_service)` per spot.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ZoneSnapshot {
    pub facility: FacilityId,
    pub layout: ZoneLayout,
    pub seq: Seq,
    pub spots: Vec<(bool, bool)>,
    pub counter_occupied: u32,
    pub live: Vec<Booking>,
    pub clamped: u64,
}

impl From<Booking> for crate::booking::Booking {
    fn from(old: Booking) -> Self {
        Self {
            id: old.id,
            facility: old.facility,
            zone: old.zone,
            spot: old.spot,
            kind: Some(old.kind),
            plate: old.plate,
            owner: old.owner,
            status: old.status,
            created_at: old.created_at,
            expires_at: old.expires_at,
            updated_at: old.updated_at,
            starts_at: None,
            ends_at: None,
            overstay: false,
        }
    }
}

impl From<ZoneLayout> for crate::layout::ZoneLayout {
    fn from(old: ZoneLayout) -> Self {
        Self {
            id: old.id,
            name: old.name,
            shape: old.shape,
            reservable: 0,
        }
    }
}

impl From<FacilityLayout> for crate::layout::FacilityLayout {
    fn from(old: FacilityLayout) -> Self {
        // Validated when it was written; a quota of 0 always fits.
        Self {
            id: old.id,
            name: old.name,
            timezone: old.timezone,
            location: old.location,
            zones: old.zones.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Event> for crate::zone::Event {
    fn from(old: Event) -> Self {
        use crate::zone::Event as New;
        match old {
            Event::SpotSensed { spot, occupied } => New::SpotSensed { spot, occupied },
            Event::ServiceChanged {
                spot,
                out_of_service,
            } => New::ServiceChanged {
                spot,
                out_of_service,
            },
            Event::Counted { requested, applied } => New::Counted { requested, applied },
            Event::BookingConfirmed(booking) => New::BookingConfirmed(booking.into()),
            Event::BookingActivated { id, at } => New::BookingActivated { id, at },
            Event::BookingCompleted { id, at } => New::BookingCompleted { id, at },
            Event::BookingExpired { id, at } => New::BookingExpired { id, at },
            Event::BookingCancelled { id, at } => New::BookingCancelled { id, at },
            Event::Relaid { layout } => New::Relaid {
                layout: layout.into(),
            },
        }
    }
}

impl From<ZoneSnapshot> for crate::zone::ZoneSnapshot {
    fn from(old: ZoneSnapshot) -> Self {
        Self {
            facility: old.facility,
            layout: old.layout.into(),
            seq: old.seq,
            spots: old
                .spots
                .into_iter()
                .map(|(occupied, out_of_service)| crate::zone::SpotImage {
                    occupied,
                    out_of_service,
                    stale: false,
                })
                .collect(),
            counter_occupied: old.counter_occupied,
            live: old.live.into_iter().map(Into::into).collect(),
            clamped: old.clamped,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Bytes written by the last format-1 binary (commit 90d60e3), for a
    //! layout, a zone snapshot, a booking and one event of every variant:
    //! each must decode into today's types with neutral new fields.

    use super::*;
    use crate::codec::{Stored, decode_stored, encode_stored, encode_stored_as_format1};
    use crate::kinds::SpotKind;
    use crate::zone::SpotImage;

    const LAYOUT: &str = concat!(
        "010246310743656e7472616c0b4575726f70652f526f6d65010000000000c046",
        "400000000000802240020141076c6576656c2041000303412d310003412d3201",
        "03412d330201430773757266616365012804",
    );
    const SNAPSHOT: &str = concat!(
        "010246310141076c6576656c2041000303412d310003412d320103412d330205",
        "03010001000001000104626b2d3102463101410103412d320107414231323343",
        "4405616c69636501fd00d0ca9f17030000fd4047e69f17030000fda0dfca9f17",
        "03000000",
    );
    const BOOKING: &str = concat!(
        "0104626b2d3102463101410103412d3201074142313233434405616c69636501",
        "fd00d0ca9f17030000fd4047e69f17030000fda0dfca9f17030000",
    );
    const EVENTS: [&str; 10] = [
        concat!(
            "010304626b2d3102463101410103412d3201074142313233434405616c696365",
            "00fd00d0ca9f17030000fd4047e69f17030000fd00d0ca9f17030000",
        ),
        "010003412d3101",
        "010103412d3301",
        "010003412d3201",
        "010404626b2d31fda0dfca9f17030000",
        "010504626b2d310a",
        "010604626b2d320c",
        "010704626b2d330e",
        "01020501",
        "010801430773757266616365012804",
    ];

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn id<T>(parse: fn(&str) -> Result<T, crate::ids::IdError>, s: &str) -> T {
        parse(s).expect("valid id")
    }

    fn booking(status: BookingStatus, updated_at: i64) -> crate::booking::Booking {
        crate::booking::Booking {
            id: id(BookingId::parse, "bk-1"),
            facility: id(FacilityId::parse, "F1"),
            zone: id(ZoneId::parse, "A"),
            spot: Some(id(SpotId::parse, "A-2")),
            kind: Some(SpotKind::Ev),
            plate: id(Plate::parse, "AB123CD"),
            owner: id(UserId::parse, "alice"),
            status,
            created_at: Millis(1_700_000_000_000),
            expires_at: Millis(1_700_000_900_000),
            updated_at: Millis(updated_at),
            starts_at: None,
            ends_at: None,
            overstay: false,
        }
    }

    fn spot_zone() -> crate::layout::ZoneLayout {
        crate::layout::ZoneLayout {
            id: id(ZoneId::parse, "A"),
            name: "level A".into(),
            shape: ZoneShape::Spots(
                [
                    ("A-1", SpotKind::Standard),
                    ("A-2", SpotKind::Ev),
                    ("A-3", SpotKind::Accessible),
                ]
                .into_iter()
                .map(|(s, kind)| crate::layout::SpotLayout {
                    id: id(SpotId::parse, s),
                    kind,
                })
                .collect(),
            ),
            reservable: 0,
        }
    }

    fn counter_zone() -> crate::layout::ZoneLayout {
        crate::layout::ZoneLayout {
            id: id(ZoneId::parse, "C"),
            name: "surface".into(),
            shape: ZoneShape::Counter {
                capacity: 40,
                kind: SpotKind::Compact,
            },
            reservable: 0,
        }
    }

    #[test]
    fn a_format_1_layout_decodes_with_no_quota() {
        let layout: crate::layout::FacilityLayout =
            decode_stored(&bytes(LAYOUT)).expect("old layout decodes");
        assert_eq!(layout.id, id(FacilityId::parse, "F1"));
        assert_eq!(layout.name, "Central");
        assert_eq!(layout.timezone, "Europe/Rome");
        assert_eq!(
            layout.location,
            Some(Location {
                lat: 45.5,
                lon: 9.25
            })
        );
        assert_eq!(layout.zones, vec![spot_zone(), counter_zone()]);
    }

    #[test]
    fn a_format_1_booking_decodes_without_a_window() {
        let decoded: crate::booking::Booking =
            decode_stored(&bytes(BOOKING)).expect("old booking decodes");
        assert_eq!(decoded, booking(BookingStatus::Active, 1_700_000_002_000));
    }

    #[test]
    fn a_format_1_snapshot_restores_with_no_spot_stale() {
        let decoded: crate::zone::ZoneSnapshot =
            decode_stored(&bytes(SNAPSHOT)).expect("old snapshot decodes");
        let image = |occupied, out_of_service| SpotImage {
            occupied,
            out_of_service,
            stale: false,
        };
        assert_eq!(decoded.layout, spot_zone());
        assert_eq!(decoded.seq, Seq(5));
        assert_eq!(
            decoded.spots,
            vec![image(true, false), image(true, false), image(false, true)]
        );
        assert_eq!(
            decoded.live,
            vec![booking(BookingStatus::Active, 1_700_000_002_000)]
        );
        let zone = crate::zone::ZoneState::restore(decoded.clone());
        assert_eq!(zone.counts().overall.occupied, 2);
        assert_eq!(zone.counts().overall.out_of_service, 1);
        assert_eq!(zone.snapshot(), decoded);
    }

    #[test]
    fn format_1_events_of_every_variant_decode() {
        use crate::zone::Event as New;
        let at = Millis;
        let expected = vec![
            New::BookingConfirmed(booking(BookingStatus::Confirmed, 1_700_000_000_000)),
            New::SpotSensed {
                spot: id(SpotId::parse, "A-1"),
                occupied: true,
            },
            New::ServiceChanged {
                spot: id(SpotId::parse, "A-3"),
                out_of_service: true,
            },
            New::SpotSensed {
                spot: id(SpotId::parse, "A-2"),
                occupied: true,
            },
            New::BookingActivated {
                id: id(BookingId::parse, "bk-1"),
                at: at(1_700_000_002_000),
            },
            New::BookingCompleted {
                id: id(BookingId::parse, "bk-1"),
                at: at(5),
            },
            New::BookingExpired {
                id: id(BookingId::parse, "bk-2"),
                at: at(6),
            },
            New::BookingCancelled {
                id: id(BookingId::parse, "bk-3"),
                at: at(7),
            },
            New::Counted {
                requested: -3,
                applied: -1,
            },
            New::Relaid {
                layout: counter_zone(),
            },
        ];
        let decoded: Vec<New> = EVENTS
            .iter()
            .map(|hex| decode_stored(&bytes(hex)).expect("old event decodes"))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn the_old_shapes_write_the_old_bytes() {
        // The same values through this module's types give the golden
        // bytes back: these types are the format-1 shapes.
        let layout: FacilityLayout = decode_old(&bytes(LAYOUT));
        assert_eq!(encode_stored_as_format1(&layout), bytes(LAYOUT));
        let snapshot: ZoneSnapshot = decode_old(&bytes(SNAPSHOT));
        assert_eq!(encode_stored_as_format1(&snapshot), bytes(SNAPSHOT));
        for hex in EVENTS {
            let event: Event = decode_old(&bytes(hex));
            assert_eq!(encode_stored_as_format1(&event), bytes(hex));
        }
    }

    fn decode_old<T: bincode::Decode<()>>(bytes: &[u8]) -> T {
        assert_eq!(bytes[0], crate::codec::FORMAT_1);
        crate::codec::decode_stable(bytes).expect("format-1 bytes")
    }

    #[test]
    fn records_written_now_carry_format_2_and_round_trip() {
        let mut reservation = booking(BookingStatus::Scheduled, 1);
        reservation.spot = None;
        reservation.kind = None;
        reservation.starts_at = Some(Millis(10));
        reservation.ends_at = Some(Millis(20));
        let bytes = encode_stored(&reservation);
        assert_eq!(bytes[0], crate::codec::STORED_FORMAT);
        assert_eq!(decode_stored(&bytes), Ok(reservation));
        // The old decoder does not read new bytes as something else.
        assert!(
            crate::codec::decode_stable::<<crate::booking::Booking as Stored>::Format1>(&bytes)
                .is_err()
        );
    }
}
