//! ParkMe's actors: where live state lives and where every change is
//! serialized.
//!
//! Map of the crate, along the data path:
//! - [`node`]: the API the edge calls; routes each request to the actor
//!   that owns its facility or zone.
//! - [`facility`]: one actor per facility; supervises its zone actors,
//!   keeps the read model, numbers published changes (`seq`) and fans them
//!   out.
//! - [`zone`]: one actor per zone; owns the zone's state machine, journals
//!   through the group committer and answers only once durable.
//! - [`facility`]`::relayout` (private): a layout change, all or nothing,
//!   with the facility record as its one commit point.
//! - [`probe`]: the steps of a layout change; with the `testing` feature,
//!   a probe that stops a change at any of them.
//! - [`publish`]: the snapshots and deltas readers receive.
//! - [`record`]: the durable facility record.
//! - [`clock`]: the node's clock (pausable in tests).
//!
//! This crate must never speak HTTP or JSON, and never decide domain rules
//! itself: those belong to the edge and to `parkme_engine`.

pub mod clock;
pub mod error;
pub mod facility;
pub mod node;
pub mod probe;
pub mod publish;
pub mod record;
pub mod zone;

pub use error::ActorError;
pub use node::{BookParams, Booked, KeyCheck, Node, NodeConfig, SensorKey, SensorReading};
pub use publish::{Delta, FacilityView, Snapshot, Start, Subscription, ZoneView};
