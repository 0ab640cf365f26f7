//! The small closed vocabularies of the domain: spot kinds, spot states,
//! booking statuses, gate directions. Their wire spelling is part of the
//! contract and must never change, and new variants go last: their
//! position is their stored (bincode) tag.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// What a spot is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum SpotKind {
    Standard,
    Ev,
    Accessible,
    Motorcycle,
    Compact,
}

impl SpotKind {
    pub const ALL: [SpotKind; 5] = [
        SpotKind::Standard,
        SpotKind::Ev,
        SpotKind::Accessible,
        SpotKind::Motorcycle,
        SpotKind::Compact,
    ];

    /// The order in which a booking that names no kind is offered kinds:
    /// general-purpose spots first, accessible spots last.
    pub const PREFERENCE: [SpotKind; 5] = [
        SpotKind::Standard,
        SpotKind::Compact,
        SpotKind::Motorcycle,
        SpotKind::Ev,
        SpotKind::Accessible,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpotKind::Standard => "standard",
            SpotKind::Ev => "ev",
            SpotKind::Accessible => "accessible",
            SpotKind::Motorcycle => "motorcycle",
            SpotKind::Compact => "compact",
        }
    }
}

/// What a spot is doing now, as the contract spells it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpotState {
    Available,
    Reserved,
    Occupied,
    OutOfService,
    /// The spot's sensor has not been heard of for the zone's staleness
    /// period (contract §2.1); never given to a booking.
    Unknown,
}

impl SpotState {
    pub const ALL: [SpotState; 5] = [
        SpotState::Available,
        SpotState::Reserved,
        SpotState::Occupied,
        SpotState::OutOfService,
        SpotState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpotState::Available => "AVAILABLE",
            SpotState::Reserved => "RESERVED",
            SpotState::Occupied => "OCCUPIED",
            SpotState::OutOfService => "OUT_OF_SERVICE",
            SpotState::Unknown => "UNKNOWN",
        }
    }
}

/// Where a booking is in its lifecycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    Confirmed,
    Active,
    Completed,
    Expired,
    Cancelled,
    /// An advance reservation (contract §2.2) that holds a share of its
    /// zone's quota but no spot yet.
    Scheduled,
}

impl BookingStatus {
    /// `SCHEDULED`, `CONFIRMED` and `ACTIVE` bookings are live: their zone
    /// keeps them, their window counts against the quota, and their ends
    /// may still move.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            BookingStatus::Scheduled | BookingStatus::Confirmed | BookingStatus::Active
        )
    }

    /// `CONFIRMED` and `ACTIVE` bookings hold a spot (or, in a counter
    /// zone, a `CONFIRMED` one holds a unit of capacity).
    pub fn holds_spot(self) -> bool {
        matches!(self, BookingStatus::Confirmed | BookingStatus::Active)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Confirmed => "CONFIRMED",
            BookingStatus::Active => "ACTIVE",
            BookingStatus::Completed => "COMPLETED",
            BookingStatus::Expired => "EXPIRED",
            BookingStatus::Cancelled => "CANCELLED",
            BookingStatus::Scheduled => "SCHEDULED",
        }
    }
}

/// The direction of a plate read at a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "lowercase")]
pub enum PlateDirection {
    In,
    Out,
}
