//! ParkMe's wire contract (contract §3–§5): every message and response
//! shape, as types with serde (JSON) and bincode derives, and how they are
//! read from and built out of the domain's values.
//!
//! Map of the crate:
//! - [`codec`]: the wire encodings (the engine's one codec module,
//!   bincode 2 standard config) and the frame limit.
//! - [`sensor`]: the sensor socket (§4): [`sensor::SensorMessage`] in,
//!   [`sensor::SensorReply`] out, frame parsers for JSON and bincode, and
//!   the one translation of a message into the engine's `Reading`.
//! - [`app`]: the app socket (§5): [`app::ClientOp`] in, [`app::ServerMessage`]
//!   (snapshots, deltas, bookings, errors) out.
//! - [`rest`]: the HTTP bodies (§3): facilities, zones, counts, spots,
//!   bookings, layouts as operators send them, health, the error body.
//!
//! The gateway, the load test, the tests and (later) nodes talking to each
//! other use it. This crate must never do I/O, hold state or depend on a
//! runtime, a web framework or a store: it is values and their encodings.

pub mod app;
pub mod codec;
pub mod rest;
pub mod sensor;

pub use app::{ClientOp, Detail, ServerMessage};
pub use rest::{Booking, Counts, ErrorBody, Facility, Spot, Zone, ZoneCounts};
pub use sensor::{SensorMessage, SensorReply};
