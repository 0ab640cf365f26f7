//! The actors' views as the protocol crate's wire shapes, and the cache of
//! their encodings: the one place a [`FacilityView`], [`Snapshot`] or
//! [`Delta`] becomes JSON.
//!
//! This module must never decide anything: it converts, and encodes each
//! shared snapshot or delta once per [`Detail`].

use std::sync::{Arc, OnceLock};

use parkme_actors::{Delta, EdgeCache, FacilityView, Snapshot, ZoneView};
use parkme_engine::{FacilityId, Seq, SpotView};
use parkme_protocol::rest::{Facility, Zone};
use parkme_protocol::{Detail, ServerMessage, Spot};

pub fn zone(view: &ZoneView) -> Zone {
    Zone::new(
        &view.id,
        &view.name,
        (view.capacity, view.reservable),
        &view.counts,
    )
}

pub fn facility(view: &FacilityView) -> Facility {
    Facility {
        id: view.id.to_string(),
        name: view.name.clone(),
        timezone: view.timezone.clone(),
        location: view.location.map(Into::into),
        seq: view.seq.0,
        totals: (&view.totals).into(),
        zones: view.zones.iter().map(zone).collect(),
    }
}

pub fn spots<'a>(spots: impl IntoIterator<Item = &'a SpotView>) -> Vec<Spot> {
    spots.into_iter().map(Spot::from).collect()
}

/// `{"t":"snapshot",...}` of a snapshot, with spots for `Detail::Spots`.
pub fn snapshot(snapshot: &Snapshot, detail: Detail) -> ServerMessage {
    let view = &snapshot.view;
    ServerMessage::Snapshot {
        facility: view.id.to_string(),
        name: view.name.clone(),
        seq: view.seq.0,
        zones: view.zones.iter().map(zone).collect(),
        spots: detail.with_spots().then(|| spots(&snapshot.spots)),
    }
}

/// `{"t":"delta",...}` from `prev` to `seq`.
pub fn delta<'a>(
    facility: &FacilityId,
    (prev, seq): (Seq, Seq),
    zones: impl IntoIterator<Item = &'a ZoneView>,
    changed: Option<&'a [SpotView]>,
) -> ServerMessage {
    ServerMessage::Delta {
        facility: facility.to_string(),
        prev: prev.0,
        seq: seq.0,
        zones: zones.into_iter().map(zone).collect(),
        spots: changed.map(spots),
    }
}

/// A shared delta as a message.
pub fn shared_delta(d: &Delta, detail: Detail) -> ServerMessage {
    delta(
        &d.facility,
        (d.prev, d.seq),
        &d.zones,
        detail.with_spots().then_some(d.spots.as_slice()),
    )
}

/// The encodings of one snapshot or delta: `[zones only, with spots]`.
#[derive(Debug, Default)]
struct Encodings([OnceLock<Arc<str>>; 2]);

/// The JSON of what `cache` sits beside, for `detail`: encoded by the
/// first subscriber that needs it, shared by every other.
pub fn encoded_once(
    cache: &EdgeCache,
    detail: Detail,
    encode: impl FnOnce() -> ServerMessage,
) -> Arc<str> {
    let encode = || Arc::from(encode().to_json());
    match cache.get_or_default::<Encodings>() {
        Some(slots) => Arc::clone(slots.0[usize::from(detail.with_spots())].get_or_init(encode)),
        None => encode(),
    }
}
