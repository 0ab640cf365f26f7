//! A facility as NGSI-LD entities in key-values form (contract §9),
//! following the FIWARE Smart Data Models of dataModel.Parking: one
//! `OffStreetParking` (the facility), one `ParkingGroup` per zone, one
//! `ParkingSpot` per spot of a spot zone (a counter zone has no spots).
//!
//! Counts: `totalSpotNumber` is every spot (unit) whatever its state,
//! `availableSpotNumber` the `AVAILABLE` ones, `occupiedSpotNumber` the
//! `OCCUPIED` plus the `RESERVED` ones (a held spot is not free to take);
//! `OUT_OF_SERVICE` and `UNKNOWN` spots count in the total only. A spot's
//! `status` follows its state the same way ([`SpotStatus`]).
//!
//! Spots and zones have no location of their own: each entity carries the
//! facility's point. A facility declared without a location gives
//! entities without `location`, which the `OffStreetParking` and
//! `ParkingSpot` schemas require; declare one to publish valid entities.
//!
//! This module must never do I/O nor read a clock: it maps views it is
//! given, at the time it is given.

use std::collections::BTreeMap;

use parkme_actors::FacilityView;
use parkme_engine::{Counts, FacilityId, Location, Millis, SpotState, SpotView, ZoneId};
use parkme_protocol::rest::rfc3339;
use serde::Serialize;

/// The JSON-LD context of every entity: the Smart Data Models context of
/// dataModel.Parking, then the NGSI-LD core context.
pub const CONTEXT: [&str; 2] = [
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
];

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/ld+json";

/// Every spot here is inside an off-street facility.
const OFF_STREET: [&str; 1] = ["offStreet"];

/// A GeoJSON Point: `coordinates` are `[longitude, latitude]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

impl From<Location> for Point {
    fn from(location: Location) -> Self {
        Point {
            kind: "Point",
            coordinates: [location.lon, location.lat],
        }
    }
}

/// A spot's `status` in the ParkingSpot model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotStatus {
    Free,
    Occupied,
    Closed,
    Unknown,
}

impl From<SpotState> for SpotStatus {
    fn from(state: SpotState) -> Self {
        match state {
            SpotState::Available => SpotStatus::Free,
            SpotState::Occupied | SpotState::Reserved => SpotStatus::Occupied,
            SpotState::OutOfService => SpotStatus::Closed,
            SpotState::Unknown => SpotStatus::Unknown,
        }
    }
}

/// The three numbers of a site or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpotNumbers {
    /// Absent for a zone of no spots: the ParkingGroup schema wants at
    /// least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_spot_number: Option<u32>,
    available_spot_number: u32,
    occupied_spot_number: u32,
}

impl From<&Counts> for SpotNumbers {
    fn from(counts: &Counts) -> Self {
        SpotNumbers {
            total_spot_number: (counts.total > 0).then_some(counts.total),
            available_spot_number: counts.available,
            occupied_spot_number: counts.occupied.saturating_add(counts.reserved),
        }
    }
}

/// What every entity carries besides its own attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Point>,
    date_modified: String,
    #[serde(rename = "@context")]
    context: [&'static str; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    #[serde(flatten)]
    common: Common,
    #[serde(flatten)]
    numbers: SpotNumbers,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(flatten)]
    common: Common,
    category: [&'static str; 1],
    ref_parking_site: String,
    #[serde(flatten)]
    numbers: SpotNumbers,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spot {
    #[serde(flatten)]
    common: Common,
    status: SpotStatus,
    category: [&'static str; 1],
    ref_parking_site: String,
    ref_parking_group: String,
}

/// One entity; `type` is its model's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Entity {
    OffStreetParking(Site),
    ParkingGroup(Group),
    ParkingSpot(Spot),
}

pub fn site_id(facility: &FacilityId) -> String {
    format!("urn:ngsi-ld:OffStreetParking:{facility}")
}

pub fn group_id(facility: &FacilityId, zone: &impl std::fmt::Display) -> String {
    format!("urn:ngsi-ld:ParkingGroup:{facility}:{zone}")
}

pub fn spot_id(facility: &FacilityId, spot: &impl std::fmt::Display) -> String {
    format!("urn:ngsi-ld:ParkingSpot:{facility}:{spot}")
}

/// The spots of each spot zone, by zone.
pub type SpotsByZone = BTreeMap<ZoneId, Vec<SpotView>>;

/// The facility's entities at `at`: the site, then each zone's group
/// followed by that zone's spots (in their order in `spots`). Spots of a
/// zone the view does not hold (a layout change in between) are left out.
pub fn entities(view: &FacilityView, spots: &SpotsByZone, at: Millis) -> Vec<Entity> {
    let date_modified = rfc3339(at);
    let location = view.location.map(Point::from);
    let common = |id: String, name: String| Common {
        id,
        name,
        location,
        date_modified: date_modified.clone(),
        context: CONTEXT,
    };
    let site = site_id(&view.id);
    let spot_count: usize = spots.values().map(Vec::len).sum();
    let mut entities = Vec::with_capacity(1 + view.zones.len() + spot_count);
    entities.push(Entity::OffStreetParking(Site {
        common: common(site.clone(), view.name.clone()),
        numbers: SpotNumbers::from(&view.totals.overall),
    }));
    for zone in &view.zones {
        let group = group_id(&view.id, &zone.id);
        entities.push(Entity::ParkingGroup(Group {
            common: common(group.clone(), zone.name.clone()),
            category: OFF_STREET,
            ref_parking_site: site.clone(),
            numbers: SpotNumbers::from(&zone.counts.overall),
        }));
        for spot in spots.get(&zone.id).into_iter().flatten() {
            entities.push(Entity::ParkingSpot(Spot {
                common: common(spot_id(&view.id, &spot.id), spot.id.to_string()),
                status: SpotStatus::from(spot.state),
                category: OFF_STREET,
                ref_parking_site: site.clone(),
                ref_parking_group: group.clone(),
            }));
        }
    }
    entities
}

#[cfg(test)]
mod tests {
    use parkme_actors::ZoneView;
    use parkme_engine::{Seq, SpotId, SpotKind, ZoneCounts};
    use serde_json::{Value, json};

    use super::*;
    use crate::http::open::fixtures::counts;

    fn spot(zone: &str, id: &str, state: SpotState) -> SpotView {
        SpotView {
            id: SpotId::parse(id).expect("spot id"),
            zone: ZoneId::parse(zone).expect("zone id"),
            kind: SpotKind::Standard,
            state,
            booking: None,
            overstay: false,
        }
    }

    fn facility(spots: &[SpotView], counter: ZoneCounts) -> FacilityView {
        let zone_a = counts(&spots.iter().map(|s| s.state).collect::<Vec<_>>());
        let mut totals = zone_a.clone();
        totals.overall.add(&counter.overall);
        FacilityView {
            id: FacilityId::parse("f1").expect("facility id"),
            name: "Garage <Nord> & \"Sud\"".into(),
            timezone: "Europe/Paris".into(),
            location: Some(Location {
                lat: 48.8566,
                lon: 2.3522,
            }),
            seq: Seq(7),
            totals,
            zones: vec![
                ZoneView {
                    id: ZoneId::parse("A").expect("zone id"),
                    name: "Level A".into(),
                    capacity: None,
                    reservable: 0,
                    counts: zone_a,
                },
                ZoneView {
                    id: ZoneId::parse("P").expect("zone id"),
                    name: "Counted".into(),
                    capacity: Some(counter.overall.total),
                    reservable: 0,
                    counts: counter,
                },
            ],
        }
    }

    fn by_zone(spots: &[SpotView]) -> SpotsByZone {
        let mut by_zone = SpotsByZone::new();
        for spot in spots {
            by_zone
                .entry(spot.zone.clone())
                .or_default()
                .push(spot.clone());
        }
        by_zone
    }

    fn as_json(entities: &[Entity]) -> Vec<Value> {
        entities
            .iter()
            .map(|e| serde_json::to_value(e).expect("serialises"))
            .collect()
    }

    #[test]
    fn each_spot_state_maps_to_the_status_the_contract_names() {
        assert_eq!(SpotStatus::from(SpotState::Available), SpotStatus::Free);
        assert_eq!(SpotStatus::from(SpotState::Occupied), SpotStatus::Occupied);
        assert_eq!(SpotStatus::from(SpotState::Reserved), SpotStatus::Occupied);
        assert_eq!(
            SpotStatus::from(SpotState::OutOfService),
            SpotStatus::Closed
        );
        assert_eq!(SpotStatus::from(SpotState::Unknown), SpotStatus::Unknown);
    }

    #[test]
    fn a_facility_is_one_site_a_group_per_zone_and_a_spot_per_spot() {
        let spots = [
            spot("A", "A-1", SpotState::Available),
            spot("A", "A-2", SpotState::Reserved),
            spot("A", "A-3", SpotState::OutOfService),
            spot("A", "A-4", SpotState::Unknown),
        ];
        let mut counter = ZoneCounts::default();
        for state in [
            SpotState::Occupied,
            SpotState::Available,
            SpotState::Available,
        ] {
            counter.insert(SpotKind::Standard, state);
        }
        let view = facility(&spots, counter);
        let json = as_json(&entities(
            &view,
            &by_zone(&spots),
            Millis(1_700_000_000_000),
        ));
        let types: Vec<&str> = json.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "OffStreetParking",
                "ParkingGroup",
                "ParkingSpot",
                "ParkingSpot",
                "ParkingSpot",
                "ParkingSpot",
                "ParkingGroup"
            ]
        );
        let site = &json[0];
        assert_eq!(site["id"], "urn:ngsi-ld:OffStreetParking:f1");
        assert_eq!(site["name"], "Garage <Nord> & \"Sud\"");
        assert_eq!(site["totalSpotNumber"], 7);
        assert_eq!(site["availableSpotNumber"], 3);
        assert_eq!(site["occupiedSpotNumber"], 2, "occupied plus reserved");
        assert_eq!(
            site["location"],
            json!({"type": "Point", "coordinates": [2.3522, 48.8566]}),
            "GeoJSON is [lon, lat]"
        );
        assert_eq!(site["dateModified"], "2023-11-14T22:13:20.000Z");
        assert_eq!(site["@context"], json!(CONTEXT));
        let group = &json[1];
        assert_eq!(group["id"], "urn:ngsi-ld:ParkingGroup:f1:A");
        assert_eq!(group["refParkingSite"], "urn:ngsi-ld:OffStreetParking:f1");
        assert_eq!(group["totalSpotNumber"], 4);
        let statuses: Vec<&str> = json[2..6]
            .iter()
            .filter_map(|s| s["status"].as_str())
            .collect();
        assert_eq!(statuses, ["free", "occupied", "closed", "unknown"]);
        assert_eq!(json[3]["id"], "urn:ngsi-ld:ParkingSpot:f1:A-2");
        assert_eq!(json[3]["refParkingGroup"], "urn:ngsi-ld:ParkingGroup:f1:A");
        assert_eq!(json[3]["refParkingSite"], "urn:ngsi-ld:OffStreetParking:f1");
        let counted = &json[6];
        assert_eq!(counted["id"], "urn:ngsi-ld:ParkingGroup:f1:P");
        assert_eq!(counted["totalSpotNumber"], 3);
        assert_eq!(counted["availableSpotNumber"], 2);
        assert_eq!(counted["occupiedSpotNumber"], 1);
    }

    #[test]
    fn a_zone_of_no_spots_has_no_total_and_a_facility_without_location_no_location() {
        let mut view = facility(&[], ZoneCounts::default());
        view.location = None;
        let json = as_json(&entities(&view, &SpotsByZone::new(), Millis(0)));
        assert!(json.iter().all(|e| e.get("location").is_none()), "{json:?}");
        assert!(json[1].get("totalSpotNumber").is_none(), "{}", json[1]);
        assert_eq!(json[1]["availableSpotNumber"], 0);
    }

    #[test]
    fn a_spot_of_a_zone_the_view_does_not_hold_is_left_out() {
        let spots = [spot("gone", "G-1", SpotState::Available)];
        let view = facility(&[], ZoneCounts::default());
        assert_eq!(entities(&view, &by_zone(&spots), Millis(0)).len(), 3);
    }
}
