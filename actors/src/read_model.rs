//! A facility's read model: what readers see of it, as a plain value.
//!
//! Fed by what its zones report ([`ReadModel::zone_changed`]), by a layout
//! change ([`ReadModel::relayout`]) or, on a node that does not own the
//! facility, by the deltas the owner published ([`ReadModel::apply_delta`]);
//! it answers views, spot lists and booking candidates, numbers changes
//! into the facility `seq`, keeps a bounded history for subscribers that
//! resume with `since`, and broadcasts each delta once to every
//! subscriber.
//!
//! Snapshot builds are bounded per facility however many subscribe: a
//! burst of [`SNAPSHOT_BURST`], then one per [`SNAPSHOT_EVERY`]. Between
//! builds a new subscriber gets the latest snapshot plus the deltas since
//! from the history (`catch_up`), so the chain stays gap-free.
//!
//! This module must never do I/O, await, or hold an actor reference: time
//! comes in as a value.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parkme_engine::{
    FacilityId, FacilityLayout, Location, Seq, SpotId, SpotKind, SpotView, ZoneCounts, ZoneId,
    ZoneLayout, ZoneShape,
};
use tokio::sync::broadcast;

use crate::metrics;
use crate::peer::PeerImage;
use crate::publish::{Delta, FacilityView, Snapshot, Start, Subscription, ZoneReport, ZoneView};

/// Deltas kept for subscribers resuming with `since`.
pub const HISTORY: usize = 1024;
/// Deltas buffered per subscriber before it must resync with a snapshot.
pub const BROADCAST: usize = 1024;
/// Snapshots a facility may build back to back.
pub const SNAPSHOT_BURST: u32 = 4;
/// Past the burst, one more snapshot build per this long.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// One zone as readers see it.
#[derive(Debug)]
struct ZoneEntry {
    /// Zone seq published so far (`None` until the zone first reports).
    seq: Option<Seq>,
    view: ZoneView,
    spots: Vec<SpotView>,
    spot_index: HashMap<SpotId, usize>,
}

impl ZoneEntry {
    fn empty(layout: &ZoneLayout) -> ZoneEntry {
        ZoneEntry {
            seq: None,
            view: ZoneView {
                id: layout.id.clone(),
                name: layout.name.clone(),
                capacity: match layout.shape {
                    ZoneShape::Counter { capacity, .. } => Some(capacity),
                    ZoneShape::Spots(_) => None,
                },
                reservable: layout.reservable,
                counts: ZoneCounts::default(),
            },
            spots: Vec::new(),
            spot_index: HashMap::new(),
        }
    }

    /// Takes a report's counts and spots (every spot when it is full).
    fn take(&mut self, report: &ZoneReport, gauges: bool) {
        let before = self.view.counts.clone();
        self.view.name.clone_from(&report.name);
        self.view.capacity = report.capacity;
        self.view.reservable = report.reservable;
        self.view.counts = report.counts.clone();
        if report.full {
            self.spots = report.spots.clone();
            self.reindex();
        } else {
            self.update_spots(&report.spots);
        }
        if gauges {
            metrics::spots_changed(&before, &self.view.counts);
        }
    }

    fn reindex(&mut self) {
        self.spot_index = self
            .spots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
    }

    fn update_spots(&mut self, spots: &[SpotView]) {
        for spot in spots {
            if let Some(&i) = self.spot_index.get(&spot.id) {
                self.spots[i] = spot.clone();
            }
        }
    }
}

/// The facility as a whole, without its zones.
#[derive(Debug, Clone)]
struct Header {
    id: FacilityId,
    name: String,
    timezone: String,
    location: Option<Location>,
    /// Zone ids in layout order.
    order: Vec<ZoneId>,
}

impl Header {
    fn of_view(view: &FacilityView) -> Header {
        Header {
            id: view.id.clone(),
            name: view.name.clone(),
            timezone: view.timezone.clone(),
            location: view.location,
            order: view.zones.iter().map(|z| z.id.clone()).collect(),
        }
    }

    fn of(layout: &FacilityLayout) -> Header {
        Header {
            id: layout.id.clone(),
            name: layout.name.clone(),
            timezone: layout.timezone.clone(),
            location: layout.location,
            order: layout.zones.iter().map(|z| z.id.clone()).collect(),
        }
    }
}

/// The latest snapshot and the budget of builds (a token bucket).
#[derive(Debug)]
struct SnapshotCache {
    last: Option<Arc<Snapshot>>,
    budget: u32,
    refilled_at: Option<Instant>,
    built: u64,
}

impl SnapshotCache {
    fn new() -> Self {
        Self {
            last: None,
            budget: SNAPSHOT_BURST,
            refilled_at: None,
            built: 0,
        }
    }

    /// Whether a build is allowed now (taking it from the budget).
    fn take_build(&mut self, now: Instant) -> bool {
        let since = self.refilled_at.get_or_insert(now);
        let earned = now.saturating_duration_since(*since).as_nanos() / SNAPSHOT_EVERY.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.budget = self.budget.saturating_add(earned).min(SNAPSHOT_BURST);
            *since += SNAPSHOT_EVERY * earned.min(SNAPSHOT_BURST);
            if self.budget == SNAPSHOT_BURST {
                *since = now;
            }
        }
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }
}

/// What a non-owner's [`ReadModel::apply_delta`] could not take: the
/// delta does not follow the model's seq, so it needs a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a delta from {prev} does not follow seq {have}")]
pub struct Gap {
    pub have: Seq,
    pub prev: Seq,
}

/// A facility's read model (see the module documentation).
#[derive(Debug)]
pub struct ReadModel {
    header: Header,
    zones: HashMap<ZoneId, ZoneEntry>,
    seq: Seq,
    history: VecDeque<Arc<Delta>>,
    updates: broadcast::Sender<Arc<Delta>>,
    snapshots: SnapshotCache,
    /// Whether this model's counts feed the node's spot gauges (the
    /// owner's does; a copy kept from deltas would count them twice).
    gauges: bool,
}

impl ReadModel {
    /// A model of `layout` at `seq_base`, its zones not reported yet.
    pub fn new(layout: &FacilityLayout, seq_base: Seq, gauges: bool) -> Self {
        let (updates, _) = broadcast::channel(BROADCAST);
        ReadModel {
            header: Header::of(layout),
            zones: layout
                .zones
                .iter()
                .map(|z| (z.id.clone(), ZoneEntry::empty(z)))
                .collect(),
            seq: seq_base,
            history: VecDeque::new(),
            updates,
            snapshots: SnapshotCache::new(),
            gauges,
        }
    }

    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Every zone has reported at least once.
    pub fn is_ready(&self) -> bool {
        self.zones.values().all(|z| z.seq.is_some())
    }

    /// Snapshots built for subscribers so far.
    pub fn snapshots_built(&self) -> u64 {
        self.snapshots.built
    }

    /// Takes what a zone reported; `false` if it was not taken (an unknown
    /// zone, or older than what is shown: queued before a layout change
    /// took the zone's state directly). A change publishes one delta; a
    /// zone's first report is part of the initial state.
    pub fn zone_changed(&mut self, report: ZoneReport, now: Instant) -> bool {
        let gauges = self.gauges;
        let Some(entry) = self.zones.get_mut(&report.zone) else {
            return false;
        };
        let known = entry.seq;
        if known.is_some_and(|k| report.zone_seq < k || (report.zone_seq == k && !report.full)) {
            return false;
        }
        entry.take(&report, gauges);
        let base = known.unwrap_or(Seq::ZERO);
        let advance = report.zone_seq.0.saturating_sub(base.0);
        entry.seq = Some(report.zone_seq.max(base));
        let view = entry.view.clone();
        match known {
            Some(_) if advance > 0 => {
                let prev = self.seq;
                self.seq = Seq(prev.0 + advance);
                self.push(Delta {
                    facility: self.header.id.clone(),
                    prev,
                    seq: self.seq,
                    zones: vec![view],
                    spots: report.spots,
                    relaid: report.full,
                    published_at: now,
                    edge: Default::default(),
                });
            }
            Some(_) => {}
            None => {
                self.seq = Seq(self.seq.0 + report.zone_seq.0);
                // The seq moved without a delta: no snapshot before it
                // may be followed by history any more.
                self.snapshots.last = None;
            }
        }
        true
    }

    /// Serves a new layout in one step: zones that left are forgotten,
    /// `reports` (the zones that changed and confirmed, and every new
    /// zone, full) are taken, the seq becomes `seq_base` plus the zones'
    /// seqs (and at least one more than before), and one delta marked
    /// `relaid` carries the whole new state.
    pub fn relayout(
        &mut self,
        layout: &FacilityLayout,
        seq_base: u64,
        reports: Vec<ZoneReport>,
        now: Instant,
    ) {
        let prev = self.seq;
        let gauges = self.gauges;
        self.zones.retain(|id, entry| {
            let stays = layout.zones.iter().any(|z| &z.id == id);
            if !stays && gauges {
                metrics::spots_changed(&entry.view.counts, &ZoneCounts::default());
            }
            stays
        });
        for zone in &layout.zones {
            self.zones
                .entry(zone.id.clone())
                .or_insert_with(|| ZoneEntry::empty(zone));
        }
        for report in reports {
            if let Some(entry) = self.zones.get_mut(&report.zone) {
                entry.take(&report, gauges);
                entry.seq = Some(report.zone_seq.max(entry.seq.unwrap_or(Seq::ZERO)));
            }
        }
        self.header = Header::of(layout);
        let published: u64 = self.zones.values().filter_map(|z| z.seq).map(|s| s.0).sum();
        let seq = seq_base + published;
        debug_assert!(seq > prev.0, "layout change moved seq from {prev} to {seq}");
        self.seq = Seq(seq.max(prev.0 + 1));
        self.snapshots.last = None;
        let snapshot = self.build();
        self.push(Delta {
            facility: self.header.id.clone(),
            prev,
            seq: self.seq,
            zones: snapshot.view.zones,
            spots: snapshot.spots,
            relaid: true,
            published_at: now,
            edge: Default::default(),
        });
    }

    /// A copy of another node's facility, from the image its owner sent:
    /// at the image's seq, its catch-up applied. Its counts never feed
    /// this node's spot gauges.
    pub fn from_image(image: PeerImage) -> Result<Self, Gap> {
        let (updates, _) = broadcast::channel(BROADCAST);
        let mut model = ReadModel {
            header: Header::of_view(&image.view),
            zones: HashMap::new(),
            seq: image.view.seq,
            history: VecDeque::new(),
            updates,
            snapshots: SnapshotCache::new(),
            gauges: false,
        };
        model.take_state(&image.view, image.spots);
        let now = Instant::now();
        for delta in image.catch_up {
            if delta.seq > model.seq {
                model.apply_delta(delta.into_delta(now))?;
            }
        }
        Ok(model)
    }

    /// Brings a copy to a newer image of its owner's (after a gap): one
    /// `relaid` delta from the copy's seq to the image's carries the whole
    /// state, so its subscribers take a fresh snapshot and the chain
    /// stays unbroken. `false` (nothing changed) if the image is not newer.
    pub fn resync(&mut self, image: PeerImage, now: Instant) -> Result<bool, Gap> {
        if image.seq() <= self.seq {
            return Ok(false);
        }
        let fresh = ReadModel::from_image(image)?;
        let prev = self.seq;
        self.header = fresh.header;
        self.zones = fresh.zones;
        self.seq = fresh.seq;
        self.snapshots.last = None;
        let snapshot = self.build();
        self.push(Delta {
            facility: self.header.id.clone(),
            prev,
            seq: self.seq,
            zones: snapshot.view.zones,
            spots: snapshot.spots,
            relaid: true,
            published_at: now,
            edge: Default::default(),
        });
        Ok(true)
    }

    /// Replaces zones and spots by `view`'s zones and `spots`.
    fn take_state(&mut self, view: &FacilityView, spots: Vec<SpotView>) {
        let mut by_zone: HashMap<ZoneId, Vec<SpotView>> = HashMap::new();
        for spot in spots {
            by_zone.entry(spot.zone.clone()).or_default().push(spot);
        }
        self.zones = view
            .zones
            .iter()
            .map(|zone| {
                let mut entry = ZoneEntry {
                    seq: Some(Seq::ZERO),
                    view: zone.clone(),
                    spots: by_zone.remove(&zone.id).unwrap_or_default(),
                    spot_index: HashMap::new(),
                };
                entry.reindex();
                (zone.id.clone(), entry)
            })
            .collect();
    }

    /// Live subscriptions to this model's deltas.
    pub fn subscribers(&self) -> usize {
        self.updates.receiver_count()
    }

    /// Takes a delta the facility's owner published (on a node that keeps
    /// a copy): it must follow this model's seq. A relaid delta replaces
    /// the zones it lists, spots included, and drops the others.
    pub fn apply_delta(&mut self, delta: Delta) -> Result<(), Gap> {
        if delta.prev != self.seq {
            return Err(Gap {
                have: self.seq,
                prev: delta.prev,
            });
        }
        if delta.relaid {
            self.zones
                .retain(|id, _| delta.zones.iter().any(|z| &z.id == id));
            self.header.order = delta.zones.iter().map(|z| z.id.clone()).collect();
        }
        for view in &delta.zones {
            let entry = self
                .zones
                .entry(view.id.clone())
                .or_insert_with(|| ZoneEntry {
                    seq: Some(Seq::ZERO),
                    view: view.clone(),
                    spots: Vec::new(),
                    spot_index: HashMap::new(),
                });
            entry.view = view.clone();
            if delta.relaid {
                entry.spots = delta
                    .spots
                    .iter()
                    .filter(|s| s.zone == view.id)
                    .cloned()
                    .collect();
                entry.reindex();
            } else {
                entry.update_spots(&delta.spots);
            }
        }
        self.seq = delta.seq;
        if delta.relaid {
            self.snapshots.last = None;
        }
        self.push(delta);
        Ok(())
    }

    fn push(&mut self, delta: Delta) {
        let delta = Arc::new(delta);
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Arc::clone(&delta));
        // No receivers is fine: nobody is watching.
        let _ = self.updates.send(delta);
    }

    fn entries(&self) -> impl Iterator<Item = &ZoneEntry> {
        self.header.order.iter().filter_map(|id| self.zones.get(id))
    }

    /// The facility at its current seq, without spots.
    pub fn view(&self) -> FacilityView {
        let mut totals = ZoneCounts::default();
        let zones = self
            .entries()
            .map(|entry| {
                totals.add(&entry.view.counts);
                entry.view.clone()
            })
            .collect();
        FacilityView {
            id: self.header.id.clone(),
            name: self.header.name.clone(),
            timezone: self.header.timezone.clone(),
            location: self.header.location,
            seq: self.seq,
            totals,
            zones,
        }
    }

    /// Every spot of one zone, `None` for a zone not in the layout.
    pub fn spots(&self, zone: &ZoneId) -> Option<Vec<SpotView>> {
        self.zones.get(zone).map(|entry| entry.spots.clone())
    }

    fn build(&self) -> Snapshot {
        Snapshot {
            view: self.view(),
            spots: self
                .entries()
                .flat_map(|entry| entry.spots.iter().cloned())
                .collect(),
            edge: Default::default(),
        }
    }

    /// The deltas from `from` up to now, if the history holds them all
    /// and none of them changed the layout.
    fn chain_from(&self, from: Seq) -> Option<Vec<Arc<Delta>>> {
        if from == self.seq {
            return Some(Vec::new());
        }
        let covered = self.history.front().is_some_and(|first| first.prev <= from);
        let deltas: Vec<Arc<Delta>> = self
            .history
            .iter()
            .filter(|d| d.prev >= from)
            .cloned()
            .collect();
        (covered && from < self.seq && deltas.iter().all(|d| !d.relaid)).then_some(deltas)
    }

    /// A snapshot for a new subscriber and the deltas after it: the latest
    /// one with the history since while the build budget is spent, else a
    /// new one (shared in turn by every subscriber at its seq).
    fn shared_snapshot(&mut self, now: Instant) -> (Arc<Snapshot>, Vec<Arc<Delta>>) {
        if let Some(last) = &self.snapshots.last {
            if last.view.seq == self.seq {
                return (Arc::clone(last), Vec::new());
            }
            let last = Arc::clone(last);
            if !self.snapshots.take_build(now)
                && let Some(catch_up) = self.chain_from(last.view.seq)
            {
                return (last, catch_up);
            }
        } else {
            // Counted for the bucket, but a first build is never refused.
            self.snapshots.take_build(now);
        }
        let snapshot = Arc::new(self.build());
        self.snapshots.built += 1;
        metrics::snapshot_built();
        self.snapshots.last = Some(Arc::clone(&snapshot));
        (snapshot, Vec::new())
    }

    /// A new subscriber: the deltas after `since` if the history still
    /// holds them (and no layout change is among them), else a snapshot;
    /// then every later delta.
    pub fn subscribe(&mut self, since: Option<Seq>, now: Instant) -> Subscription {
        let updates = self.updates.subscribe();
        let resumed = since
            .filter(|since| *since <= self.seq)
            .and_then(|since| self.chain_from(since));
        if let Some(deltas) = resumed {
            return Subscription {
                start: Start::Resume(deltas),
                catch_up: Vec::new(),
                updates,
            };
        }
        let (snapshot, catch_up) = self.shared_snapshot(now);
        Subscription {
            start: Start::Snapshot(snapshot),
            catch_up,
            updates,
        }
    }

    /// The zones a booking that names no zone nor spot should try, in
    /// order: zones that look free first (the model may lag a commit),
    /// then the rest in layout order, so a stale count never hides room.
    pub fn candidates(&self, kind: Option<SpotKind>) -> Vec<ZoneId> {
        let mut zones: Vec<(bool, usize, ZoneId)> = self
            .header
            .order
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let counts = &self.zones.get(id)?.view.counts;
                let free = match kind {
                    Some(k) => counts.by_kind[k.index()].available,
                    None => counts.overall.available,
                };
                Some((free == 0, i, id.clone()))
            })
            .collect();
        zones.sort_by_key(|(full, i, _)| (*full, *i));
        zones.into_iter().map(|(_, _, id)| id).collect()
    }
}

#[cfg(test)]
#[path = "read_model_tests.rs"]
mod tests;
