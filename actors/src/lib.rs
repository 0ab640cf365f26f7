//! ParkMe's actors: where live state lives and where every change is
//! serialized.
//!
//! Map of the crate, along the data path:
//! - [`node`]: the API the edge calls; routes each request to the actor
//!   that owns its facility or zone.
//! - `facility` (private): one actor per facility; supervises its zone
//!   actors, routes to them and feeds their reports into its read model;
//!   `facility::relayout`: a layout change, all or nothing, with the
//!   facility record as its one commit point.
//! - [`read_model`]: a facility's read model as a plain value (views,
//!   candidates, `seq`, history, broadcast, bounded snapshot builds), fed
//!   by zone reports or by the owner's deltas.
//! - `zone` (private): one actor per zone; owns the zone's state machine,
//!   journals through the group committer and answers only once durable,
//!   through its pump's typed replies. Its [`recover`] (a zone's state
//!   from storage) is public for backups.
//! - [`probe`]: the steps of a layout change; with the `testing` feature,
//!   a probe that stops a change at any of them.
//! - [`publish`]: the snapshots and deltas readers receive, and what a
//!   zone reports.
//! - [`metrics`]: every metric family of this crate, named once.
//! - [`record`]: the durable facility record.
//! - [`clock`]: the node's clock (pausable in tests).
//!
//! This crate must never speak HTTP or JSON, and never decide domain rules
//! itself: those belong to the edge and to `parkme_engine`.

pub mod clock;
pub mod error;
mod facility;
pub mod history;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod probe;
pub mod publish;
pub mod read_model;
pub mod record;
mod zone;

pub use error::ActorError;
pub use node::{BookParams, Booked, Fenced, KeyCheck, Node, NodeConfig, SensorGrant, SensorKey};
pub use publish::{
    Delta, EdgeCache, FacilityView, Snapshot, Start, Subscription, ZoneReport, ZoneView,
};
pub use read_model::ReadModel;
pub use zone::{HOLD_LIMIT, MAX_HELD, recover};
