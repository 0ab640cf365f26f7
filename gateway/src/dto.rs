//! JSON shapes of the contract (§3, §5): how facilities, zones, spots and
//! bookings look on the wire, and how a layout is read from a request.
//!
//! This module must never hold state: it converts values both ways.

use std::collections::BTreeMap;

use parkme_actors::{FacilityView, ZoneView};
use parkme_engine::{
    Booking, Counts, FacilityId, FacilityLayout, Location, Millis, SpotId, SpotKind, SpotLayout,
    ZoneCounts, ZoneId, ZoneLayout, ZoneShape,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at.0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn counts_json(counts: &Counts) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("total".into(), counts.total.into());
    map.insert("available".into(), counts.available.into());
    map.insert("reserved".into(), counts.reserved.into());
    map.insert("occupied".into(), counts.occupied.into());
    map.insert("out_of_service".into(), counts.out_of_service.into());
    map
}

/// `{total, available, reserved, occupied, out_of_service, by_kind}`.
pub fn zone_counts_json(counts: &ZoneCounts) -> serde_json::Map<String, Value> {
    let mut map = counts_json(&counts.overall);
    let by_kind: BTreeMap<&str, Value> = counts
        .present_kinds()
        .into_iter()
        .map(|(kind, c)| (kind.as_str(), Value::Object(counts_json(&c))))
        .collect();
    map.insert("by_kind".into(), json!(by_kind));
    map
}

pub fn zone_json(zone: &ZoneView) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("id".into(), json!(zone.id));
    map.insert("name".into(), json!(zone.name));
    if let Some(capacity) = zone.capacity {
        map.insert("capacity".into(), capacity.into());
    }
    map.extend(zone_counts_json(&zone.counts));
    Value::Object(map)
}

pub fn facility_json(view: &FacilityView) -> Value {
    json!({
        "id": view.id,
        "name": view.name,
        "timezone": view.timezone,
        "location": view.location.map(|l| json!({"lat": l.lat, "lon": l.lon})),
        "seq": view.seq.0,
        "totals": zone_counts_json(&view.totals),
        "zones": view.zones.iter().map(zone_json).collect::<Vec<_>>(),
    })
}

pub fn booking_json(booking: &Booking) -> Value {
    json!({
        "id": booking.id,
        "facility": booking.facility,
        "zone": booking.zone,
        "spot": booking.spot,
        "kind": booking.kind,
        "plate": booking.plate,
        "status": booking.status,
        "created_at": rfc3339(booking.created_at),
        "expires_at": rfc3339(booking.expires_at),
        "updated_at": rfc3339(booking.updated_at),
    })
}

/// A layout as an operator sends it.
#[derive(Debug, Deserialize)]
pub struct LayoutInput {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub location: Option<LocationInput>,
    pub zones: Vec<ZoneInput>,
}

#[derive(Debug, Deserialize)]
pub struct LocationInput {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Deserialize)]
pub struct ZoneInput {
    pub id: String,
    pub name: Option<String>,
    pub spots: Option<Vec<SpotInput>>,
    pub capacity: Option<i64>,
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SpotInput {
    pub id: String,
    pub kind: Option<String>,
}

pub fn parse_kind(kind: Option<&str>) -> Result<SpotKind, ApiError> {
    match kind {
        None => Ok(SpotKind::Standard),
        Some(k) => SpotKind::ALL
            .into_iter()
            .find(|known| known.as_str() == k)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_kind",
                    format!("kind must be one of standard, ev, accessible, motorcycle, compact; got {k:?}"),
                )
            }),
    }
}

fn invalid_layout(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_layout", message)
}

impl LayoutInput {
    pub fn into_layout(self, id: FacilityId) -> Result<FacilityLayout, ApiError> {
        let mut zones = Vec::with_capacity(self.zones.len());
        for zone in self.zones {
            let zone_id = ZoneId::parse(&zone.id)
                .map_err(|e| invalid_layout(format!("zone id {:?}: {e}", zone.id)))?;
            let shape = match (zone.spots, zone.capacity) {
                (Some(_), Some(_)) => {
                    return Err(invalid_layout(format!(
                        "zone {zone_id} has both spots and a capacity"
                    )));
                }
                (None, None) => {
                    return Err(invalid_layout(format!(
                        "zone {zone_id} needs either spots or a capacity"
                    )));
                }
                (Some(spots), None) => {
                    if zone.kind.is_some() {
                        return Err(invalid_layout(format!(
                            "zone {zone_id}: kind belongs to each spot of a spot zone"
                        )));
                    }
                    let spots = spots
                        .into_iter()
                        .map(|s| {
                            let id = SpotId::parse(&s.id)
                                .map_err(|e| invalid_layout(format!("spot id {:?}: {e}", s.id)))?;
                            Ok(SpotLayout {
                                id,
                                kind: parse_kind(s.kind.as_deref())?,
                            })
                        })
                        .collect::<Result<Vec<_>, ApiError>>()?;
                    ZoneShape::Spots(spots)
                }
                (None, Some(capacity)) => {
                    let capacity = u32::try_from(capacity).map_err(|_| {
                        invalid_layout(format!("zone {zone_id}: capacity must be 0 or more"))
                    })?;
                    ZoneShape::Counter {
                        capacity,
                        kind: parse_kind(zone.kind.as_deref())?,
                    }
                }
            };
            zones.push(ZoneLayout {
                name: zone.name.unwrap_or_else(|| zone_id.to_string()),
                id: zone_id,
                shape,
                reservable: 0,
            });
        }
        let location = self.location.map(|l| Location {
            lat: l.lat,
            lon: l.lon,
        });
        FacilityLayout::new(
            id.clone(),
            self.name.unwrap_or_else(|| id.to_string()),
            self.timezone.unwrap_or_else(|| "UTC".into()),
            location,
            zones,
        )
        .map_err(ApiError::from)
    }
}

/// `POST /v1/facilities/{fid}/bookings` body.
#[derive(Debug, Deserialize)]
pub struct BookingInput {
    pub plate: String,
    pub zone: Option<String>,
    pub kind: Option<String>,
    pub spot: Option<String>,
    pub hold_seconds: Option<i64>,
}

/// `PUT .../service` body.
#[derive(Debug, Deserialize)]
pub struct ServiceInput {
    pub out_of_service: bool,
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, Value>,
}
