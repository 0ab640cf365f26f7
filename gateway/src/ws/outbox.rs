//! What an app connection still has to send, bounded whatever the client
//! does.
//!
//! Replies (bookings, errors) wait in a short queue; when it is full the
//! connection stops reading ops. Each subscribed facility has its own
//! queue of at most [`FACILITY_QUEUE`] items: a snapshot, deltas shared
//! with every other subscriber (`Arc<Delta>`, encoded once), and, once the
//! client is that far behind, one *merged* delta at the tail that absorbs
//! every later delta: latest counts per zone, latest state per spot,
//! spanning `prev..seq`.
//!
//! Merged entries (zones and spots) are counted across the connection's
//! facilities; past the connection's `merge_max`, the facility whose merge
//! grew is *lapsed*: its queue is dropped and later deltas are ignored
//! until the writer reaches that facility again (the reader caught up),
//! which asks the facility's forwarder (through its `want` notify) for a
//! fresh snapshot. A gap, a layout change or a lagging broadcast lapses a
//! facility the same way. So what a connection holds is bounded by
//! `merge_max` plus a few shared items per facility, never by how much
//! changed while the client did not read, and a client that does not read
//! never makes the server build a snapshot.
//!
//! Gap-freedom is checked here: a delta is queued only if its `prev` is
//! the `seq` of the last message queued for its facility.
//!
//! This module must never reorder the messages of one facility.
//!
//! Over 600 lines only with its unit tests (the `tests` module at the end).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parkme_actors::{Delta, Snapshot, ZoneView};
use parkme_engine::{FacilityId, Seq, SpotId, SpotView};
use parkme_protocol::{Detail, ServerMessage};
use tokio::sync::Notify;

use crate::wire;

/// Items queued per facility before deltas are merged.
pub const FACILITY_QUEUE: usize = 16;
/// Replies queued before the connection stops reading ops.
pub const REPLY_QUEUE: usize = 64;
/// Merged entries a connection may hold unless configured otherwise.
pub const DEFAULT_MERGE_MAX: usize = 1024;

/// One message to send.
#[derive(Debug)]
pub enum Item {
    Reply(Box<ServerMessage>),
    Ping,
    Snapshot(Arc<Snapshot>, Detail),
    Delta(Arc<Delta>, Detail),
    Merged(Box<Merged>),
}

/// Several consecutive deltas of one facility folded into one.
#[derive(Debug)]
pub struct Merged {
    facility: FacilityId,
    prev: Seq,
    seq: Seq,
    zones: Vec<ZoneView>,
    spots: Vec<SpotView>,
    spot_index: HashMap<SpotId, usize>,
    with_spots: bool,
    published_at: Instant,
}

impl Merged {
    fn from_delta(delta: &Delta, detail: Detail) -> Merged {
        let mut merged = Merged {
            facility: delta.facility.clone(),
            prev: delta.prev,
            seq: delta.prev,
            zones: Vec::new(),
            spots: Vec::new(),
            spot_index: HashMap::new(),
            with_spots: detail.with_spots(),
            published_at: delta.published_at,
        };
        merged.absorb(delta);
        merged
    }

    fn absorb(&mut self, delta: &Delta) {
        debug_assert_eq!(delta.prev, self.seq, "merged deltas must be consecutive");
        self.seq = delta.seq;
        self.published_at = delta.published_at;
        for zone in &delta.zones {
            match self.zones.iter_mut().find(|z| z.id == zone.id) {
                Some(slot) => *slot = zone.clone(),
                None => self.zones.push(zone.clone()),
            }
        }
        if self.with_spots {
            for spot in &delta.spots {
                match self.spot_index.get(&spot.id) {
                    Some(&i) => self.spots[i] = spot.clone(),
                    None => {
                        self.spot_index.insert(spot.id.clone(), self.spots.len());
                        self.spots.push(spot.clone());
                    }
                }
            }
        }
    }

    /// Zones and spots held.
    pub fn entries(&self) -> usize {
        self.zones.len() + self.spots.len()
    }

    pub fn span(&self) -> (Seq, Seq) {
        (self.prev, self.seq)
    }

    pub fn published_at(&self) -> Instant {
        self.published_at
    }

    pub fn to_json(&self) -> String {
        wire::delta(
            &self.facility,
            (self.prev, self.seq),
            &self.zones,
            self.with_spots.then_some(self.spots.as_slice()),
        )
        .to_json()
    }
}

/// A facility waiting for a fresh snapshot instead of its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lapse {
    /// Not asked yet: the writer asks when it reaches the facility.
    Pending,
    /// The forwarder was asked and is fetching it.
    Asked,
}

#[derive(Debug)]
struct FacilityQueue {
    /// Which subscription fills it; a stale one (replaced by a newer
    /// subscribe) must not touch it.
    generation: u64,
    detail: Detail,
    /// Seq of the last message queued (the `prev` the next delta needs).
    last: Seq,
    items: VecDeque<Item>,
    /// Entries of the merged delta at the tail (0 without one).
    merged: usize,
    lapse: Option<Lapse>,
    /// Wakes this subscription's forwarder to fetch a fresh snapshot.
    want: Arc<Notify>,
}

impl FacilityQueue {
    fn new(generation: u64, detail: Detail, last: Seq, want: Arc<Notify>) -> Self {
        Self {
            generation,
            detail,
            last,
            items: VecDeque::new(),
            merged: 0,
            lapse: None,
            want,
        }
    }
}

/// What [`Outbox::push_delta`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Folded into the merged delta at the tail.
    Conflated,
    /// Already covered by what was queued.
    Stale,
    /// Not gap-free or a layout change: the facility lapsed and will get
    /// a fresh snapshot.
    Resync,
    /// The merge grew past the connection's bound: the facility lapsed.
    Dropped,
    /// The facility is waiting for a fresh snapshot, which covers this.
    Lapsed,
    /// The subscription is gone.
    Unsubscribed,
}

#[derive(Debug)]
pub struct Outbox {
    replies: VecDeque<Item>,
    facilities: HashMap<FacilityId, FacilityQueue>,
    /// Facilities with something queued (or a snapshot to ask for),
    /// served round-robin.
    ready: VecDeque<FacilityId>,
    close: Option<(u16, &'static str)>,
    merge_max: usize,
    /// Merged entries held across facilities.
    merged: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new(DEFAULT_MERGE_MAX)
    }
}

/// What the writer takes next.
#[derive(Debug)]
pub enum Taken {
    Item(Item),
    Close(u16, &'static str),
    Nothing,
}

impl Outbox {
    pub fn new(merge_max: usize) -> Self {
        Self {
            replies: VecDeque::new(),
            facilities: HashMap::new(),
            ready: VecDeque::new(),
            close: None,
            merge_max,
            merged: 0,
        }
    }

    pub fn replies_full(&self) -> bool {
        self.replies.len() >= REPLY_QUEUE
    }

    pub fn push_reply(&mut self, message: ServerMessage) {
        self.replies.push_back(Item::Reply(Box::new(message)));
    }

    pub fn push_ping(&mut self) {
        if !self.replies.iter().any(|i| matches!(i, Item::Ping)) {
            self.replies.push_back(Item::Ping);
        }
    }

    pub fn close(&mut self, code: u16, reason: &'static str) {
        self.close.get_or_insert((code, reason));
    }

    pub fn subscriptions(&self) -> usize {
        self.facilities.len()
    }

    /// Merged entries held across facilities.
    pub fn merged_entries(&self) -> usize {
        self.merged
    }

    fn mark_ready(&mut self, facility: &FacilityId) {
        if !self.ready.contains(facility) {
            self.ready.push_back(facility.clone());
        }
    }

    /// Puts a facility's queue in place, forgetting the one it replaces.
    fn install(&mut self, facility: &FacilityId, queue: FacilityQueue) {
        if let Some(old) = self.facilities.insert(facility.clone(), queue) {
            self.merged -= old.merged;
        }
    }

    /// Starts (or restarts) a facility's queue with a snapshot and the
    /// deltas that bring it up to date (`catch_up`, when the snapshot is a
    /// shared older one).
    pub fn start_snapshot(
        &mut self,
        generation: u64,
        detail: Detail,
        snapshot: Arc<Snapshot>,
        catch_up: Vec<Arc<Delta>>,
        want: Arc<Notify>,
    ) {
        let facility = snapshot.view.id.clone();
        let mut queue = FacilityQueue::new(generation, detail, snapshot.view.seq, want);
        queue.items.push_back(Item::Snapshot(snapshot, detail));
        self.install(&facility, queue);
        self.mark_ready(&facility);
        self.catch_up(generation, catch_up);
    }

    fn catch_up(&mut self, generation: u64, deltas: Vec<Arc<Delta>>) {
        for delta in deltas {
            self.push_delta(generation, delta);
        }
    }

    /// Starts a facility's queue where the client left off (`since`),
    /// then queues the deltas after it; if they do not line up, the
    /// facility lapses and gets a fresh snapshot ([`Pushed::Resync`]).
    pub fn start_resume(
        &mut self,
        generation: u64,
        detail: Detail,
        facility: &FacilityId,
        since: Seq,
        deltas: Vec<Arc<Delta>>,
        want: Arc<Notify>,
    ) -> Pushed {
        self.install(
            facility,
            FacilityQueue::new(generation, detail, since, want),
        );
        for delta in deltas {
            if matches!(
                self.push_delta(generation, delta),
                Pushed::Resync | Pushed::Dropped
            ) {
                return Pushed::Resync;
            }
        }
        Pushed::Queued
    }

    /// Drops what a facility has queued and waits for a fresh snapshot.
    fn lapse_queue(&mut self, facility: &FacilityId) {
        let Some(queue) = self.facilities.get_mut(facility) else {
            return;
        };
        self.merged -= queue.merged;
        queue.merged = 0;
        queue.items.clear();
        queue.lapse.get_or_insert(Lapse::Pending);
        self.mark_ready(facility);
    }

    /// Lapses a facility (its broadcast lagged); `false` if the
    /// subscription is gone.
    pub fn lapse(&mut self, generation: u64, facility: &FacilityId) -> bool {
        match self.facilities.get(facility) {
            Some(queue) if queue.generation == generation => {
                self.lapse_queue(facility);
                true
            }
            _ => false,
        }
    }

    /// Replaces whatever a facility had queued by a fresh snapshot (and
    /// the deltas that bring it up to date).
    pub fn resync(
        &mut self,
        generation: u64,
        snapshot: Arc<Snapshot>,
        catch_up: Vec<Arc<Delta>>,
    ) -> bool {
        let facility = snapshot.view.id.clone();
        let Some(queue) = self.facilities.get_mut(&facility) else {
            return false;
        };
        if queue.generation != generation {
            return false;
        }
        self.merged -= queue.merged;
        queue.merged = 0;
        queue.lapse = None;
        queue.last = snapshot.view.seq;
        queue.items.clear();
        queue
            .items
            .push_back(Item::Snapshot(snapshot, queue.detail));
        self.mark_ready(&facility);
        self.catch_up(generation, catch_up);
        true
    }

    pub fn unsubscribe(&mut self, facility: &FacilityId) -> bool {
        self.ready.retain(|f| f != facility);
        match self.facilities.remove(facility) {
            Some(queue) => {
                self.merged -= queue.merged;
                true
            }
            None => false,
        }
    }

    /// Queues a delta for its facility, merging once the queue is full.
    pub fn push_delta(&mut self, generation: u64, delta: Arc<Delta>) -> Pushed {
        let Some(queue) = self.facilities.get_mut(&delta.facility) else {
            return Pushed::Unsubscribed;
        };
        if queue.generation != generation {
            return Pushed::Unsubscribed;
        }
        if queue.lapse.is_some() {
            return Pushed::Lapsed;
        }
        if delta.seq <= queue.last && !delta.relaid {
            return Pushed::Stale;
        }
        if delta.relaid || delta.prev != queue.last {
            self.lapse_queue(&delta.facility);
            return Pushed::Resync;
        }
        queue.last = delta.seq;
        let pushed = if queue.items.len() < FACILITY_QUEUE {
            queue
                .items
                .push_back(Item::Delta(delta.clone(), queue.detail));
            Pushed::Queued
        } else {
            let detail = queue.detail;
            let before = queue.merged;
            let mut lost = false;
            if let Some(tail) = queue.items.back_mut() {
                let merged = match tail {
                    Item::Merged(merged) => {
                        merged.absorb(&delta);
                        queue.merged = merged.entries();
                        None
                    }
                    Item::Delta(previous, _) => {
                        let mut merged = Merged::from_delta(previous, detail);
                        merged.absorb(&delta);
                        queue.merged = merged.entries();
                        Some(merged)
                    }
                    // A full queue ends with a delta: a snapshot is alone.
                    _ => {
                        lost = true;
                        None
                    }
                };
                if let Some(merged) = merged {
                    *tail = Item::Merged(Box::new(merged));
                }
            }
            if lost {
                debug_assert!(false, "a full facility queue ends with a delta");
                queue.items.push_back(Item::Delta(delta.clone(), detail));
            }
            self.merged = self.merged - before + queue.merged;
            if self.merged > self.merge_max {
                self.lapse_queue(&delta.facility);
                return Pushed::Dropped;
            }
            Pushed::Conflated
        };
        self.mark_ready(&delta.facility);
        pushed
    }

    /// The next thing to send: replies first, then one item per facility
    /// in turn, then the close frame. Reaching a lapsed facility asks its
    /// forwarder for the fresh snapshot.
    pub fn take(&mut self) -> Taken {
        if let Some(item) = self.replies.pop_front() {
            return Taken::Item(item);
        }
        while let Some(facility) = self.ready.pop_front() {
            let Some(queue) = self.facilities.get_mut(&facility) else {
                continue;
            };
            let Some(item) = queue.items.pop_front() else {
                if queue.lapse == Some(Lapse::Pending) {
                    queue.lapse = Some(Lapse::Asked);
                    queue.want.notify_one();
                }
                continue;
            };
            if matches!(item, Item::Merged(_)) {
                self.merged -= queue.merged;
                queue.merged = 0;
            }
            if !queue.items.is_empty() {
                self.ready.push_back(facility);
            }
            return Taken::Item(item);
        }
        match self.close {
            Some((code, reason)) => Taken::Close(code, reason),
            None => Taken::Nothing,
        }
    }

    /// Items queued across facilities (for tests and metrics).
    pub fn queued(&self) -> usize {
        self.replies.len()
            + self
                .facilities
                .values()
                .map(|q| q.items.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkme_actors::FacilityView;
    use parkme_engine::{SpotKind, SpotState, ZoneCounts, ZoneId};

    fn want() -> Arc<Notify> {
        Arc::new(Notify::new())
    }

    /// Whether `want` was notified (a snapshot was asked for).
    fn asked(want: &Notify) -> bool {
        futures_util::FutureExt::now_or_never(want.notified()).is_some()
    }

    fn fid() -> FacilityId {
        FacilityId::parse("f1").expect("id")
    }

    fn zone(id: &str, occupied: u32) -> ZoneView {
        let mut counts = ZoneCounts::default();
        counts.overall.occupied = occupied;
        ZoneView {
            id: ZoneId::parse(id).expect("id"),
            name: id.into(),
            capacity: None,
            reservable: 0,
            counts,
        }
    }

    fn spot(id: &str, state: SpotState) -> SpotView {
        SpotView {
            id: SpotId::parse(id).expect("id"),
            zone: ZoneId::parse("A").expect("id"),
            kind: SpotKind::Standard,
            state,
            booking: None,
            overstay: false,
        }
    }

    fn delta(prev: u64, seq: u64, spots: Vec<SpotView>) -> Arc<Delta> {
        Arc::new(Delta {
            facility: fid(),
            prev: Seq(prev),
            seq: Seq(seq),
            zones: vec![zone("A", seq as u32)],
            spots,
            relaid: false,
            published_at: Instant::now(),
            edge: Default::default(),
        })
    }

    fn snapshot(seq: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            view: FacilityView {
                id: fid(),
                name: "F".into(),
                timezone: "UTC".into(),
                location: None,
                seq: Seq(seq),
                totals: ZoneCounts::default(),
                zones: vec![zone("A", 0)],
            },
            spots: Vec::new(),
            edge: Default::default(),
        })
    }

    /// Drains the outbox into (prev, seq) spans; a snapshot is (seq, seq).
    fn drain(outbox: &mut Outbox) -> Vec<(u64, u64)> {
        let mut spans = Vec::new();
        while let Taken::Item(item) = outbox.take() {
            spans.push(match item {
                Item::Snapshot(s, _) => (s.view.seq.0, s.view.seq.0),
                Item::Delta(d, _) => (d.prev.0, d.seq.0),
                Item::Merged(m) => (m.span().0.0, m.span().1.0),
                Item::Reply(_) | Item::Ping => continue,
            });
        }
        spans
    }

    #[test]
    fn a_reading_client_gets_every_delta_unmerged() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Zones, snapshot(5), Vec::new(), want());
        assert_eq!(drain(&mut outbox), vec![(5, 5)]);
        for seq in 6..10 {
            assert_eq!(
                outbox.push_delta(1, delta(seq - 1, seq, vec![])),
                Pushed::Queued
            );
            assert_eq!(drain(&mut outbox), vec![(seq - 1, seq)]);
        }
    }

    #[test]
    fn a_client_that_does_not_read_gets_one_merged_delta_spanning_the_rest() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Spots, snapshot(0), Vec::new(), want());
        for seq in 1..=10_000u64 {
            let state = if seq % 2 == 0 {
                SpotState::Available
            } else {
                SpotState::Occupied
            };
            let spots = vec![spot(&format!("s{}", seq % 7), state)];
            outbox.push_delta(1, delta(seq - 1, seq, spots));
        }
        assert!(outbox.queued() <= FACILITY_QUEUE);
        let spans = drain(&mut outbox);
        assert_eq!(spans.first(), Some(&(0, 0)));
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "gap-free: {spans:?}");
        }
        assert_eq!(spans.last().map(|s| s.1), Some(10_000));
    }

    #[test]
    fn merging_keeps_the_latest_zone_counts_and_spot_states() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Spots, snapshot(0), Vec::new(), want());
        for seq in 1..=40u64 {
            let state = if seq == 40 {
                SpotState::Occupied
            } else {
                SpotState::Reserved
            };
            outbox.push_delta(1, delta(seq - 1, seq, vec![spot("s1", state)]));
        }
        let mut last = None;
        while let Taken::Item(item) = outbox.take() {
            last = Some(item);
        }
        let Some(Item::Merged(merged)) = last else {
            panic!("the tail is merged");
        };
        assert_eq!(merged.span().1, Seq(40));
        let json: serde_json::Value = serde_json::from_str(&merged.to_json()).expect("valid JSON");
        assert_eq!(json["spots"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["spots"][0]["state"], "OCCUPIED");
        assert_eq!(json["zones"][0]["occupied"], 40);
    }

    #[test]
    fn gaps_and_layout_changes_ask_for_a_snapshot_and_old_deltas_are_dropped() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Zones, snapshot(10), Vec::new(), want());
        assert_eq!(outbox.push_delta(1, delta(9, 10, vec![])), Pushed::Stale);
        assert_eq!(outbox.push_delta(1, delta(11, 12, vec![])), Pushed::Resync);
        // Lapsed: nothing is queued until the fresh snapshot.
        assert_eq!(outbox.push_delta(1, delta(10, 11, vec![])), Pushed::Lapsed);
        assert!(outbox.resync(1, snapshot(10), Vec::new()));
        let mut relaid = delta(10, 11, vec![]);
        if let Some(d) = Arc::get_mut(&mut relaid) {
            d.relaid = true;
        }
        assert_eq!(outbox.push_delta(1, relaid), Pushed::Resync);
        assert!(outbox.resync(1, snapshot(20), Vec::new()));
        assert_eq!(drain(&mut outbox), vec![(20, 20)]);
    }

    fn spot_delta(seq: u64) -> Arc<Delta> {
        // Every delta changes another spot, so a merge only grows.
        delta(
            seq - 1,
            seq,
            vec![spot(&format!("s{seq}"), SpotState::Occupied)],
        )
    }

    #[test]
    fn a_merge_past_the_bound_is_dropped_for_a_fresh_snapshot_once_the_reader_catches_up() {
        let mut outbox = Outbox::new(50);
        let asks = want();
        outbox.start_snapshot(1, Detail::Spots, snapshot(0), Vec::new(), Arc::clone(&asks));
        let mut outcomes = Vec::new();
        for seq in 1..=200u64 {
            outcomes.push(outbox.push_delta(1, spot_delta(seq)));
            assert!(outbox.merged_entries() <= 50, "bounded at seq {seq}");
        }
        assert!(outcomes.contains(&Pushed::Conflated));
        assert_eq!(
            outcomes.iter().filter(|p| **p == Pushed::Dropped).count(),
            1
        );
        assert_eq!(outcomes.last(), Some(&Pushed::Lapsed));
        assert_eq!((outbox.queued(), outbox.merged_entries()), (0, 0));
        // Nothing is fetched for a client that does not read ...
        assert!(!asked(&asks));
        // ... until the writer reaches the facility again.
        assert!(matches!(outbox.take(), Taken::Nothing));
        assert!(asked(&asks));
        assert!(outbox.resync(1, snapshot(200), Vec::new()));
        assert_eq!(outbox.push_delta(1, spot_delta(201)), Pushed::Queued);
        assert_eq!(drain(&mut outbox), vec![(200, 200), (200, 201)]);
    }

    #[test]
    fn a_client_that_never_reads_holds_at_most_the_merge_bound_whatever_changes() {
        let mut outbox = Outbox::new(DEFAULT_MERGE_MAX);
        outbox.start_snapshot(1, Detail::Spots, snapshot(0), Vec::new(), want());
        let mut peak = 0;
        for seq in 1..=100_000u64 {
            outbox.push_delta(1, spot_delta(seq));
            peak = peak.max(outbox.merged_entries());
            assert!(outbox.queued() <= FACILITY_QUEUE);
        }
        assert!(peak <= DEFAULT_MERGE_MAX, "peak {peak}");
        assert!(
            peak > DEFAULT_MERGE_MAX / 2,
            "the merge did run: peak {peak}"
        );
    }

    #[test]
    fn the_merge_bound_counts_every_facility_of_a_connection() {
        let other = FacilityId::parse("f2").expect("id");
        let mut outbox = Outbox::new(40);
        outbox.start_snapshot(1, Detail::Spots, snapshot(0), Vec::new(), want());
        let mut second = snapshot(0);
        if let Some(s) = Arc::get_mut(&mut second) {
            s.view.id = other.clone();
        }
        outbox.start_snapshot(2, Detail::Spots, second, Vec::new(), want());
        for seq in 1..=30u64 {
            outbox.push_delta(1, spot_delta(seq));
        }
        let held = outbox.merged_entries();
        assert!(held > 0 && held <= 40, "{held}");
        let mut dropped = false;
        for seq in 1..=60u64 {
            let mut d = delta(
                seq - 1,
                seq,
                vec![spot(&format!("t{seq}"), SpotState::Occupied)],
            );
            if let Some(d) = Arc::get_mut(&mut d) {
                d.facility = other.clone();
            }
            dropped |= outbox.push_delta(2, d) == Pushed::Dropped;
        }
        assert!(dropped, "the second facility's merge hit the shared bound");
        assert!(outbox.merged_entries() <= 40);
        assert!(outbox.unsubscribe(&fid()));
        assert_eq!(outbox.merged_entries(), 0);
    }

    #[test]
    fn a_lagging_broadcast_lapses_the_facility_until_the_writer_asks() {
        let mut outbox = Outbox::default();
        let asks = want();
        outbox.start_snapshot(1, Detail::Zones, snapshot(3), Vec::new(), Arc::clone(&asks));
        assert_eq!(drain(&mut outbox), vec![(3, 3)]);
        assert!(!outbox.lapse(2, &fid()), "another generation");
        assert!(outbox.lapse(1, &fid()));
        assert_eq!(outbox.push_delta(1, delta(3, 4, vec![])), Pushed::Lapsed);
        assert!(!asked(&asks));
        assert!(matches!(outbox.take(), Taken::Nothing));
        assert!(asked(&asks));
        assert!(outbox.resync(1, snapshot(9), Vec::new()));
        assert_eq!(drain(&mut outbox), vec![(9, 9)]);
    }

    #[test]
    fn a_replaced_subscription_cannot_touch_the_new_queue() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Zones, snapshot(3), Vec::new(), want());
        outbox.start_snapshot(2, Detail::Spots, snapshot(3), Vec::new(), want());
        assert_eq!(
            outbox.push_delta(1, delta(3, 4, vec![])),
            Pushed::Unsubscribed
        );
        assert!(!outbox.resync(1, snapshot(9), Vec::new()));
        assert_eq!(outbox.push_delta(2, delta(3, 4, vec![])), Pushed::Queued);
        assert!(outbox.unsubscribe(&fid()));
        assert_eq!(
            outbox.push_delta(2, delta(4, 5, vec![])),
            Pushed::Unsubscribed
        );
    }
}
