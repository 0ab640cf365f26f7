//! What an app connection still has to send, bounded whatever the client
//! does.
//!
//! Replies (bookings, errors) wait in a short queue; when it is full the
//! connection stops reading ops. Each subscribed facility has its own
//! queue of at most [`FACILITY_QUEUE`] items: a snapshot, deltas shared
//! with every other subscriber (`Arc<Delta>`, encoded once), and, once the
//! client is that far behind, one *merged* delta at the tail that absorbs
//! every later delta: latest counts per zone, latest state per spot,
//! spanning `prev..seq`. So the memory a facility can take is bounded by
//! its size, not by how long the client has not read.
//!
//! Gap-freedom is checked here: a delta is queued only if its `prev` is
//! the `seq` of the last message queued for its facility; anything else
//! asks the caller for a fresh snapshot.
//!
//! This module must never reorder the messages of one facility.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parkme_actors::{Delta, Snapshot, ZoneView};
use parkme_engine::{FacilityId, Seq, SpotId, SpotView};

use super::protocol::{Detail, delta_json};

/// Items queued per facility before deltas are merged.
pub const FACILITY_QUEUE: usize = 16;
/// Replies queued before the connection stops reading ops.
pub const REPLY_QUEUE: usize = 64;

/// One message to send.
#[derive(Debug)]
pub enum Item {
    Text(String),
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

    pub fn span(&self) -> (Seq, Seq) {
        (self.prev, self.seq)
    }

    pub fn published_at(&self) -> Instant {
        self.published_at
    }

    pub fn to_json(&self) -> String {
        delta_json(
            self.facility.as_str(),
            self.prev.0,
            self.seq.0,
            self.zones.iter(),
            self.with_spots.then(|| self.spots.iter()),
        )
    }
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
}

/// What [`Outbox::push_delta`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Folded into the merged delta at the tail.
    Conflated,
    /// Already covered by what was queued.
    Stale,
    /// Not gap-free or a layout change: needs a fresh snapshot.
    Resync,
    /// The subscription is gone.
    Unsubscribed,
}

#[derive(Debug, Default)]
pub struct Outbox {
    replies: VecDeque<Item>,
    facilities: HashMap<FacilityId, FacilityQueue>,
    /// Facilities with something queued, served round-robin.
    ready: VecDeque<FacilityId>,
    close: Option<(u16, &'static str)>,
}

/// What the writer takes next.
#[derive(Debug)]
pub enum Taken {
    Item(Item),
    Close(u16, &'static str),
    Nothing,
}

impl Outbox {
    pub fn replies_full(&self) -> bool {
        self.replies.len() >= REPLY_QUEUE
    }

    pub fn push_reply(&mut self, text: String) {
        self.replies.push_back(Item::Text(text));
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

    fn mark_ready(&mut self, facility: &FacilityId) {
        if !self.ready.contains(facility) {
            self.ready.push_back(facility.clone());
        }
    }

    /// Starts (or restarts) a facility's queue with a snapshot.
    pub fn start_snapshot(&mut self, generation: u64, detail: Detail, snapshot: Arc<Snapshot>) {
        let facility = snapshot.view.id.clone();
        let last = snapshot.view.seq;
        let mut items = VecDeque::with_capacity(1);
        items.push_back(Item::Snapshot(snapshot, detail));
        self.facilities.insert(
            facility.clone(),
            FacilityQueue {
                generation,
                detail,
                last,
                items,
            },
        );
        self.mark_ready(&facility);
    }

    /// Starts a facility's queue where the client left off (`since`),
    /// then queues the deltas after it.
    pub fn start_resume(
        &mut self,
        generation: u64,
        detail: Detail,
        facility: &FacilityId,
        since: Seq,
        deltas: Vec<Arc<Delta>>,
    ) -> Pushed {
        self.facilities.insert(
            facility.clone(),
            FacilityQueue {
                generation,
                detail,
                last: since,
                items: VecDeque::new(),
            },
        );
        for delta in deltas {
            if self.push_delta(generation, delta) == Pushed::Resync {
                return Pushed::Resync;
            }
        }
        Pushed::Queued
    }

    /// Replaces whatever a facility had queued by a fresh snapshot.
    pub fn resync(&mut self, generation: u64, snapshot: Arc<Snapshot>) -> bool {
        let Some(queue) = self.facilities.get_mut(&snapshot.view.id) else {
            return false;
        };
        if queue.generation != generation {
            return false;
        }
        queue.last = snapshot.view.seq;
        queue.items.clear();
        queue
            .items
            .push_back(Item::Snapshot(snapshot.clone(), queue.detail));
        self.mark_ready(&snapshot.view.id);
        true
    }

    pub fn unsubscribe(&mut self, facility: &FacilityId) -> bool {
        self.ready.retain(|f| f != facility);
        self.facilities.remove(facility).is_some()
    }

    /// Queues a delta for its facility, merging once the queue is full.
    pub fn push_delta(&mut self, generation: u64, delta: Arc<Delta>) -> Pushed {
        let Some(queue) = self.facilities.get_mut(&delta.facility) else {
            return Pushed::Unsubscribed;
        };
        if queue.generation != generation {
            return Pushed::Unsubscribed;
        }
        if delta.relaid {
            return Pushed::Resync;
        }
        if delta.seq <= queue.last {
            return Pushed::Stale;
        }
        if delta.prev != queue.last {
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
            let mut lost = false;
            if let Some(tail) = queue.items.back_mut() {
                let merged = match tail {
                    Item::Merged(merged) => {
                        merged.absorb(&delta);
                        None
                    }
                    Item::Delta(previous, _) => {
                        let mut merged = Merged::from_delta(previous, detail);
                        merged.absorb(&delta);
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
            Pushed::Conflated
        };
        let facility = delta.facility.clone();
        self.mark_ready(&facility);
        pushed
    }

    /// The next thing to send: replies first, then one item per facility
    /// in turn, then the close frame.
    pub fn take(&mut self) -> Taken {
        if let Some(item) = self.replies.pop_front() {
            return Taken::Item(item);
        }
        while let Some(facility) = self.ready.pop_front() {
            let Some(queue) = self.facilities.get_mut(&facility) else {
                continue;
            };
            let Some(item) = queue.items.pop_front() else {
                continue;
            };
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
            encoded: Default::default(),
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
            encoded: Default::default(),
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
                Item::Text(_) | Item::Ping => continue,
            });
        }
        spans
    }

    #[test]
    fn a_reading_client_gets_every_delta_unmerged() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Zones, snapshot(5));
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
        outbox.start_snapshot(1, Detail::Spots, snapshot(0));
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
        outbox.start_snapshot(1, Detail::Spots, snapshot(0));
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
        outbox.start_snapshot(1, Detail::Zones, snapshot(10));
        assert_eq!(outbox.push_delta(1, delta(9, 10, vec![])), Pushed::Stale);
        assert_eq!(outbox.push_delta(1, delta(11, 12, vec![])), Pushed::Resync);
        let mut relaid = delta(10, 11, vec![]);
        if let Some(d) = Arc::get_mut(&mut relaid) {
            d.relaid = true;
        }
        assert_eq!(outbox.push_delta(1, relaid), Pushed::Resync);
        assert!(outbox.resync(1, snapshot(20)));
        assert_eq!(drain(&mut outbox), vec![(20, 20)]);
    }

    #[test]
    fn a_replaced_subscription_cannot_touch_the_new_queue() {
        let mut outbox = Outbox::default();
        outbox.start_snapshot(1, Detail::Zones, snapshot(3));
        outbox.start_snapshot(2, Detail::Spots, snapshot(3));
        assert_eq!(
            outbox.push_delta(1, delta(3, 4, vec![])),
            Pushed::Unsubscribed
        );
        assert!(!outbox.resync(1, snapshot(9)));
        assert_eq!(outbox.push_delta(2, delta(3, 4, vec![])), Pushed::Queued);
        assert!(outbox.unsubscribe(&fid()));
        assert_eq!(
            outbox.push_delta(2, delta(4, 5, vec![])),
            Pushed::Unsubscribed
        );
    }
}
