//! ParkMe's domain core: what a parking facility *is* and how its state may
//! change. Everything here is deterministic and synchronous.
//!
//! Map of the crate, following the data path:
//! - [`ids`]: validated newtypes (`FacilityId`, `ZoneId`, `SpotId`,
//!   `BookingId`, `Plate`, `UserId`) plus `Seq` and `Millis`.
//! - [`kinds`]: spot kinds, spot states, booking statuses.
//! - [`layout`]: facility → zones → spots as an operator declares them,
//!   validated once at the boundary.
//! - [`booking`]: the booking record and its lifecycle rules.
//! - [`counts`]: `{total, available, reserved, occupied, out_of_service}`
//!   overall and per kind.
//! - [`reading`]: one sensor reading, parsed once at the edge.
//! - [`zone`]: the zone state machine. Commands are *decided* into events,
//!   events are *applied* to state; replaying the events of a zone rebuilds
//!   exactly the same state.
//! - [`codec`]: the one place that knows how anything is encoded to bytes
//!   (bincode 2, standard config, behind a format byte).
//!
//! This crate must never do I/O, read a clock, spawn a task or depend on an
//! async runtime: time comes in as a value and bytes go out as values.

pub mod booking;
pub mod codec;
pub mod counts;
pub mod error;
pub mod ids;
pub mod kinds;
pub mod layout;
pub mod reading;
pub mod zone;

pub use booking::{Booking, BookingRequest};
pub use counts::{Counts, ZoneCounts};
pub use error::EngineError;
pub use ids::{BookingId, FacilityId, IdError, Millis, Plate, Seq, SpotId, UserId, ZoneId};
pub use kinds::{BookingStatus, PlateDirection, SpotKind, SpotState};
pub use layout::{FacilityLayout, Location, SpotLayout, ZoneLayout, ZoneShape};
pub use reading::Reading;
pub use zone::{Command, Event, SpotView, ZoneSnapshot, ZoneState};
