//! What the fuzz targets share: how one input is split into several
//! byte strings, and the promises more than one target checks.
//!
//! Map:
//! - [`parts`] / [`join`]: a fuzz input as length-prefixed parts (the
//!   seed generator, `src/bin/seeds.rs`, writes inputs with [`join`]);
//! - [`check_booking`]: what an accepted booking body promises (HTTP and
//!   the app socket's `book` op);
//! - [`layout_json`]: a layout written back as an operator sends it;
//! - `*_well_formed`: decoded ids are ids their `parse` accepts.
//!
//! This crate must never weaken a target to hide a finding: a panic or a
//! failed assertion here is a defect of the code under test, fixed there.

use parkme_engine::{
    Booking, BookingId, FacilityId, FacilityLayout, Plate, SpotId, UserId, ZoneId, ZoneLayout,
    ZoneShape,
};
use parkme_gateway::auth::Principal;
use parkme_gateway::bookings::{checked_idempotency_key, params};
use parkme_protocol::rest::BookingInput;
use serde_json::{Value, json};

/// Splits `data` into parts, each `[len: u16 LE][len bytes]`; a part
/// cut short by the end of the input keeps what there is, and a last
/// lone byte is a part of its own.
pub fn parts(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 {
            out.push(data);
            break;
        }
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (part, after) = rest.split_at(len.min(rest.len()));
        out.push(part);
        data = after;
    }
    out
}

/// The input that [`parts`] splits into `items` (each at most 64 KiB).
pub fn join(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let len = u16::try_from(item.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&item[..usize::from(len)]);
    }
    out
}

/// The user the booking targets book as.
pub fn alice() -> Principal {
    Principal::User(UserId::parse("alice").expect("a valid user id"))
}

/// Checks a booking body the way the server does (`params`, with the
/// idempotency key as the app socket passes it) and asserts what an
/// accepted one promises: a hold within the contract's bounds, ids and
/// plate that their parsers accept, a key of 1 to 255 visible ASCII
/// characters.
pub fn check_booking(input: BookingInput, principal: &Principal, key: Option<&str>) {
    let key = match key.map(checked_idempotency_key).transpose() {
        Ok(key) => key,
        Err(refused) => {
            assert_eq!(refused.code, "invalid_idempotency_key");
            return;
        }
    };
    if let Some(key) = &key {
        assert_visible_key(key);
    }
    let Ok(booked) = params(input, principal, key.clone()) else {
        return;
    };
    assert!(
        (1..=parkme_engine::booking::MAX_HOLD_SECONDS).contains(&booked.hold_seconds),
        "hold {} accepted",
        booked.hold_seconds
    );
    assert_eq!(Some(&booked.owner), principal.owner().as_ref());
    assert_eq!(booked.idempotency_key, key);
    assert_eq!(
        Plate::parse(booked.plate.as_str()).as_ref(),
        Ok(&booked.plate)
    );
    if let Some(zone) = &booked.zone {
        assert_eq!(ZoneId::parse(zone.as_str()).as_ref(), Ok(zone));
    }
    if let Some(spot) = &booked.spot {
        assert_eq!(SpotId::parse(spot.as_str()).as_ref(), Ok(spot));
    }
}

/// An accepted `Idempotency-Key`: 1 to 255 visible ASCII characters
/// (spaces allowed inside), nothing to trim.
pub fn assert_visible_key(key: &str) {
    assert!(
        (1..=255).contains(&key.len()),
        "key of {} bytes accepted",
        key.len()
    );
    assert_eq!(key.trim(), key, "untrimmed key accepted");
    assert!(
        key.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
        "key {key:?} with invisible characters accepted"
    );
}

/// A layout as an operator writes it in the PUT body (every field
/// explicit), for the round trip PUT body → layout → PUT body.
pub fn layout_json(layout: &FacilityLayout) -> Value {
    let zones: Vec<Value> = layout
        .zones
        .iter()
        .map(|zone| match &zone.shape {
            ZoneShape::Spots(spots) => json!({
                "id": zone.id.as_str(),
                "name": zone.name,
                "spots": spots
                    .iter()
                    .map(|s| json!({"id": s.id.as_str(), "kind": s.kind.as_str()}))
                    .collect::<Vec<_>>(),
            }),
            ZoneShape::Counter { capacity, kind } => json!({
                "id": zone.id.as_str(),
                "name": zone.name,
                "capacity": capacity,
                "kind": kind.as_str(),
            }),
        })
        .collect();
    json!({
        "name": layout.name,
        "timezone": layout.timezone,
        "location": layout.location.map(|l| json!({"lat": l.lat, "lon": l.lon})),
        "zones": zones,
    })
}

fn assert_parses<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    raw: &str,
    parsed: Result<T, E>,
    id: &T,
) {
    assert_eq!(
        parsed.as_ref().ok(),
        Some(id),
        "a decoded {what} {raw:?} is not what its parser accepts: {parsed:?}"
    );
}

/// Every id of a decoded booking is well formed.
pub fn booking_well_formed(booking: &Booking) {
    let id = &booking.id;
    assert_parses("booking id", id.as_str(), BookingId::parse(id.as_str()), id);
    facility_id_well_formed(&booking.facility);
    let zone = &booking.zone;
    assert_parses("zone id", zone.as_str(), ZoneId::parse(zone.as_str()), zone);
    if let Some(spot) = &booking.spot {
        assert_parses("spot id", spot.as_str(), SpotId::parse(spot.as_str()), spot);
    }
    let plate = &booking.plate;
    assert_parses("plate", plate.as_str(), Plate::parse(plate.as_str()), plate);
    let owner = &booking.owner;
    assert_parses(
        "user id",
        owner.as_str(),
        UserId::parse(owner.as_str()),
        owner,
    );
}

pub fn facility_id_well_formed(id: &FacilityId) {
    assert_parses(
        "facility id",
        id.as_str(),
        FacilityId::parse(id.as_str()),
        id,
    );
}

/// Every id of a decoded zone layout is well formed.
pub fn zone_layout_well_formed(zone: &ZoneLayout) {
    let id = &zone.id;
    assert_parses("zone id", id.as_str(), ZoneId::parse(id.as_str()), id);
    if let ZoneShape::Spots(spots) = &zone.shape {
        for spot in spots {
            let id = &spot.id;
            assert_parses("spot id", id.as_str(), SpotId::parse(id.as_str()), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_parts_split_back() {
        let items: [&[u8]; 4] = [b"", b"one", &[0xff; 300], b"x"];
        assert_eq!(parts(&join(&items)), items);
        assert_eq!(parts(&[]), Vec::<&[u8]>::new());
        assert_eq!(parts(&[7]), vec![&[7u8][..]]);
        assert_eq!(parts(&[9, 0, 1, 2]), vec![&[1u8, 2][..]]);
    }
}
