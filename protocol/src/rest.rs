//! The HTTP bodies of contract §3, as typed shapes: facilities, zones and
//! their counts, spots, bookings, the layout an operator sends, health,
//! and the `{"error":{"code","message"}}` body. Each is built from the
//! domain's values (`From` the engine's types) or read into them
//! ([`LayoutInput::into_layout`], [`parse_layout`]).
//!
//! This module must never decide an HTTP status: it says what is wrong
//! ([`Invalid`], [`LayoutError`]); the edge maps that to a response.

use std::borrow::Cow;
use std::collections::BTreeMap;

use parkme_engine::{
    EngineError, FacilityId, FacilityLayout, Location as EngineLocation, Millis, SpotId, SpotKind,
    SpotLayout, SpotView, ZoneId, ZoneLayout, ZoneShape,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at.0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `{total, available, reserved, occupied, out_of_service, unknown}`;
/// `total` is the sum of the others (contract §2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub total: u32,
    pub available: u32,
    pub reserved: u32,
    pub occupied: u32,
    pub out_of_service: u32,
    /// Spots whose sensor went silent. Absent in documents written before
    /// v2 of the contract, so it reads as 0 there.
    #[serde(default)]
    pub unknown: u32,
}

impl From<&parkme_engine::Counts> for Counts {
    fn from(c: &parkme_engine::Counts) -> Self {
        Counts {
            total: c.total,
            available: c.available,
            reserved: c.reserved,
            occupied: c.occupied,
            out_of_service: c.out_of_service,
            unknown: c.unknown,
        }
    }
}

/// Counts overall, and `by_kind` for each kind present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneCounts {
    #[serde(flatten)]
    pub overall: Counts,
    pub by_kind: BTreeMap<String, Counts>,
}

impl From<&parkme_engine::ZoneCounts> for ZoneCounts {
    fn from(counts: &parkme_engine::ZoneCounts) -> Self {
        ZoneCounts {
            overall: Counts::from(&counts.overall),
            by_kind: counts
                .present_kinds()
                .into_iter()
                .map(|(kind, c)| (kind.as_str().to_owned(), Counts::from(&c)))
                .collect(),
        }
    }
}

/// One zone: `{id, name, capacity?, reservable, ...counts, by_kind}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    pub id: String,
    pub name: String,
    /// Counter zones only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// The zone's quota of advance reservations (contract §2.2).
    #[serde(default)]
    pub reservable: u32,
    #[serde(flatten)]
    pub counts: ZoneCounts,
}

impl Zone {
    /// `(capacity, reservable)`: the counter zone's capacity (`None` for a
    /// spot zone) and the reservation quota.
    pub fn new(
        id: &ZoneId,
        name: &str,
        (capacity, reservable): (Option<u32>, u32),
        counts: &parkme_engine::ZoneCounts,
    ) -> Zone {
        Zone {
            id: id.to_string(),
            name: name.to_owned(),
            capacity,
            reservable,
            counts: ZoneCounts::from(counts),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Location {
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
}

impl From<EngineLocation> for Location {
    fn from(l: EngineLocation) -> Self {
        Location {
            lat: l.lat,
            lon: l.lon,
        }
    }
}

/// A facility at one seq, without spots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Facility {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub location: Option<Location>,
    pub seq: u64,
    pub totals: ZoneCounts,
    pub zones: Vec<Zone>,
}

/// The answer to a layout `PUT`: the facility and its current sensor key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FacilityWithKey {
    #[serde(flatten)]
    pub facility: Facility,
    pub sensor_key: String,
}

/// `GET /v1/facilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FacilityList {
    pub facilities: Vec<Facility>,
}

/// One spot: `{id, zone, kind, state, booking?, overstay?}` (`overstay`
/// only while the booking holding it overstays, contract §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Spot {
    pub id: String,
    pub zone: String,
    #[schema(value_type = SpotKindName)]
    pub kind: Cow<'static, str>,
    #[schema(value_type = SpotStateName)]
    pub state: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overstay: bool,
}

impl From<&SpotView> for Spot {
    fn from(spot: &SpotView) -> Self {
        Spot {
            id: spot.id.to_string(),
            zone: spot.zone.to_string(),
            kind: Cow::Borrowed(spot.kind.as_str()),
            state: Cow::Borrowed(spot.state.as_str()),
            booking: spot.booking.as_ref().map(ToString::to_string),
            overstay: spot.overstay,
        }
    }
}

/// `GET .../zones/{zid}/spots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpotList {
    pub spots: Vec<Spot>,
}

/// A booking as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Booking {
    pub id: String,
    pub facility: String,
    pub zone: String,
    pub spot: Option<String>,
    /// `null` while a `SCHEDULED` reservation asked for any kind.
    #[schema(value_type = Option<SpotKindName>)]
    pub kind: Option<Cow<'static, str>>,
    pub plate: String,
    #[schema(value_type = BookingStatusName)]
    pub status: Cow<'static, str>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The start of an advance reservation's window (`null` otherwise).
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// The end of the stay, when one was given.
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// Still `ACTIVE` the grace period after `ends_at` (contract §2.3).
    pub overstay: bool,
}

impl From<&parkme_engine::Booking> for Booking {
    fn from(b: &parkme_engine::Booking) -> Self {
        Booking {
            id: b.id.to_string(),
            facility: b.facility.to_string(),
            zone: b.zone.to_string(),
            spot: b.spot.as_ref().map(ToString::to_string),
            kind: b.kind.map(|kind| Cow::Borrowed(kind.as_str())),
            plate: b.plate.to_string(),
            status: Cow::Borrowed(b.status.as_str()),
            created_at: rfc3339(b.created_at),
            expires_at: rfc3339(b.expires_at),
            updated_at: rfc3339(b.updated_at),
            starts_at: b.starts_at.map(rfc3339),
            ends_at: b.ends_at.map(rfc3339),
            overstay: b.overstay,
        }
    }
}

/// One point of `GET /v1/facilities/{fid}/history`: the counts as of the
/// end of its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPoint {
    #[schema(format = DateTime)]
    pub at: String,
    pub totals: Counts,
    pub zones: BTreeMap<String, Counts>,
}

/// `GET /v1/facilities/{fid}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct History {
    pub facility: String,
    pub step: String,
    pub points: Vec<HistoryPoint>,
}

/// `POST /v1/facilities/{fid}/sensor-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SensorKey {
    pub facility: String,
    pub sensor_key: String,
}

/// `POST /v1/facilities/{fid}/bookings` body (and the app socket's `book`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BookingInput {
    /// 1–16 of `[A-Z0-9-]` after upper-casing.
    #[schema(pattern = "^[A-Za-z0-9-]{1,16}$")]
    pub plate: String,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub zone: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<SpotKindName>)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub spot: Option<String>,
    /// How long a booking for now holds its spot (default 900).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub hold_seconds: Option<i64>,
    /// RFC 3339: makes the request an advance reservation (§2.2).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339: the end of the stay (§2.3).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
}

/// `PATCH /v1/bookings/{id}` body: the stay's new end (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExtendInput {
    #[schema(format = DateTime)]
    pub ends_at: String,
}

/// An RFC 3339 time of a request (`field` names it in the error): any
/// offset, read to the millisecond.
pub fn parse_time(field: &'static str, raw: &str) -> Result<Millis, Invalid> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| Millis(t.timestamp_millis()))
        .map_err(|e| Invalid {
            code: "invalid_time",
            message: format!("{field} must be an RFC 3339 time such as 2026-12-01T09:00:00Z: {e}"),
        })
}

/// `PUT .../spots/{sid}/service` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceInput {
    pub out_of_service: bool,
}

/// `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case, stable: what clients match on.
    #[schema(value_type = String, example = "no_spot_available")]
    pub code: Cow<'static, str>,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &'static str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: Cow::Borrowed(code),
                message: message.into(),
            },
        }
    }
}

/// `GET /health/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    pub checks: HealthChecks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthChecks {
    pub facilities: FacilitiesCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Check>,
    pub storage: StorageCheck,
    /// Cluster nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterCheck>,
}

/// A cluster node's part of `/health/`: whether it takes part (Redis
/// read on the last tick), how many facilities it owns, and why it owns
/// none when Redis or the store cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterCheck {
    /// `up` or `down`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    pub node: String,
    pub owned: usize,
    pub nodes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /health/ready`: `ready` or `not_ready`, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    #[schema(value_type = String)]
    pub detail: Cow<'static, str>,
}

/// `GET /v1/cluster` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    pub node: String,
    pub nodes: Vec<ClusterMember>,
    pub facilities: Vec<ClusterFacility>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterMember {
    pub id: String,
    pub url: String,
    pub facilities: usize,
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterFacility {
    pub id: String,
    /// The owner node's id; `null` while the facility moves.
    pub owner: Option<String>,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacilitiesCheck {
    /// `up` or `down`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageCheck {
    /// `up` or `down`.
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    #[schema(value_type = String)]
    pub backend: Cow<'static, str>,
}

/// The spot kinds of the contract, as the OpenAPI document names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpotKindName {
    Standard,
    Ev,
    Accessible,
    Motorcycle,
    Compact,
}

/// The spot states of the contract (§2, §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpotStateName {
    Available,
    Reserved,
    Occupied,
    OutOfService,
    Unknown,
}

/// The booking statuses of the contract (§2, §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatusName {
    Scheduled,
    Confirmed,
    Active,
    Completed,
    Expired,
    Cancelled,
}

/// `"up"` or `"down"`.
pub fn up_or_down(up: bool) -> Cow<'static, str> {
    Cow::Borrowed(if up { "up" } else { "down" })
}

/// A value a client sent that cannot be used: its error code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

/// Why a layout document was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutError {
    /// Unreadable JSON, or a field that cannot be used.
    Invalid(Invalid),
    /// Readable, but against the layout rules.
    Engine(EngineError),
}

impl From<Invalid> for LayoutError {
    fn from(invalid: Invalid) -> Self {
        LayoutError::Invalid(invalid)
    }
}

/// A spot kind as the contract spells it (`None`: `standard`).
pub fn parse_kind(kind: Option<&str>) -> Result<SpotKind, Invalid> {
    match kind {
        None => Ok(SpotKind::Standard),
        Some(k) => SpotKind::ALL
            .into_iter()
            .find(|known| known.as_str() == k)
            .ok_or_else(|| Invalid {
                code: "invalid_kind",
                message: format!(
                    "kind must be one of standard, ev, accessible, motorcycle, compact; got {k:?}"
                ),
            }),
    }
}

fn invalid_layout(message: impl Into<String>) -> Invalid {
    Invalid {
        code: "invalid_layout",
        message: message.into(),
    }
}

/// A layout as an operator sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LayoutInput {
    /// At most 200 characters (default: the facility id).
    pub name: Option<String>,
    /// At most 200 characters (default `UTC`).
    pub timezone: Option<String>,
    pub location: Option<Location>,
    /// At most 1,000 zones with distinct ids; at most 200,000 spots in all.
    pub zones: Vec<ZoneInput>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
/// A spot zone (`spots`) or a counter zone (`capacity`, with one `kind`):
/// exactly one of the two.
pub struct ZoneInput {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub id: String,
    /// At most 200 characters (default: the zone id).
    pub name: Option<String>,
    /// Spot ids are distinct within the facility.
    pub spots: Option<Vec<SpotInput>>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub capacity: Option<i64>,
    /// A counter zone's kind (default `standard`).
    #[schema(value_type = Option<SpotKindName>)]
    pub kind: Option<String>,
    /// At most this many spots (units) promised to advance reservations
    /// at one instant (default 0; at most the zone's size).
    #[schema(minimum = 0)]
    pub reservable: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SpotInput {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub id: String,
    /// Default `standard`.
    #[schema(value_type = Option<SpotKindName>)]
    pub kind: Option<String>,
}

impl ZoneInput {
    fn into_layout(self) -> Result<ZoneLayout, Invalid> {
        let zone_id = ZoneId::parse(&self.id)
            .map_err(|e| invalid_layout(format!("zone id {:?}: {e}", self.id)))?;
        let shape = match (self.spots, self.capacity) {
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
                if self.kind.is_some() {
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
                    .collect::<Result<Vec<_>, Invalid>>()?;
                ZoneShape::Spots(spots)
            }
            (None, Some(capacity)) => {
                let capacity = u32::try_from(capacity).map_err(|_| {
                    invalid_layout(format!("zone {zone_id}: capacity must be 0 or more"))
                })?;
                ZoneShape::Counter {
                    capacity,
                    kind: parse_kind(self.kind.as_deref())?,
                }
            }
        };
        let reservable = match self.reservable {
            None => 0,
            Some(n) => ZoneLayout::parse_reservable(&zone_id, n)
                .map_err(|e| invalid_layout(e.to_string()))?,
        };
        Ok(ZoneLayout {
            name: self.name.unwrap_or_else(|| zone_id.to_string()),
            id: zone_id,
            shape,
            reservable,
        })
    }
}

impl LayoutInput {
    /// The layout of facility `id`, checked against every layout rule.
    pub fn into_layout(self, id: FacilityId) -> Result<FacilityLayout, LayoutError> {
        let zones = self
            .zones
            .into_iter()
            .map(ZoneInput::into_layout)
            .collect::<Result<Vec<_>, Invalid>>()?;
        let location = self.location.map(|l| EngineLocation {
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
        .map_err(LayoutError::Engine)
    }
}

/// Reads a layout document (a `PUT /v1/facilities/{fid}` body) for
/// facility `id`: the JSON, then every layout rule.
pub fn parse_layout(id: FacilityId, json: &[u8]) -> Result<FacilityLayout, LayoutError> {
    let input: LayoutInput = serde_json::from_slice(json).map_err(|e| Invalid {
        code: "malformed_json",
        message: format!("invalid JSON body: {e}"),
    })?;
    input.into_layout(id)
}

#[cfg(test)]
mod tests {
    use parkme_engine::SpotState;

    use super::*;

    #[test]
    fn a_layout_document_reads_into_a_checked_layout() {
        let id = FacilityId::parse("f1").expect("id");
        let doc = br#"{"name":"F","zones":[{"id":"A","spots":[{"id":"A-1","kind":"ev"},{"id":"A-2"}]},{"id":"G","capacity":40}]}"#;
        let layout = parse_layout(id.clone(), doc).expect("valid");
        assert_eq!(layout.zones.len(), 2);
        assert_eq!(layout.timezone, "UTC");
        for (doc, code) in [
            (&b"{"[..], "malformed_json"),
            (br#"{"zones":[{"id":"A"}]}"#, "invalid_layout"),
            (br#"{"zones":[{"id":"A","capacity":-1}]}"#, "invalid_layout"),
            (
                br#"{"zones":[{"id":"A","capacity":2,"reservable":-1}]}"#,
                "invalid_layout",
            ),
            (
                br#"{"zones":[{"id":"A","spots":[{"id":"x","kind":"bus"}]}]}"#,
                "invalid_kind",
            ),
        ] {
            match parse_layout(id.clone(), doc) {
                Err(LayoutError::Invalid(invalid)) => assert_eq!(invalid.code, code),
                other => panic!("{other:?}"),
            }
        }
        let twice = br#"{"zones":[{"id":"A","capacity":1},{"id":"A","capacity":2}]}"#;
        assert!(matches!(
            parse_layout(id, twice),
            Err(LayoutError::Engine(_))
        ));
    }

    fn name<T: Serialize>(value: &T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The names the OpenAPI document lists are the engine's own: each
    /// match below is exhaustive, so a variant added on either side
    /// without the other does not compile.
    #[test]
    fn the_documented_names_are_the_engines_names() {
        use parkme_engine::BookingStatus as B;
        let kind = |k: SpotKind| match k {
            SpotKind::Standard => SpotKindName::Standard,
            SpotKind::Ev => SpotKindName::Ev,
            SpotKind::Accessible => SpotKindName::Accessible,
            SpotKind::Motorcycle => SpotKindName::Motorcycle,
            SpotKind::Compact => SpotKindName::Compact,
        };
        let state = |s: SpotState| match s {
            SpotState::Available => SpotStateName::Available,
            SpotState::Reserved => SpotStateName::Reserved,
            SpotState::Occupied => SpotStateName::Occupied,
            SpotState::OutOfService => SpotStateName::OutOfService,
            SpotState::Unknown => SpotStateName::Unknown,
        };
        let status = |s: B| match s {
            B::Scheduled => BookingStatusName::Scheduled,
            B::Confirmed => BookingStatusName::Confirmed,
            B::Active => BookingStatusName::Active,
            B::Completed => BookingStatusName::Completed,
            B::Expired => BookingStatusName::Expired,
            B::Cancelled => BookingStatusName::Cancelled,
        };
        for k in SpotKind::ALL {
            assert_eq!(name(&kind(k)), k.as_str());
        }
        for s in SpotState::ALL {
            assert_eq!(name(&state(s)), s.as_str());
        }
        let documented = |d: BookingStatusName| match d {
            BookingStatusName::Scheduled => B::Scheduled,
            BookingStatusName::Confirmed => B::Confirmed,
            BookingStatusName::Active => B::Active,
            BookingStatusName::Completed => B::Completed,
            BookingStatusName::Expired => B::Expired,
            BookingStatusName::Cancelled => B::Cancelled,
        };
        for d in [
            BookingStatusName::Scheduled,
            BookingStatusName::Confirmed,
            BookingStatusName::Active,
            BookingStatusName::Completed,
            BookingStatusName::Expired,
            BookingStatusName::Cancelled,
        ] {
            assert_eq!(status(documented(d)), d);
            assert_eq!(name(&d), documented(d).as_str());
        }
    }

    #[test]
    fn shapes_spell_what_the_contract_spells() {
        let spot = Spot::from(&SpotView {
            id: SpotId::parse("A-1").expect("id"),
            zone: ZoneId::parse("A").expect("id"),
            kind: SpotKind::Ev,
            state: SpotState::OutOfService,
            booking: None,
            overstay: false,
        });
        assert_eq!(
            serde_json::to_value(&spot).expect("json"),
            serde_json::json!({"id":"A-1","zone":"A","kind":"ev","state":"OUT_OF_SERVICE"})
        );
        let mut counts = parkme_engine::ZoneCounts::default();
        counts.insert(SpotKind::Ev, SpotState::Available);
        let zone = Zone::new(&ZoneId::parse("A").expect("id"), "A", (Some(3), 1), &counts);
        assert_eq!(
            serde_json::to_value(&zone).expect("json"),
            serde_json::json!({"id":"A","name":"A","capacity":3,"reservable":1,"total":1,"available":1,
                "reserved":0,"occupied":0,"out_of_service":0,"unknown":0,
                "by_kind":{"ev":{"total":1,"available":1,"reserved":0,"occupied":0,"out_of_service":0,"unknown":0}}})
        );
        assert_eq!(rfc3339(Millis(1_000)), "1970-01-01T00:00:01.000Z");
    }
}
