//! The booking record, the request that creates one, and the rules for
//! its time window.
//!
//! A booking's status only moves along the contract's lifecycle:
//! `SCHEDULED → CONFIRMED` (an advance reservation takes its spot at lead
//! time), `CONFIRMED → ACTIVE → COMPLETED`, `SCHEDULED/CONFIRMED →
//! EXPIRED` (no-show), `SCHEDULED/CONFIRMED → CANCELLED`. Its window
//! (`starts_at`, `ends_at`) is checked here, once, by [`check_window`] and
//! [`check_new_end`]. This module must never hold clocks or I/O.

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::error::{EngineError, WindowError};
use crate::ids::{BookingId, FacilityId, Millis, Plate, SpotId, UserId, ZoneId};
use crate::kinds::{BookingStatus, SpotKind};

/// Default hold of a `CONFIRMED` booking, in seconds.
pub const DEFAULT_HOLD_SECONDS: u32 = 900;
/// Longest hold a booking may ask for, in seconds.
pub const MAX_HOLD_SECONDS: u32 = 86_400;
/// Furthest ahead a reservation may start (30 days), in milliseconds.
pub const MAX_LEAD_MS: i64 = 30 * 86_400_000;
/// Longest window of a booking (7 days), in milliseconds: from `starts_at`
/// for a reservation, from the request (or the extension) for an immediate
/// booking.
pub const MAX_WINDOW_MS: i64 = 7 * 86_400_000;

/// A booking as stored and as returned to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Encode, Decode)]
pub struct Booking {
    pub id: BookingId,
    pub facility: FacilityId,
    pub zone: ZoneId,
    /// The held spot; `None` in a counter zone and while `SCHEDULED`.
    pub spot: Option<SpotId>,
    /// The held spot's kind (the counter zone's kind); while `SCHEDULED`,
    /// the kind asked for, `None` for any.
    pub kind: Option<SpotKind>,
    pub plate: Plate,
    pub owner: UserId,
    pub status: BookingStatus,
    pub created_at: Millis,
    /// The no-show deadline: `created_at + hold` for an immediate booking,
    /// `starts_at + hold` for a reservation.
    pub expires_at: Millis,
    pub updated_at: Millis,
    /// Set for an advance reservation (and only then).
    pub starts_at: Option<Millis>,
    /// The end of the stay; set for every reservation, optional otherwise.
    pub ends_at: Option<Millis>,
    /// Still `ACTIVE` the grace period after `ends_at` (contract §2.3).
    pub overstay: bool,
}

impl Booking {
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }

    /// Whether this booking is an advance reservation (it counts against
    /// its zone's `reservable` quota while live).
    pub fn is_reservation(&self) -> bool {
        self.starts_at.is_some()
    }

    /// The reservation window `[starts_at, ends_at)`, when it is one.
    pub fn window(&self) -> Option<(Millis, Millis)> {
        self.starts_at.zip(self.ends_at)
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
    /// A specific spot, which must be `AVAILABLE` (immediate bookings only).
    pub spot: Option<SpotId>,
    pub hold_seconds: u32,
    /// Set: an advance reservation of `[starts_at, ends_at)`.
    pub starts_at: Option<Millis>,
    /// The end of the stay (required with `starts_at`).
    pub ends_at: Option<Millis>,
    pub now: Millis,
}

impl BookingRequest {
    pub fn is_reservation(&self) -> bool {
        self.starts_at.is_some()
    }
}

fn window_error(error: WindowError) -> EngineError {
    EngineError::InvalidWindow(error)
}

/// Checks the window of a new booking made at `now`.
///
/// A reservation needs `now < starts_at ≤ now + 30 days` and
/// `starts_at < ends_at ≤ starts_at + 7 days`; an immediate booking may
/// carry `now < ends_at ≤ now + 7 days`.
pub fn check_window(
    starts_at: Option<Millis>,
    ends_at: Option<Millis>,
    now: Millis,
) -> Result<(), EngineError> {
    match (starts_at, ends_at) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(window_error(WindowError::MissingEnd)),
        (Some(start), Some(end)) => {
            if start <= now {
                return Err(window_error(WindowError::StartsInPast));
            }
            if start.0 > now.0.saturating_add(MAX_LEAD_MS) {
                return Err(window_error(WindowError::StartsTooFarAhead));
            }
            check_end(Some(start), end, start)
        }
        (None, Some(end)) => check_end(None, end, now),
    }
}

/// Checks a new `ends_at` for a live booking (an extension at `now`).
pub fn check_new_end(booking: &Booking, ends_at: Millis, now: Millis) -> Result<(), EngineError> {
    if ends_at <= now {
        return Err(window_error(WindowError::EndsInPast));
    }
    // A reservation's window is bounded from its start; any other stay
    // from the moment it is extended.
    check_end(booking.starts_at, ends_at, booking.starts_at.unwrap_or(now))
}

fn check_end(starts_at: Option<Millis>, ends_at: Millis, from: Millis) -> Result<(), EngineError> {
    if starts_at.is_some_and(|start| ends_at <= start) {
        return Err(window_error(WindowError::EndsBeforeStart));
    }
    if ends_at <= from {
        return Err(window_error(WindowError::EndsInPast));
    }
    if ends_at.0 > from.0.saturating_add(MAX_WINDOW_MS) {
        return Err(window_error(WindowError::TooLong));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = Millis(1_700_000_000_000);

    fn at(offset_ms: i64) -> Millis {
        Millis(NOW.0 + offset_ms)
    }

    fn refused(starts: Option<i64>, ends: Option<i64>) -> Option<WindowError> {
        match check_window(starts.map(at), ends.map(at), NOW) {
            Ok(()) => None,
            Err(EngineError::InvalidWindow(e)) => Some(e),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reservations_start_in_the_future_and_at_most_30_days_ahead() {
        assert_eq!(refused(Some(1), Some(2)), None);
        assert_eq!(refused(Some(MAX_LEAD_MS), Some(MAX_LEAD_MS + 1)), None);
        assert_eq!(refused(Some(0), Some(5)), Some(WindowError::StartsInPast));
        assert_eq!(refused(Some(-5), Some(5)), Some(WindowError::StartsInPast));
        assert_eq!(
            refused(Some(MAX_LEAD_MS + 1), Some(MAX_LEAD_MS + 2)),
            Some(WindowError::StartsTooFarAhead)
        );
    }

    #[test]
    fn a_window_ends_after_it_starts_and_lasts_at_most_7_days() {
        assert_eq!(refused(Some(10), None), Some(WindowError::MissingEnd));
        assert_eq!(
            refused(Some(10), Some(10)),
            Some(WindowError::EndsBeforeStart)
        );
        assert_eq!(
            refused(Some(10), Some(3)),
            Some(WindowError::EndsBeforeStart)
        );
        assert_eq!(refused(Some(10), Some(10 + MAX_WINDOW_MS)), None);
        assert_eq!(
            refused(Some(10), Some(11 + MAX_WINDOW_MS)),
            Some(WindowError::TooLong)
        );
    }

    #[test]
    fn an_immediate_booking_may_end_in_the_next_7_days() {
        assert_eq!(refused(None, None), None);
        assert_eq!(refused(None, Some(1)), None);
        assert_eq!(refused(None, Some(0)), Some(WindowError::EndsInPast));
        assert_eq!(
            refused(None, Some(MAX_WINDOW_MS + 1)),
            Some(WindowError::TooLong)
        );
        assert_eq!(
            refused(None, Some(i64::MAX - NOW.0)),
            Some(WindowError::TooLong)
        );
    }
}
