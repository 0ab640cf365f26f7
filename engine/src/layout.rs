//! A facility's layout as its operator declares it: facility → zones →
//! spots (spot zones) or a capacity (counter zones).
//!
//! [`FacilityLayout::new`] is the only way to build one and it enforces the
//! contract's rules: zone ids unique in the facility, spot ids unique in the
//! facility, sane sizes, and a `reservable` quota of at most the zone's
//! spots (its capacity, for a counter zone). This module must never hold dynamic state
//! (occupancy, bookings): that lives in [`crate::zone`].

use std::collections::HashSet;

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::error::EngineError;
use crate::ids::{FacilityId, SpotId, ZoneId};
use crate::kinds::SpotKind;

/// Most zones one facility may declare.
pub const MAX_ZONES: usize = 1_000;
/// Most spots one facility may declare, across its zones.
pub const MAX_SPOTS: usize = 200_000;
/// Largest capacity of one counter zone.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// Longest free-text name.
pub const MAX_NAME: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Encode, Decode)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Encode, Decode)]
pub struct SpotLayout {
    pub id: SpotId,
    pub kind: SpotKind,
}

/// A zone is either a list of sensed spots or a counted capacity.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ZoneShape {
    Spots(Vec<SpotLayout>),
    Counter { capacity: u32, kind: SpotKind },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ZoneLayout {
    pub id: ZoneId,
    pub name: String,
    pub shape: ZoneShape,
    /// At most this many spots (units) are promised to advance reservations
    /// at any one instant (contract §2.2); 0 = the zone takes none.
    pub reservable: u32,
}

impl ZoneLayout {
    pub fn spot_count(&self) -> usize {
        match &self.shape {
            ZoneShape::Spots(spots) => spots.len(),
            ZoneShape::Counter { .. } => 0,
        }
    }

    /// How many spots (units, for a counter zone) the zone has: the upper
    /// bound of `reservable`.
    pub fn size(&self) -> u64 {
        match &self.shape {
            ZoneShape::Spots(spots) => spots.len() as u64,
            ZoneShape::Counter { capacity, .. } => u64::from(*capacity),
        }
    }

    /// Reads a `reservable` quota as a client sends it: a negative number
    /// (or one past `u32`) is [`EngineError::InvalidLayout`]; whether it
    /// fits the zone is [`ZoneLayout::check_reservable`]'s question.
    pub fn parse_reservable(zone: &ZoneId, value: i64) -> Result<u32, EngineError> {
        u32::try_from(value).map_err(|_| {
            invalid(format!(
                "zone {zone}: reservable must be 0 or more, got {value}"
            ))
        })
    }

    /// Refuses a `reservable` quota larger than the zone
    /// ([`EngineError::InvalidLayout`], naming the zone and both numbers).
    pub fn check_reservable(&self) -> Result<(), EngineError> {
        if u64::from(self.reservable) > self.size() {
            return Err(invalid(format!(
                "zone {}: reservable is {} but the zone has only {} {}",
                self.id,
                self.reservable,
                self.size(),
                match self.shape {
                    ZoneShape::Spots(_) => "spots",
                    ZoneShape::Counter { .. } => "units of capacity",
                }
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct FacilityLayout {
    pub id: FacilityId,
    pub name: String,
    pub timezone: String,
    pub location: Option<Location>,
    pub zones: Vec<ZoneLayout>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidLayout(msg.into())
}

impl FacilityLayout {
    /// Validates a declared layout.
    pub fn new(
        id: FacilityId,
        name: String,
        timezone: String,
        location: Option<Location>,
        zones: Vec<ZoneLayout>,
    ) -> Result<Self, EngineError> {
        if name.chars().count() > MAX_NAME || timezone.chars().count() > MAX_NAME {
            return Err(invalid(format!("names are at most {MAX_NAME} characters")));
        }
        if let Some(loc) = location {
            let lat_ok = loc.lat.is_finite() && (-90.0..=90.0).contains(&loc.lat);
            let lon_ok = loc.lon.is_finite() && (-180.0..=180.0).contains(&loc.lon);
            if !lat_ok || !lon_ok {
                return Err(invalid(
                    "location must have lat in [-90, 90] and lon in [-180, 180]",
                ));
            }
        }
        if zones.len() > MAX_ZONES {
            return Err(invalid(format!("at most {MAX_ZONES} zones")));
        }
        let mut zone_ids = HashSet::with_capacity(zones.len());
        let mut spot_ids = HashSet::new();
        for zone in &zones {
            if zone.name.chars().count() > MAX_NAME {
                return Err(invalid(format!("names are at most {MAX_NAME} characters")));
            }
            if !zone_ids.insert(&zone.id) {
                return Err(invalid(format!("zone id {} appears twice", zone.id)));
            }
            zone.check_reservable()?;
            match &zone.shape {
                ZoneShape::Spots(spots) => {
                    for spot in spots {
                        if !spot_ids.insert(&spot.id) {
                            return Err(invalid(format!("spot id {} appears twice", spot.id)));
                        }
                        if spot_ids.len() > MAX_SPOTS {
                            return Err(invalid(format!("at most {MAX_SPOTS} spots")));
                        }
                    }
                }
                ZoneShape::Counter { capacity, .. } => {
                    if *capacity > MAX_CAPACITY {
                        return Err(invalid(format!("capacity is at most {MAX_CAPACITY}")));
                    }
                }
            }
        }
        Ok(Self {
            id,
            name,
            timezone,
            location,
            zones,
        })
    }

    pub fn zone(&self, id: &ZoneId) -> Option<&ZoneLayout> {
        self.zones.iter().find(|z| &z.id == id)
    }

    pub fn spot_count(&self) -> usize {
        self.zones.iter().map(ZoneLayout::spot_count).sum()
    }
}
