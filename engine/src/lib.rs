//! ParkMe's domain core: what a parking facility *is* and how its state may
//! change. Everything here is deterministic and synchronous.
//!
//! Map of the crate, following the data path:
//! - [`ids`]: validated newtypes (`FacilityId`, `ZoneId`, `SpotId`,
//!   `BookingId`, `Plate`, `UserId`) plus `Seq` and `Millis`.
//! - [`kinds`]: spot kinds, spot states, booking statuses.
//! - [`layout`]: facility → zones → spots as an operator declares them,
//!   validated once at the boundary.
//! - [`booking`]: the booking record, its lifecycle and its time window
//!   (advance reservations, stay windows).
//! - [`counts`]: `{total, available, reserved, occupied, out_of_service,
//!   unknown}` overall and per kind.
//! - [`zone`]: the zone state machine. Commands are *decided* into events,
//!   events are *applied* to state; replaying the events of a zone rebuilds
//!   exactly the same state. Its docs say how an owner drives a zone: one
//!   `execute` per command, one timer on `next_deadline`, `Tick` when it
//!   fires.
//! - [`intervals`]: a zone's reservation windows, answering "how many
//!   overlap at the busiest instant of this window?" in O(log n).
//! - [`liveness`]: when each spot was last heard of, on a coarse timer
//!   wheel that costs nothing per reading.
//! - [`codec`]: the one place that knows how anything is encoded to bytes
//!   (bincode 2, standard config, behind a format byte); [`format1`] keeps
//!   the shapes older binaries stored, so their records still load.
//!
//! This crate must never do I/O, read a clock, spawn a task or depend on an
//! async runtime: time comes in as a value and bytes go out as values.

pub mod booking;
pub mod codec;
pub mod counts;
pub mod error;
pub mod format1;
pub mod ids;
pub mod intervals;
pub mod kinds;
pub mod layout;
pub mod liveness;
pub mod zone;

pub use booking::{Booking, BookingRequest};
pub use counts::{Counts, ZoneCounts};
pub use error::{EngineError, WindowError};
pub use ids::{BookingId, FacilityId, IdError, Millis, Plate, Seq, SpotId, UserId, ZoneId};
pub use kinds::{BookingStatus, PlateDirection, SpotKind, SpotState};
pub use layout::{FacilityLayout, Location, SpotLayout, ZoneLayout, ZoneShape};
pub use zone::{Command, Event, SpotImage, SpotView, ZoneParams, ZoneSnapshot, ZoneState};
