//! A zone recovered from disk as `parkme_actors::recover` does it:
//! a snapshot image (`codec::decode_stored::<ZoneSnapshot>` →
//! `ZoneState::restore`), then the stored journal events after it
//! (`codec::decode_stored::<Event>` → `ZoneState::replay` at consecutive
//! seqs). Never panics; the image round-trips through the codec; a
//! zone's own image restores to the same zone, before and after the
//! replay; its incremental counts equal a recount.
//!
//! Input: parts (`parkme_fuzz::parts`): the snapshot record (an empty
//! part: a fresh zone of a small fixed layout), then one event record per
//! part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_engine::codec::{decode_stored, encode_stored};
use parkme_engine::{
    Event, FacilityId, Seq, SpotId, SpotKind, SpotLayout, ZoneId, ZoneLayout, ZoneShape,
    ZoneSnapshot, ZoneState,
};
use parkme_fuzz::{booking_well_formed, facility_id_well_formed, parts, zone_layout_well_formed};

fn fresh() -> ZoneState {
    let spot = |id: &str, kind| SpotLayout {
        id: SpotId::parse(id).expect("a valid id"),
        kind,
    };
    ZoneState::new(
        FacilityId::parse("f1").expect("a valid id"),
        ZoneLayout {
            id: ZoneId::parse("A").expect("a valid id"),
            name: "A".into(),
            shape: ZoneShape::Spots(vec![
                spot("A-1", SpotKind::Standard),
                spot("A-2", SpotKind::Ev),
            ]),
            reservable: 1,
        },
    )
}

/// What holds of any zone, however it was built.
fn check(zone: &ZoneState) {
    assert_eq!(zone.counts(), &zone.recount(), "counts drifted");
    let image = zone.snapshot();
    assert_eq!(
        &ZoneState::restore(image.clone()),
        zone,
        "image does not restore"
    );
    let bytes = encode_stored(&image);
    assert_eq!(decode_stored::<ZoneSnapshot>(&bytes).as_ref(), Ok(&image));
    for booking in zone.live_bookings() {
        booking_well_formed(booking);
    }
    let _ = zone.spots();
    let _ = zone.next_deadline();
}

fuzz_target!(|data: &[u8]| {
    let parts = parts(data);
    let Some((image, events)) = parts.split_first() else {
        return;
    };
    let mut zone = if image.is_empty() {
        fresh()
    } else {
        let Ok(snapshot) = decode_stored::<ZoneSnapshot>(image) else {
            return;
        };
        assert_eq!(
            decode_stored::<ZoneSnapshot>(&encode_stored(&snapshot)).as_ref(),
            Ok(&snapshot)
        );
        facility_id_well_formed(&snapshot.facility);
        zone_layout_well_formed(&snapshot.layout);
        ZoneState::restore(snapshot)
    };
    check(&zone);
    for bytes in events {
        // Recovery stops at an unreadable event (the zone is corrupt).
        let Ok(event) = decode_stored::<Event>(bytes) else {
            break;
        };
        let Some(seq) = zone.seq().0.checked_add(1) else {
            break;
        };
        zone.replay(Seq(seq), &event).expect("the next seq replays");
        assert_eq!(zone.seq(), Seq(seq));
    }
    check(&zone);
});
