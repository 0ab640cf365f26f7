//! HTTP handlers of contract §3, one module per resource (and the admin
//! backup stream of §8).

pub mod backup;
pub mod bookings;
pub mod facilities;
pub mod ops;

use parkme_engine::FacilityId;

use crate::error::ApiError;

/// A facility id from a path: anything that is not a valid id cannot name
/// a facility, so it is a 404.
pub fn facility_id(raw: &str) -> Result<FacilityId, ApiError> {
    FacilityId::parse(raw).map_err(|_| {
        ApiError::not_found(
            "unknown_facility",
            format!("facility {raw:?} does not exist"),
        )
    })
}
