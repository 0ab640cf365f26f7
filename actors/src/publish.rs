//! What the actors publish to readers: facility views, snapshots and
//! gap-free deltas.
//!
//! A facility's `seq` is the number of zone events it has published (plus
//! a base carried across layout changes), so it is strictly increasing and
//! survives restarts. A [`Delta`] takes a reader from `prev` to `seq`;
//! deltas are built once and shared (`Arc`) by every subscriber, and each
//! carries an [`EdgeCache`] where the edge keeps its encodings, so it
//! encodes each once per wire shape. What a zone reports to its facility
//! is a [`ZoneReport`].
//!
//! These are plain values: they know no wire format (the edge converts
//! them into the protocol crate's types). This module must never block or
//! hold a lock across an await.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bincode::{Decode, Encode};
use parkme_engine::{FacilityId, Location, Seq, SpotView, ZoneCounts, ZoneId};
use tokio::sync::broadcast;

/// What a zone publishes once a change of it is durable: its counts and
/// the spots that changed (every spot when `full`).
#[derive(Debug, Clone)]
pub struct ZoneReport {
    pub zone: ZoneId,
    pub zone_seq: Seq,
    pub name: String,
    pub capacity: Option<u32>,
    /// The zone's quota of advance reservations (contract §2.2).
    pub reservable: u32,
    pub counts: ZoneCounts,
    pub spots: Vec<SpotView>,
    /// `spots` holds every spot (start-up or layout change).
    pub full: bool,
}

/// Whatever the edge derives once from a snapshot or a delta (its
/// encodings), kept beside it and shared with it. The actors never look
/// inside.
#[derive(Default)]
pub struct EdgeCache(OnceLock<Arc<dyn Any + Send + Sync>>);

impl EdgeCache {
    /// The edge's `T`, created on first use; `None` if another type was
    /// stored first.
    pub fn get_or_default<T: Any + Send + Sync + Default>(&self) -> Option<&T> {
        self.0
            .get_or_init(|| Arc::new(T::default()))
            .downcast_ref::<T>()
    }
}

impl std::fmt::Debug for EdgeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "EdgeCache(filled)"
        } else {
            "EdgeCache(empty)"
        })
    }
}

/// One zone's counts as readers see them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ZoneView {
    pub id: ZoneId,
    pub name: String,
    pub capacity: Option<u32>,
    pub reservable: u32,
    pub counts: ZoneCounts,
}

/// A facility at one seq, without spots.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
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
    /// The edge's encodings of this snapshot.
    pub edge: EdgeCache,
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
    /// The edge's encodings of this delta.
    pub edge: EdgeCache,
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
///
/// A snapshot may be a recent one shared with other subscribers rather
/// than one of this very moment (snapshot builds per facility are
/// bounded): `catch_up` then holds the deltas from its seq on, and
/// `updates` continues after them, so the chain stays gap-free.
#[derive(Debug)]
pub struct Subscription {
    pub start: Start,
    pub catch_up: Vec<Arc<Delta>>,
    pub updates: broadcast::Receiver<Arc<Delta>>,
}
