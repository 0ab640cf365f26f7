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
    /// An advance reservation (or an extension of one) would put more
    /// reservations in the zone than its `reservable` quota at some instant
    /// of the window.
    #[error("the zone has no reservable capacity left for this window")]
    NoCapacity,
    /// The booking has ended (`COMPLETED`, `EXPIRED`, `CANCELLED`): its end
    /// can no longer move. Zones answer [`EngineError::UnknownBooking`] for
    /// ids they no longer hold; the owner of the booking table turns that
    /// into this with the stored status.
    #[error("booking is {} and no longer live", .0.as_str())]
    NotLive(BookingStatus),
    #[error("{0}")]
    InvalidWindow(WindowError),
    #[error("an advance reservation cannot name a spot")]
    ReservationNamesSpot,
    /// A layout change would lower a zone's quota below the reservations it
    /// already holds at some instant.
    #[error(
        "zone {zone} holds {held} overlapping reservations, more than the new quota of {quota}"
    )]
    ReservationsOverQuota { zone: ZoneId, held: u32, quota: u32 },
}

/// Why a booking window (`starts_at`, `ends_at`) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("starts_at must be in the future")]
    StartsInPast,
    #[error("starts_at must be at most 30 days ahead")]
    StartsTooFarAhead,
    #[error("a reservation (starts_at) needs an ends_at")]
    MissingEnd,
    #[error("ends_at must be after starts_at")]
    EndsBeforeStart,
    #[error("ends_at must be in the future")]
    EndsInPast,
    #[error("a booking window lasts at most 7 days")]
    TooLong,
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
            EngineError::NoCapacity => "no_capacity",
            EngineError::NotLive(_) => "not_live",
            EngineError::InvalidWindow(_) => "invalid_window",
            EngineError::ReservationNamesSpot => "reservation_names_spot",
            EngineError::ReservationsOverQuota { .. } => "reservations_over_quota",
        }
    }
}
