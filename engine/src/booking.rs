//! The booking record and the request that creates one.
//!
//! A booking's status only moves along the contract's lifecycle:
//! `CONFIRMED → ACTIVE → COMPLETED`, `CONFIRMED → EXPIRED`,
//! `CONFIRMED → CANCELLED`. This module must never hold clocks or I/O.

use bincode::{Decode, Encode};

use crate::ids::{BookingId, FacilityId, Millis, Plate, SpotId, UserId, ZoneId};
use crate::kinds::{BookingStatus, SpotKind};

/// Default hold of a `CONFIRMED` booking, in seconds.
pub const DEFAULT_HOLD_SECONDS: u32 = 900;
/// Longest hold a booking may ask for, in seconds.
pub const MAX_HOLD_SECONDS: u32 = 86_400;

/// A booking as stored and as returned to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Booking {
    pub id: BookingId,
    pub facility: FacilityId,
    pub zone: ZoneId,
    pub spot: Option<SpotId>,
    pub kind: SpotKind,
    pub plate: Plate,
    pub owner: UserId,
    pub status: BookingStatus,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub updated_at: Millis,
}

impl Booking {
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }
}

/// What a caller asks for; the zone decides which spot it gets.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BookingRequest {
    pub id: BookingId,
    pub owner: UserId,
    pub plate: Plate,
    /// `None`: any kind, offered in [`SpotKind::PREFERENCE`] order.
    pub kind: Option<SpotKind>,
    /// A specific spot, which must be `AVAILABLE`.
    pub spot: Option<SpotId>,
    pub hold_seconds: u32,
    pub now: Millis,
}
