//! The engine's one error type. Every variant is a *permanent* refusal of a
//! command (retrying the same command against the same state fails the same
//! way); the engine has no transient failures because it does no I/O.

use crate::ids::{BookingId, SpotId, ZoneId};
use crate::kinds::BookingStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("no spot is available for this request")]
    NoSpotAvailable,
    #[error("spot {0} is not available")]
    SpotNotAvailable(SpotId),
    #[error("spot {0} does not exist in this zone")]
    UnknownSpot(SpotId),
    #[error("booking {0} does not exist in this zone")]
    UnknownBooking(BookingId),
    #[error("booking is {} and cannot change that way", .0.as_str())]
    InvalidTransition(BookingStatus),
    #[error("spot {0} holds a live booking")]
    SpotHasLiveBooking(SpotId),
    #[error("zone {0} holds live bookings")]
    ZoneHasLiveBooking(ZoneId),
    #[error("this zone is a {0} zone")]
    WrongZoneShape(&'static str),
    #[error("invalid layout: {0}")]
    InvalidLayout(String),
    #[error("hold_seconds must be between 1 and {max}")]
    InvalidHold { max: u32 },
    #[error("event {got} does not follow seq {have}")]
    OutOfOrder { have: u64, got: u64 },
}

impl EngineError {
    /// The contract's snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NoSpotAvailable => "no_spot_available",
            EngineError::SpotNotAvailable(_) => "spot_not_available",
            EngineError::UnknownSpot(_) => "unknown_spot",
            EngineError::UnknownBooking(_) => "unknown_booking",
            EngineError::InvalidTransition(_) => "invalid_booking_state",
            EngineError::SpotHasLiveBooking(_) => "spot_has_live_booking",
            EngineError::ZoneHasLiveBooking(_) => "zone_has_live_booking",
            EngineError::WrongZoneShape(_) => "wrong_zone_kind",
            EngineError::InvalidLayout(_) => "invalid_layout",
            EngineError::InvalidHold { .. } => "invalid_hold_seconds",
            EngineError::OutOfOrder { .. } => "out_of_order",
        }
    }
}
