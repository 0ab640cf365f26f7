//! What the actors publish to readers: facility views, snapshots and
//! gap-free deltas.
//!
//! A facility's `seq` is the number of zone events it has published (plus
//! a base carried across layout changes), so it is strictly increasing and
//! survives restarts. A [`Delta`] takes a reader from `prev` to `seq`;
//! deltas are built once and shared (`Arc`) by every subscriber, and each
//! carries a cache so the edge encodes it once per wire shape.
//!
//! This module must never block or hold a lock across an await.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parkme_engine::{FacilityId, Location, Seq, SpotView, ZoneCounts, ZoneId};
use tokio::sync::broadcast;

/// One zone's counts as readers see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneView {
    pub id: ZoneId,
    pub name: String,
    pub capacity: Option<u32>,
    pub counts: ZoneCounts,
}

/// A facility at one seq, without spots.
#[derive(Debug, Clone, PartialEq)]
pub struct FacilityView {
    pub id: FacilityId,
    pub name: String,
    pub timezone: String,
    pub location: Option<Location>,
    pub seq: Seq,
    pub totals: ZoneCounts,
    pub zones: Vec<ZoneView>,
}

/// A facility at one seq, with every spot.
#[derive(Debug)]
pub struct Snapshot {
    pub view: FacilityView,
    pub spots: Vec<SpotView>,
    /// Encodings of this snapshot, filled by the first reader that needs
    /// one: `[zones only, with spots]`.
    pub encoded: [OnceLock<Arc<str>>; 2],
}

/// The change from `prev` to `seq`: only zones and spots that changed.
#[derive(Debug)]
pub struct Delta {
    pub facility: FacilityId,
    pub prev: Seq,
    pub seq: Seq,
    pub zones: Vec<ZoneView>,
    pub spots: Vec<SpotView>,
    /// The layout changed: readers should take a fresh snapshot.
    pub relaid: bool,
    /// When the facility published it (after the commit behind it was
    /// durable): the start of the edge's delivery latency.
    pub published_at: Instant,
    /// Encodings of this delta: `[zones only, with spots]`.
    pub encoded: [OnceLock<Arc<str>>; 2],
}

/// How a new subscriber starts.
#[derive(Debug)]
pub enum Start {
    /// The full state at `snapshot.view.seq`.
    Snapshot(Arc<Snapshot>),
    /// The deltas after the subscriber's `since`, from the history.
    Resume(Vec<Arc<Delta>>),
}

/// A live subscription: how to start, then every later delta in order.
#[derive(Debug)]
pub struct Subscription {
    pub start: Start,
    pub updates: broadcast::Receiver<Arc<Delta>>,
}
