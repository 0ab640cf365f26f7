//! The zone state machine: the heart of "no double booking".
//!
//! A [`ZoneState`] owns every spot of one zone (or the capacity of a counter
//! zone) and the zone's live bookings. It is driven in two steps:
//! - [`ZoneState::decide`] checks a [`Command`] against the current state and
//!   returns the [`Event`]s it causes, or a refusal; it changes nothing.
//! - [`ZoneState::apply`] folds one event into the state. It is total and
//!   deterministic: replaying a zone's events from a snapshot rebuilds exactly
//!   the same state, which is how recovery works.
//!
//! Because one zone is only ever driven by one owner (an actor's mailbox),
//! "is the spot free?" and "take it" are one step: there are no locks here
//! and no way to hand one spot to two bookings.
//!
//! This module must never read a clock, do I/O, or mutate state in
//! `decide`.
//!
//! Longer than 600 lines on purpose: `decide` and `apply` of every command
//! are one state machine and are reviewed side by side.

use std::collections::{BTreeSet, HashMap};

use bincode::{Decode, Encode};

use crate::booking::{Booking, BookingRequest, MAX_HOLD_SECONDS};
use crate::counts::{Counts, ZoneCounts};
use crate::error::EngineError;
use crate::ids::{BookingId, FacilityId, Millis, Plate, Seq, SpotId, ZoneId};
use crate::kinds::{BookingStatus, PlateDirection, SpotKind, SpotState};
use crate::layout::{SpotLayout, ZoneLayout, ZoneShape};
use crate::reading::Reading;

/// Something a zone is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Book(BookingRequest),
    Cancel {
        booking: BookingId,
        now: Millis,
    },
    /// What a sensor saw, at `now` (a heartbeat changes nothing).
    Sense {
        reading: Reading,
        now: Millis,
    },
    SetService {
        spot: SpotId,
        out_of_service: bool,
    },
    ExpireDue {
        now: Millis,
    },
    Relayout {
        layout: ZoneLayout,
    },
}

/// Something that happened to a zone; the unit of the journal.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Event {
    SpotSensed {
        spot: SpotId,
        occupied: bool,
    },
    ServiceChanged {
        spot: SpotId,
        out_of_service: bool,
    },
    /// `applied` differs from `requested` when the count was clamped to
    /// `[0, capacity]`.
    Counted {
        requested: i32,
        applied: i32,
    },
    BookingConfirmed(Booking),
    BookingActivated {
        id: BookingId,
        at: Millis,
    },
    BookingCompleted {
        id: BookingId,
        at: Millis,
    },
    BookingExpired {
        id: BookingId,
        at: Millis,
    },
    BookingCancelled {
        id: BookingId,
        at: Millis,
    },
    Relaid {
        layout: ZoneLayout,
    },
}

/// What applying one event touched, for the publisher and the booking table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// The booking after the event, when the event concerns a booking.
    pub booking: Option<Booking>,
    /// The spot whose state may have changed.
    pub spot: Option<SpotId>,
    /// The whole zone was rebuilt (layout change).
    pub relaid: bool,
}

/// One spot as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotView {
    pub id: SpotId,
    pub zone: ZoneId,
    pub kind: SpotKind,
    pub state: SpotState,
    pub booking: Option<BookingId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SpotSlot {
    id: SpotId,
    kind: SpotKind,
    occupied: bool,
    out_of_service: bool,
    booking: Option<BookingId>,
}

impl SpotSlot {
    fn state(&self) -> SpotState {
        if self.out_of_service {
            SpotState::OutOfService
        } else if self.occupied {
            SpotState::Occupied
        } else if self.booking.is_some() {
            SpotState::Reserved
        } else {
            SpotState::Available
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SpotTable {
    slots: Vec<SpotSlot>,
    index: HashMap<SpotId, u32>,
    /// Available spots per kind, lowest index first.
    free: [BTreeSet<u32>; 5],
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    capacity: u32,
    kind: SpotKind,
    occupied: u32,
    /// Live `CONFIRMED` bookings, each holding one unit.
    reserved: u32,
}

impl Counter {
    fn counts(&self) -> Counts {
        Counts {
            total: self.capacity,
            available: self
                .capacity
                .saturating_sub(self.occupied)
                .saturating_sub(self.reserved),
            reserved: self.reserved,
            occupied: self.occupied,
            out_of_service: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Spots(SpotTable),
    Counter(Counter),
}

/// A zone's full in-memory state.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneState {
    facility: FacilityId,
    layout: ZoneLayout,
    seq: Seq,
    shape: Shape,
    live: HashMap<BookingId, Booking>,
    /// Deadlines of `CONFIRMED` bookings, earliest first.
    expiry: BTreeSet<(Millis, BookingId)>,
    counts: ZoneCounts,
    clamped: u64,
}

/// The durable image of a zone at one seq.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ZoneSnapshot {
    pub facility: FacilityId,
    pub layout: ZoneLayout,
    pub seq: Seq,
    /// `(occupied, out_of_service)` per spot, in layout order.
    pub spots: Vec<(bool, bool)>,
    pub counter_occupied: u32,
    pub live: Vec<Booking>,
    pub clamped: u64,
}

fn build_shape(layout: &ZoneLayout) -> Shape {
    match &layout.shape {
        ZoneShape::Spots(spots) => Shape::Spots(SpotTable {
            slots: spots
                .iter()
                .map(|s| SpotSlot {
                    id: s.id.clone(),
                    kind: s.kind,
                    occupied: false,
                    out_of_service: false,
                    booking: None,
                })
                .collect(),
            index: HashMap::new(),
            free: Default::default(),
        }),
        ZoneShape::Counter { capacity, kind } => Shape::Counter(Counter {
            capacity: *capacity,
            kind: *kind,
            occupied: 0,
            reserved: 0,
        }),
    }
}

impl ZoneState {
    /// A fresh zone: every spot available, no bookings, seq 0.
    pub fn new(facility: FacilityId, layout: ZoneLayout) -> Self {
        let shape = build_shape(&layout);
        let mut zone = Self {
            facility,
            layout,
            seq: Seq::ZERO,
            shape,
            live: HashMap::new(),
            expiry: BTreeSet::new(),
            counts: ZoneCounts::default(),
            clamped: 0,
        };
        zone.rebuild_derived();
        zone
    }

    /// Rebuilds a zone from its snapshot.
    pub fn restore(snapshot: ZoneSnapshot) -> Self {
        let mut zone = Self::new(snapshot.facility, snapshot.layout);
        zone.seq = snapshot.seq;
        zone.clamped = snapshot.clamped;
        match &mut zone.shape {
            Shape::Spots(table) => {
                for (slot, (occupied, oos)) in table.slots.iter_mut().zip(snapshot.spots) {
                    slot.occupied = occupied;
                    slot.out_of_service = oos;
                }
            }
            Shape::Counter(counter) => counter.occupied = snapshot.counter_occupied,
        }
        zone.live = snapshot
            .live
            .into_iter()
            .map(|b| (b.id.clone(), b))
            .collect();
        zone.rebuild_derived();
        zone
    }

    /// The zone's durable image.
    pub fn snapshot(&self) -> ZoneSnapshot {
        let (spots, counter_occupied) = match &self.shape {
            Shape::Spots(table) => (
                table
                    .slots
                    .iter()
                    .map(|s| (s.occupied, s.out_of_service))
                    .collect(),
                0,
            ),
            Shape::Counter(counter) => (Vec::new(), counter.occupied),
        };
        let mut live: Vec<Booking> = self.live.values().cloned().collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        ZoneSnapshot {
            facility: self.facility.clone(),
            layout: self.layout.clone(),
            seq: self.seq,
            spots,
            counter_occupied,
            live,
            clamped: self.clamped,
        }
    }

    /// Recomputes indexes, free sets, expiry and counts from the primary
    /// state (slots, counter, live bookings).
    fn rebuild_derived(&mut self) {
        self.expiry = self
            .live
            .values()
            .filter(|b| b.status == BookingStatus::Confirmed)
            .map(|b| (b.expires_at, b.id.clone()))
            .collect();
        let mut counts = ZoneCounts::default();
        match &mut self.shape {
            Shape::Spots(table) => {
                table.index = table
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.id.clone(), i as u32))
                    .collect();
                for slot in &mut table.slots {
                    slot.booking = None;
                }
                for booking in self.live.values() {
                    let slot = booking
                        .spot
                        .as_ref()
                        .and_then(|id| table.index.get(id))
                        .and_then(|&i| table.slots.get_mut(i as usize));
                    if let Some(slot) = slot {
                        slot.booking = Some(booking.id.clone());
                    }
                }
                table.free = Default::default();
                for (i, slot) in table.slots.iter().enumerate() {
                    let state = slot.state();
                    counts.insert(slot.kind, state);
                    if state == SpotState::Available {
                        table.free[slot.kind.index()].insert(i as u32);
                    }
                }
            }
            Shape::Counter(counter) => {
                counter.occupied = counter.occupied.min(counter.capacity);
                counter.reserved = self
                    .live
                    .values()
                    .filter(|b| b.status == BookingStatus::Confirmed)
                    .count() as u32;
                counts.overall = counter.counts();
                counts.by_kind[counter.kind.index()] = counter.counts();
            }
        }
        self.counts = counts;
    }

    pub fn facility(&self) -> &FacilityId {
        &self.facility
    }

    pub fn id(&self) -> &ZoneId {
        &self.layout.id
    }

    pub fn layout(&self) -> &ZoneLayout {
        &self.layout
    }

    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn counts(&self) -> &ZoneCounts {
        &self.counts
    }

    /// How many count updates were clamped to `[0, capacity]`.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    pub fn is_counter(&self) -> bool {
        matches!(self.shape, Shape::Counter(_))
    }

    pub fn capacity(&self) -> Option<u32> {
        match &self.shape {
            Shape::Counter(c) => Some(c.capacity),
            Shape::Spots(_) => None,
        }
    }

    pub fn booking(&self, id: &BookingId) -> Option<&Booking> {
        self.live.get(id)
    }

    pub fn live_bookings(&self) -> impl Iterator<Item = &Booking> {
        self.live.values()
    }

    /// The earliest hold deadline, for the owner's single expiry timer.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Whether a booking of `kind` (or any kind) could be placed now.
    pub fn has_room(&self, kind: Option<SpotKind>) -> bool {
        match kind {
            Some(k) => self.counts.by_kind[k.index()].available > 0,
            None => self.counts.overall.available > 0,
        }
    }

    pub fn spot(&self, id: &SpotId) -> Option<SpotView> {
        let Shape::Spots(table) = &self.shape else {
            return None;
        };
        let &i = table.index.get(id)?;
        table.slots.get(i as usize).map(|s| self.view(s))
    }

    pub fn spots(&self) -> Vec<SpotView> {
        match &self.shape {
            Shape::Spots(table) => table.slots.iter().map(|s| self.view(s)).collect(),
            Shape::Counter(_) => Vec::new(),
        }
    }

    fn view(&self, slot: &SpotSlot) -> SpotView {
        SpotView {
            id: slot.id.clone(),
            zone: self.layout.id.clone(),
            kind: slot.kind,
            state: slot.state(),
            booking: slot.booking.clone(),
        }
    }

    /// Checks a command against the state and returns the events it causes.
    /// An empty list means the command changes nothing (it is idempotent).
    pub fn decide(&self, command: &Command) -> Result<Vec<Event>, EngineError> {
        match command {
            Command::Book(request) => self.decide_book(request).map(|e| vec![e]),
            Command::Cancel { booking, now } => {
                let found = self
                    .live
                    .get(booking)
                    .ok_or_else(|| EngineError::UnknownBooking(booking.clone()))?;
                if found.status != BookingStatus::Confirmed {
                    return Err(EngineError::InvalidTransition(found.status));
                }
                Ok(vec![Event::BookingCancelled {
                    id: booking.clone(),
                    at: *now,
                }])
            }
            Command::Sense { reading, now } => match reading {
                Reading::Spot { spot, occupied } => self.decide_sense(spot, *occupied, *now),
                Reading::Count { delta, .. } => self.decide_count(*delta),
                Reading::Plate { plate, direction } => {
                    Ok(self.decide_plate(plate, *direction, *now))
                }
                Reading::Heartbeat { .. } => Ok(Vec::new()),
            },
            Command::SetService {
                spot,
                out_of_service,
            } => self.decide_service(spot, *out_of_service),
            Command::ExpireDue { now } => Ok(self
                .expiry
                .iter()
                .take_while(|(at, _)| at <= now)
                .map(|(_, id)| Event::BookingExpired {
                    id: id.clone(),
                    at: *now,
                })
                .collect()),
            Command::Relayout { layout } => self.decide_relayout(layout),
        }
    }

    fn decide_book(&self, req: &BookingRequest) -> Result<Event, EngineError> {
        if req.hold_seconds == 0 || req.hold_seconds > MAX_HOLD_SECONDS {
            return Err(EngineError::InvalidHold {
                max: MAX_HOLD_SECONDS,
            });
        }
        // A live id confirmed again would replace the first booking in
        // `live` while its spot (or counter unit) stayed held by nobody.
        if let Some(existing) = self.live.get(&req.id) {
            return Err(EngineError::InvalidTransition(existing.status));
        }
        let (spot, kind) = match &self.shape {
            Shape::Spots(table) => {
                let index = match &req.spot {
                    Some(id) => {
                        let &i = table
                            .index
                            .get(id)
                            .ok_or_else(|| EngineError::UnknownSpot(id.clone()))?;
                        let slot = &table.slots[i as usize];
                        let kind_ok = req.kind.is_none_or(|k| k == slot.kind);
                        if slot.state() != SpotState::Available || !kind_ok {
                            return Err(EngineError::SpotNotAvailable(id.clone()));
                        }
                        i
                    }
                    None => {
                        let kinds: &[SpotKind] = match &req.kind {
                            Some(k) => std::slice::from_ref(k),
                            None => &SpotKind::PREFERENCE,
                        };
                        kinds
                            .iter()
                            .find_map(|k| table.free[k.index()].first().copied())
                            .ok_or(EngineError::NoSpotAvailable)?
                    }
                };
                let slot = &table.slots[index as usize];
                (Some(slot.id.clone()), slot.kind)
            }
            Shape::Counter(counter) => {
                if req.spot.is_some() {
                    return Err(EngineError::WrongZoneShape("counter"));
                }
                let kind_ok = req.kind.is_none_or(|k| k == counter.kind);
                if !kind_ok || counter.counts().available == 0 {
                    return Err(EngineError::NoSpotAvailable);
                }
                (None, counter.kind)
            }
        };
        Ok(Event::BookingConfirmed(Booking {
            id: req.id.clone(),
            facility: self.facility.clone(),
            zone: self.layout.id.clone(),
            spot,
            kind,
            plate: req.plate.clone(),
            owner: req.owner.clone(),
            status: BookingStatus::Confirmed,
            created_at: req.now,
            expires_at: req.now.plus_secs(req.hold_seconds),
            updated_at: req.now,
        }))
    }

    fn slot(&self, spot: &SpotId) -> Result<&SpotSlot, EngineError> {
        let Shape::Spots(table) = &self.shape else {
            return Err(EngineError::WrongZoneShape("counter"));
        };
        table
            .index
            .get(spot)
            .and_then(|&i| table.slots.get(i as usize))
            .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))
    }

    fn decide_sense(
        &self,
        spot: &SpotId,
        occupied: bool,
        now: Millis,
    ) -> Result<Vec<Event>, EngineError> {
        let slot = self.slot(spot)?;
        if slot.occupied == occupied {
            return Ok(Vec::new());
        }
        let mut events = vec![Event::SpotSensed {
            spot: spot.clone(),
            occupied,
        }];
        let held = slot.booking.as_ref().and_then(|id| self.live.get(id));
        if let Some(booking) = held {
            let id = booking.id.clone();
            match (occupied, booking.status) {
                (true, BookingStatus::Confirmed) => {
                    events.push(Event::BookingActivated { id, at: now });
                }
                (false, BookingStatus::Active) => {
                    events.push(Event::BookingCompleted { id, at: now });
                }
                _ => {}
            }
        }
        Ok(events)
    }

    fn decide_count(&self, delta: i32) -> Result<Vec<Event>, EngineError> {
        let Shape::Counter(counter) = &self.shape else {
            return Err(EngineError::WrongZoneShape("spot"));
        };
        if delta == 0 {
            return Ok(Vec::new());
        }
        let target =
            (i64::from(counter.occupied) + i64::from(delta)).clamp(0, i64::from(counter.capacity));
        let applied = (target - i64::from(counter.occupied)) as i32;
        Ok(vec![Event::Counted {
            requested: delta,
            applied,
        }])
    }

    fn decide_plate(&self, plate: &Plate, direction: PlateDirection, now: Millis) -> Vec<Event> {
        let wanted = match direction {
            PlateDirection::In => BookingStatus::Confirmed,
            PlateDirection::Out => BookingStatus::Active,
        };
        let found = self
            .live
            .values()
            .filter(|b| &b.plate == plate && b.status == wanted)
            .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let Some(booking) = found else {
            return Vec::new();
        };
        let id = booking.id.clone();
        match direction {
            PlateDirection::In => vec![Event::BookingActivated { id, at: now }],
            PlateDirection::Out => vec![Event::BookingCompleted { id, at: now }],
        }
    }

    fn decide_service(
        &self,
        spot: &SpotId,
        out_of_service: bool,
    ) -> Result<Vec<Event>, EngineError> {
        let slot = self.slot(spot)?;
        if slot.out_of_service == out_of_service {
            return Ok(Vec::new());
        }
        if out_of_service && slot.booking.is_some() {
            return Err(EngineError::SpotHasLiveBooking(spot.clone()));
        }
        Ok(vec![Event::ServiceChanged {
            spot: spot.clone(),
            out_of_service,
        }])
    }

    fn decide_relayout(&self, layout: &ZoneLayout) -> Result<Vec<Event>, EngineError> {
        if layout.id != self.layout.id {
            return Err(EngineError::InvalidLayout("zone id cannot change".into()));
        }
        if *layout == self.layout {
            return Ok(Vec::new());
        }
        match (&self.shape, &layout.shape) {
            (Shape::Spots(_), ZoneShape::Spots(new_spots)) => {
                let kept: HashMap<&SpotId, &SpotLayout> =
                    new_spots.iter().map(|s| (&s.id, s)).collect();
                let dropped = self
                    .live
                    .values()
                    .filter_map(|b| b.spot.as_ref().map(|spot| (&b.id, spot)))
                    .filter(|(_, spot)| !kept.contains_key(spot))
                    .min();
                if let Some((_, spot)) = dropped {
                    return Err(EngineError::SpotHasLiveBooking(spot.clone()));
                }
            }
            (Shape::Counter(_), ZoneShape::Counter { .. }) => {}
            // A zone changing between spots and a counter keeps no
            // booking: it may change only while it holds none.
            _ => self.check_removal()?,
        }
        Ok(vec![Event::Relaid {
            layout: layout.clone(),
        }])
    }

    /// Whether the zone may leave its facility's layout: only while it
    /// holds no live booking. The refusal names a held spot, or the zone
    /// itself when it is a counter zone.
    pub fn check_removal(&self) -> Result<(), EngineError> {
        let mut held: Vec<&Booking> = self.live.values().collect();
        // The same refusal for the same state, whatever the map's order.
        held.sort_by(|a, b| a.id.cmp(&b.id));
        match held.first() {
            None => Ok(()),
            Some(booking) => Err(match &booking.spot {
                Some(spot) => EngineError::SpotHasLiveBooking(spot.clone()),
                None => EngineError::ZoneHasLiveBooking(self.layout.id.clone()),
            }),
        }
    }

    /// Decides and applies a command in one step; returns the applied events
    /// with their effects.
    pub fn execute(&mut self, command: &Command) -> Result<Vec<(Event, Effect)>, EngineError> {
        let events = self.decide(command)?;
        Ok(events
            .into_iter()
            .map(|event| {
                let effect = self.apply(&event);
                (event, effect)
            })
            .collect())
    }

    /// Folds one event into the state and advances `seq` by one.
    pub fn apply(&mut self, event: &Event) -> Effect {
        self.seq = self.seq.next();
        let effect = match event {
            Event::SpotSensed { spot, occupied } => {
                self.update_slot(spot, |s| s.occupied = *occupied);
                Effect {
                    spot: Some(spot.clone()),
                    ..Effect::default()
                }
            }
            Event::ServiceChanged {
                spot,
                out_of_service,
            } => {
                self.update_slot(spot, |s| s.out_of_service = *out_of_service);
                Effect {
                    spot: Some(spot.clone()),
                    ..Effect::default()
                }
            }
            Event::Counted { requested, applied } => {
                if requested != applied {
                    self.clamped += 1;
                }
                if let Shape::Counter(counter) = &mut self.shape {
                    let next = i64::from(counter.occupied) + i64::from(*applied);
                    counter.occupied = next.clamp(0, i64::from(counter.capacity)) as u32;
                }
                self.refresh_counter_counts();
                Effect::default()
            }
            Event::BookingConfirmed(booking) => self.confirm(booking),
            Event::BookingActivated { id, at } => self.activate(id, *at),
            Event::BookingCompleted { id, at } => self.finish(id, BookingStatus::Completed, *at),
            Event::BookingExpired { id, at } => self.finish(id, BookingStatus::Expired, *at),
            Event::BookingCancelled { id, at } => self.finish(id, BookingStatus::Cancelled, *at),
            Event::Relaid { layout } => {
                self.relay(layout.clone());
                Effect {
                    relaid: true,
                    ..Effect::default()
                }
            }
        };
        debug_assert_eq!(self.counts, self.recount(), "incremental counts drifted");
        effect
    }

    /// Mutates one spot and keeps counts and free sets in step.
    fn update_slot(&mut self, spot: &SpotId, change: impl FnOnce(&mut SpotSlot)) {
        let Shape::Spots(table) = &mut self.shape else {
            return;
        };
        let Some(&i) = table.index.get(spot) else {
            return;
        };
        let slot = &mut table.slots[i as usize];
        let before = slot.state();
        change(slot);
        let after = slot.state();
        if before != after {
            self.counts.shift(slot.kind, before, after);
            let free = &mut table.free[slot.kind.index()];
            if before == SpotState::Available {
                free.remove(&i);
            }
            if after == SpotState::Available {
                free.insert(i);
            }
        }
    }

    fn refresh_counter_counts(&mut self) {
        if let Shape::Counter(counter) = &self.shape {
            let counts = counter.counts();
            self.counts = ZoneCounts::default();
            self.counts.overall = counts;
            self.counts.by_kind[counter.kind.index()] = counts;
        }
    }

    fn confirm(&mut self, booking: &Booking) -> Effect {
        debug_assert!(
            !self.live.contains_key(&booking.id),
            "booking {} confirmed while live",
            booking.id
        );
        self.expiry.insert((booking.expires_at, booking.id.clone()));
        self.live.insert(booking.id.clone(), booking.clone());
        match &booking.spot {
            Some(spot) => {
                let id = booking.id.clone();
                self.update_slot(spot, |s| s.booking = Some(id));
            }
            None => {
                if let Shape::Counter(counter) = &mut self.shape {
                    counter.reserved += 1;
                }
                self.refresh_counter_counts();
            }
        }
        Effect {
            booking: Some(booking.clone()),
            spot: booking.spot.clone(),
            relaid: false,
        }
    }

    fn activate(&mut self, id: &BookingId, at: Millis) -> Effect {
        let Some(booking) = self.live.get_mut(id) else {
            return Effect::default();
        };
        if booking.status != BookingStatus::Confirmed {
            return Effect::default();
        }
        booking.status = BookingStatus::Active;
        booking.updated_at = at;
        let booking = booking.clone();
        self.expiry
            .remove(&(booking.expires_at, booking.id.clone()));
        if booking.spot.is_none() {
            if let Shape::Counter(counter) = &mut self.shape {
                counter.reserved = counter.reserved.saturating_sub(1);
            }
            self.refresh_counter_counts();
        }
        Effect {
            spot: booking.spot.clone(),
            booking: Some(booking),
            relaid: false,
        }
    }

    fn finish(&mut self, id: &BookingId, status: BookingStatus, at: Millis) -> Effect {
        let Some(mut booking) = self.live.remove(id) else {
            return Effect::default();
        };
        let was_confirmed = booking.status == BookingStatus::Confirmed;
        booking.status = status;
        booking.updated_at = at;
        self.expiry
            .remove(&(booking.expires_at, booking.id.clone()));
        match &booking.spot {
            Some(spot) => self.update_slot(spot, |s| s.booking = None),
            None => {
                if was_confirmed && let Shape::Counter(counter) = &mut self.shape {
                    counter.reserved = counter.reserved.saturating_sub(1);
                }
                self.refresh_counter_counts();
            }
        }
        Effect {
            spot: booking.spot.clone(),
            booking: Some(booking),
            relaid: false,
        }
    }

    /// Replaces the layout, carrying over the state of spots that remain.
    fn relay(&mut self, layout: ZoneLayout) {
        let old_shape = std::mem::replace(&mut self.shape, build_shape(&layout));
        match (&mut self.shape, old_shape) {
            (Shape::Spots(new), Shape::Spots(old)) => {
                for slot in &mut new.slots {
                    if let Some(&i) = old.index.get(&slot.id) {
                        let previous = &old.slots[i as usize];
                        slot.occupied = previous.occupied;
                        slot.out_of_service = previous.out_of_service;
                    }
                }
            }
            (Shape::Counter(new), Shape::Counter(old)) => new.occupied = old.occupied,
            _ => {}
        }
        self.layout = layout;
        // Bookings whose spot no longer exists cannot be live (decide
        // refuses such layouts); drop any that replay might still carry.
        let spots: Option<std::collections::HashSet<SpotId>> = match &self.shape {
            Shape::Spots(t) => Some(t.slots.iter().map(|s| s.id.clone()).collect()),
            Shape::Counter(_) => None,
        };
        self.live.retain(|_, b| match (&spots, &b.spot) {
            (Some(ids), Some(spot)) => ids.contains(spot),
            (None, None) => true,
            _ => false,
        });
        self.rebuild_derived();
    }

    /// Counts from scratch; used to check the incremental counts.
    pub fn recount(&self) -> ZoneCounts {
        let mut counts = ZoneCounts::default();
        match &self.shape {
            Shape::Spots(table) => {
                for slot in &table.slots {
                    counts.insert(slot.kind, slot.state());
                }
            }
            Shape::Counter(counter) => {
                let reserved = self
                    .live
                    .values()
                    .filter(|b| b.status == BookingStatus::Confirmed)
                    .count() as u32;
                let c = Counter {
                    reserved,
                    ..counter.clone()
                };
                counts.overall = c.counts();
                counts.by_kind[c.kind.index()] = c.counts();
            }
        }
        counts
    }

    /// Replays a journaled event at `seq`; events at or below the current seq
    /// are skipped (they are already in the snapshot).
    pub fn replay(&mut self, seq: Seq, event: &Event) -> Result<(), EngineError> {
        if seq <= self.seq {
            return Ok(());
        }
        if seq != self.seq.next() {
            return Err(EngineError::OutOfOrder {
                have: self.seq.0,
                got: seq.0,
            });
        }
        self.apply(event);
        Ok(())
    }
}
