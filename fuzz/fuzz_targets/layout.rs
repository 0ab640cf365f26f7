//! Layout documents (the facility PUT body:
//! `parkme_protocol::rest::LayoutInput` → `into_layout` →
//! `FacilityLayout`): never panics; an accepted layout, written back as
//! an operator sends it, is accepted as the same layout; it survives
//! the stored facility record (`FacilityRecord`) unchanged; every zone
//! builds a zone whose totals are its declared size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_actors::record::FacilityRecord;
use parkme_engine::{FacilityId, Millis, ZoneShape, ZoneState};
use parkme_fuzz::{layout_json, zone_layout_well_formed};
use parkme_protocol::rest::LayoutInput;

fuzz_target!(|data: &[u8]| {
    // As the PUT handler reads its body.
    let Ok(input) = serde_json::from_slice::<LayoutInput>(data) else {
        return;
    };
    let id = FacilityId::parse("f1").expect("a valid facility id");
    let Ok(layout) = input.into_layout(id.clone()) else {
        return;
    };
    let again = serde_json::to_vec(&layout_json(&layout)).expect("a layout serializes");
    let input = serde_json::from_slice::<LayoutInput>(&again).expect("written back, it parses");
    let reread = input
        .into_layout(id.clone())
        .expect("written back, it is accepted");
    assert_eq!(reread, layout);
    let record = FacilityRecord {
        layout: layout.clone(),
        sensor_key_hash: [7; 32],
        seq_base: 3,
        created_at: Millis(1),
        updated_at: Millis(2),
        sensor_key_generation: 1,
    };
    assert_eq!(FacilityRecord::decode(&record.encode()), Ok(record));
    for zone in &layout.zones {
        zone_layout_well_formed(zone);
        let state = ZoneState::new(id.clone(), zone.clone());
        let total = match &zone.shape {
            ZoneShape::Spots(spots) => spots.len() as u64,
            ZoneShape::Counter { capacity, .. } => u64::from(*capacity),
        };
        assert_eq!(u64::from(state.counts().overall.total), total);
        assert_eq!(state.counts(), &state.recount());
    }
});
