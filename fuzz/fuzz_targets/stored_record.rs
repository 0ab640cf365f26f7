//! Records read back from any store (`codec::decode_stored` into
//! `Event`, `Booking`; `record::FacilityRecord::decode`, current and
//! pre-generation layouts): never panics; what decodes re-encodes to
//! bytes that decode the same; decoded ids are well formed.
//!
//! Input: a selector byte (which record), then the record's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_actors::record::FacilityRecord;
use parkme_engine::codec::{decode_stored, encode_stored};
use parkme_engine::{Booking, Event};
use parkme_fuzz::{booking_well_formed, facility_id_well_formed, zone_layout_well_formed};

fn event_well_formed(event: &Event) {
    match event {
        Event::BookingConfirmed(booking) => booking_well_formed(booking),
        Event::Relaid { layout } => zone_layout_well_formed(layout),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Ok(event) = decode_stored::<Event>(bytes) else {
                return;
            };
            event_well_formed(&event);
            assert_eq!(decode_stored::<Event>(&encode_stored(&event)), Ok(event));
        }
        1 => {
            let Ok(booking) = decode_stored::<Booking>(bytes) else {
                return;
            };
            booking_well_formed(&booking);
            assert_eq!(
                decode_stored::<Booking>(&encode_stored(&booking)),
                Ok(booking)
            );
        }
        _ => {
            let Ok(record) = FacilityRecord::decode(bytes) else {
                return;
            };
            facility_id_well_formed(&record.layout.id);
            for zone in &record.layout.zones {
                zone_layout_well_formed(zone);
            }
            // Compared as bytes: a stored location may be NaN.
            let encoded = record.encode();
            let again = FacilityRecord::decode(&encoded).expect("a re-encoded record decodes");
            assert_eq!(again.encode(), encoded);
        }
    }
});
