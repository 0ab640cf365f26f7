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
//! [`ZoneState::execute`] does both and also keeps the zone's *volatile*
//! state: when each spot was last heard of (a reading or a heartbeat, even
//! one that changes nothing) and which deadlines were last looked at. Drive
//! a live zone through `execute`; `decide` + `apply` alone are for replay and
//! tests.
//!
//! Because one zone is only ever driven by one owner (an actor's mailbox),
//! "is the spot free?" and "take it" are one step: there are no locks here
//! and no way to hand one spot to two bookings.
//!
//! # Driving a zone (the owner's side)
//!
//! 1. Build it: [`ZoneState::new`] (fresh) or [`ZoneState::restore`] (from a
//!    [`ZoneSnapshot`]), then [`ZoneState::apply`] the journal tail.
//! 2. [`ZoneState::start`] with the [`ZoneParams`] (staleness, lead time,
//!    grace) and the current time: every spot's hearing clock starts there,
//!    so a restart never turns spots `UNKNOWN` at once. Until `start`, no
//!    spot ever goes stale.
//! 3. Run every command with [`ZoneState::execute`]; journal the events it
//!    returns, in order, then answer.
//! 4. After every message, arm one timer at [`ZoneState::next_deadline`]
//!    (it may lie in the past: fire at once) and, when it fires, execute
//!    [`Command::Tick`] with the current time. A tick does whatever is due:
//!    sensors gone silent (`SpotStale`), no-shows (`BookingExpired`),
//!    overstays (`BookingOverstayed`), reservations whose lead time came
//!    (`BookingPlaced`). Lead times that passed while the zone was down are
//!    due at once after `start`.
//!
//! # Rules the events follow
//!
//! - Liveness (contract §2.1): a spot not heard of for `stale_secs` goes
//!   stale (`SpotStale`): it shows `UNKNOWN` unless it is `RESERVED` or
//!   `OUT_OF_SERVICE` (which keep their state; once released or back in
//!   service a still-silent spot shows `UNKNOWN`). Its next reading
//!   (`SpotSensed`) gives it the reported state; a heartbeat (`SpotHeard`)
//!   gives it back its last reported state. An `UNKNOWN` spot is never
//!   given to a booking. Counter zones have no liveness.
//! - Reservations (§2.2): `BookingScheduled` holds a share of the zone's
//!   `reservable` quota over `[starts_at, ends_at)`, checked against the
//!   busiest instant of that window (see [`crate::intervals`]). From
//!   `starts_at − lead` a reservation *waits*: it takes the first fitting
//!   free spot (unit) there is (`BookingPlaced`: `CONFIRMED`, the spot
//!   `RESERVED`, `expires_at = starts_at + hold`), in order of `starts_at`;
//!   every decide that frees a spot offers it to waiting reservations in
//!   the same decide, and an immediate booking lets them go first. A
//!   reservation still waiting at its no-show deadline (`expires_at`)
//!   expires like any no-show (`EXPIRED`, `spot: null`): the spot it was
//!   promised never came free, and holding its claim longer would only
//!   block drivers who are there. Cancelling a `SCHEDULED` reservation
//!   frees its quota at once.
//! - Stays (§2.3): an `ACTIVE` booking still active `grace_secs` after its
//!   `ends_at` overstays (`BookingOverstayed`, once per stay: the event is
//!   what `parkme_overstays_total` counts); its spot view carries
//!   `overstay: true`. `BookingExtended` moves `ends_at` (of a `SCHEDULED`,
//!   `CONFIRMED` or `ACTIVE` booking) to a later or earlier time in the
//!   future, re-checking the quota for a reservation; it clears
//!   `overstay`, so a stay that runs out again overstays (and counts)
//!   again.
//!
//! This module must never read a clock, do I/O, or mutate state in
//! `decide`.
//!
//! Over 600 lines on purpose: these are the zone's types and its owner's
//! whole API (build, start, execute, deadlines, views); `decide` and
//! `apply` live in their own submodules.

use std::collections::HashMap;

use bincode::{Decode, Encode};

use crate::booking::{Booking, BookingRequest};
use crate::counts::ZoneCounts;
use crate::error::EngineError;
use crate::ids::{BookingId, FacilityId, Millis, Seq, SpotId, ZoneId};
use crate::kinds::{BookingStatus, SpotKind};
use crate::layout::ZoneLayout;
use crate::liveness::Liveness;
use crate::reading::Reading;

mod apply;
mod decide;
mod indexes;
mod plan;
mod table;

use indexes::Indexes;
use table::{CLASSES, Counter, Shape, SpotSlot, kinds_of};

/// Default of `PARKME_SENSOR_STALE_SECS`.
pub const DEFAULT_STALE_SECS: u32 = 3600;
/// Default of `PARKME_RESERVATION_LEAD_SECS`.
pub const DEFAULT_LEAD_SECS: u32 = 900;
/// Default of `PARKME_GRACE_SECS`.
pub const DEFAULT_GRACE_SECS: u32 = 600;

/// A zone's configuration: set by its owner at [`ZoneState::start`], never
/// stored (the events it leads to are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneParams {
    /// A spot not heard of for this long goes stale; 0 turns liveness off.
    pub stale_secs: u32,
    /// How long before `starts_at` a reservation takes its spot.
    pub lead_secs: u32,
    /// How long after `ends_at` an `ACTIVE` booking overstays.
    pub grace_secs: u32,
}

impl Default for ZoneParams {
    fn default() -> Self {
        Self {
            stale_secs: DEFAULT_STALE_SECS,
            lead_secs: DEFAULT_LEAD_SECS,
            grace_secs: DEFAULT_GRACE_SECS,
        }
    }
}

/// Something a zone is asked to do. Every command carries the time it
/// happens at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An immediate booking, or an advance reservation (`starts_at` set).
    Book(BookingRequest),
    /// Cancels a `CONFIRMED` or `SCHEDULED` booking.
    Cancel {
        booking: BookingId,
        now: Millis,
    },
    /// Moves the `ends_at` of a live booking (`PATCH /v1/bookings/{id}`).
    Extend {
        booking: BookingId,
        ends_at: Millis,
        now: Millis,
    },
    /// What a sensor saw, at `now`. A facility-wide heartbeat changes
    /// nothing here; one naming a spot is [`Command::Heartbeat`].
    Sense {
        reading: Reading,
        now: Millis,
    },
    /// A heartbeat naming a spot of this zone: its sensor is alive.
    Heartbeat {
        spot: SpotId,
        now: Millis,
    },
    SetService {
        spot: SpotId,
        out_of_service: bool,
        now: Millis,
    },
    /// Does whatever is due by `now` (see [`ZoneState::next_deadline`]).
    Tick {
        now: Millis,
    },
    Relayout {
        layout: ZoneLayout,
        now: Millis,
    },
}

impl Command {
    /// The time the command happens at.
    pub fn now(&self) -> Millis {
        match self {
            Command::Book(request) => request.now,
            Command::Cancel { now, .. }
            | Command::Extend { now, .. }
            | Command::Sense { now, .. }
            | Command::Heartbeat { now, .. }
            | Command::SetService { now, .. }
            | Command::Tick { now }
            | Command::Relayout { now, .. } => *now,
        }
    }
}

/// Something that happened to a zone; the unit of the journal. Variants
/// are append-only (their position is their stored tag).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Event {
    /// A reading; also makes a stale spot live again.
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
    /// An immediate booking holds its spot (unit).
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
    /// The spot's sensor was not heard of for the staleness period.
    SpotStale {
        spot: SpotId,
    },
    /// A heartbeat made a stale spot live again, in its last reported state.
    SpotHeard {
        spot: SpotId,
    },
    /// An advance reservation was accepted (`SCHEDULED`, no spot).
    BookingScheduled(Booking),
    /// A reservation took its spot (`spot: None`: a unit of a counter zone).
    BookingPlaced {
        id: BookingId,
        spot: Option<SpotId>,
        at: Millis,
    },
    /// Still `ACTIVE` the grace period after `ends_at`; once per stay.
    BookingOverstayed {
        id: BookingId,
        at: Millis,
    },
    BookingExtended {
        id: BookingId,
        ends_at: Millis,
        at: Millis,
    },
}

/// What applying one event touched, for the publisher and the booking table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    /// The booking after the event, when the event concerns a booking.
    pub booking: Option<Booking>,
    /// The spot whose view may have changed.
    pub spot: Option<SpotId>,
    /// The whole zone was rebuilt (layout change).
    pub relaid: bool,
}

/// One spot as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SpotView {
    pub id: SpotId,
    pub zone: ZoneId,
    pub kind: SpotKind,
    pub state: crate::kinds::SpotState,
    pub booking: Option<BookingId>,
    /// The booking holding the spot overstays (contract §2.3).
    pub overstay: bool,
}

/// One spot's durable flags in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct SpotImage {
    pub occupied: bool,
    pub out_of_service: bool,
    pub stale: bool,
}

/// The durable image of a zone at one seq.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ZoneSnapshot {
    pub facility: FacilityId,
    pub layout: ZoneLayout,
    pub seq: Seq,
    /// Per spot, in layout order.
    pub spots: Vec<SpotImage>,
    pub counter_occupied: u32,
    /// Every live booking (`SCHEDULED`, `CONFIRMED`, `ACTIVE`), by id.
    pub live: Vec<Booking>,
    pub clamped: u64,
}

/// What a zone keeps that is not part of its identity: its parameters and
/// clocks. Two zones with the same durable state are equal whatever these
/// hold, so replay and restore compare equal to the live zone.
#[derive(Debug, Clone)]
struct Volatile {
    params: ZoneParams,
    liveness: Liveness,
    /// The last tick: reservations due by then were offered a spot.
    ticked: Millis,
}

impl Default for Volatile {
    fn default() -> Self {
        Self {
            params: ZoneParams::default(),
            liveness: Liveness::default(),
            ticked: Millis(i64::MIN),
        }
    }
}

impl PartialEq for Volatile {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A zone's full in-memory state.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneState {
    facility: FacilityId,
    layout: ZoneLayout,
    seq: Seq,
    shape: Shape,
    live: HashMap<BookingId, Booking>,
    ix: Indexes,
    counts: ZoneCounts,
    clamped: u64,
    volatile: Volatile,
}

impl ZoneState {
    /// A fresh zone: every spot available, no bookings, seq 0.
    pub fn new(facility: FacilityId, layout: ZoneLayout) -> Self {
        let shape = Shape::build(&layout);
        let mut zone = Self {
            facility,
            layout,
            seq: Seq::ZERO,
            shape,
            live: HashMap::new(),
            ix: Indexes::default(),
            counts: ZoneCounts::default(),
            clamped: 0,
            volatile: Volatile::default(),
        };
        zone.rebuild_derived();
        zone
    }

    /// Rebuilds a zone from its snapshot. Total like `apply`: a snapshot
    /// the engine would not have written (a damaged or foreign one) never
    /// yields two live bookings on one spot, a booking on a spot the
    /// layout lacks, a scheduled booking holding a spot or a window that
    /// ends before it starts; such bookings are left out, oldest kept.
    pub fn restore(snapshot: ZoneSnapshot) -> Self {
        let mut zone = Self::new(snapshot.facility, snapshot.layout);
        zone.seq = snapshot.seq;
        zone.clamped = snapshot.clamped;
        match &mut zone.shape {
            Shape::Spots(table) => {
                for (slot, image) in table.slots.iter_mut().zip(snapshot.spots) {
                    slot.occupied = image.occupied;
                    slot.out_of_service = image.out_of_service;
                    slot.stale = image.stale;
                }
            }
            Shape::Counter(counter) => counter.occupied = snapshot.counter_occupied,
        }
        let spots: Option<std::collections::HashSet<&SpotId>> = match &zone.layout.shape {
            crate::layout::ZoneShape::Spots(spots) => Some(spots.iter().map(|s| &s.id).collect()),
            crate::layout::ZoneShape::Counter { .. } => None,
        };
        let mut held: std::collections::HashSet<SpotId> = std::collections::HashSet::new();
        let mut live = snapshot.live;
        live.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut kept = HashMap::with_capacity(live.len());
        for booking in live {
            let fits = match (&spots, booking.status, &booking.spot) {
                (_, BookingStatus::Scheduled, spot) => spot.is_none() && booking.window().is_some(),
                (Some(spots), _, Some(spot)) => spots.contains(spot) && !held.contains(spot),
                (None, _, None) => true,
                _ => false,
            };
            let admissible = booking.status.is_live()
                && fits
                && booking.window().is_none_or(|(s, e)| s < e)
                && !kept.contains_key(&booking.id);
            if admissible {
                if let Some(spot) = &booking.spot {
                    held.insert(spot.clone());
                }
                kept.insert(booking.id.clone(), booking);
            }
        }
        zone.live = kept;
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
                    .map(|s| SpotImage {
                        occupied: s.occupied,
                        out_of_service: s.out_of_service,
                        stale: s.stale,
                    })
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

    /// Starts serving: sets the parameters, starts every spot's hearing
    /// clock at `now` and forgets which deadlines were looked at (so lead
    /// times that passed while the zone was down are due at once). Call it
    /// after recovery, and again whenever the parameters change.
    pub fn start(&mut self, params: ZoneParams, now: Millis) {
        self.volatile.params = params;
        self.volatile.ticked = Millis(i64::MIN);
        let shape = &self.shape;
        self.volatile.liveness.start(
            params.stale_secs,
            shape.spot_count(),
            |i| shape.is_stale(i),
            now,
        );
    }

    pub fn params(&self) -> ZoneParams {
        self.volatile.params
    }

    fn lead_ms(&self) -> i64 {
        i64::from(self.volatile.params.lead_secs) * 1000
    }

    fn grace_ms(&self) -> i64 {
        i64::from(self.volatile.params.grace_secs) * 1000
    }

    /// Recomputes indexes, free sets, counter units and counts from the
    /// primary state (slots, counter, live bookings).
    fn rebuild_derived(&mut self) {
        let counter = self.is_counter();
        self.ix = Indexes::default();
        for booking in self.live.values() {
            self.ix.change(None, Some(booking), counter);
        }
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
                for booking in self.live.values().filter(|b| b.status.holds_spot()) {
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
                    if state == crate::kinds::SpotState::Available {
                        table.free[slot.kind.index()].insert(i as u32);
                    }
                }
            }
            Shape::Counter(counter) => {
                counter.occupied = counter.occupied.min(counter.capacity);
                counter.reserved = confirmed_units(&self.live);
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

    /// The zone's quota of advance reservations at any one instant.
    pub fn reservable(&self) -> u32 {
        self.layout.reservable
    }

    /// Whether the zone has spots of `kind` (any spot, for `None`): a
    /// reservation naming a kind needs a zone that has it.
    pub fn has_kind(&self, kind: Option<SpotKind>) -> bool {
        match (&self.shape, kind) {
            (Shape::Counter(c), Some(k)) => c.kind == k,
            (Shape::Counter(c), None) => c.capacity > 0,
            (Shape::Spots(_), Some(k)) => self.counts.by_kind[k.index()].total > 0,
            (Shape::Spots(_), None) => self.counts.overall.total > 0,
        }
    }

    /// The most live reservations covering one instant of `[starts_at,
    /// ends_at)`: a new reservation of that window fits while this is below
    /// [`ZoneState::reservable`].
    pub fn reserved_between(&self, starts_at: Millis, ends_at: Millis) -> u32 {
        self.ix.windows.busiest(starts_at, ends_at)
    }

    pub fn booking(&self, id: &BookingId) -> Option<&Booking> {
        self.live.get(id)
    }

    /// Every live booking: `SCHEDULED`, `CONFIRMED` and `ACTIVE`.
    pub fn live_bookings(&self) -> impl Iterator<Item = &Booking> {
        self.live.values()
    }

    /// When the zone next has something to do: the earliest of no-show
    /// deadlines, lead times not yet looked at, overstay deadlines and the
    /// liveness wheel's next slot. It may lie in the past (a restart, a
    /// new layout with room for waiting reservations): tick at once.
    pub fn next_deadline(&self) -> Option<Millis> {
        let ticked = self.volatile.ticked;
        let lead = self.lead_ms();
        let grace = self.grace_ms();
        let mut next = [
            self.ix.expiry.first().map(|(at, _)| *at),
            // The first start whose lead time comes after the last tick.
            self.ix
                .starts
                .range((
                    std::ops::Bound::Excluded(Millis(ticked.0.saturating_add(lead))),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .map(|(starts, _)| Millis(starts.0.saturating_sub(lead))),
            self.ix
                .stays
                .first()
                .map(|(ends, _)| Millis(ends.0.saturating_add(grace))),
            self.volatile.liveness.next_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.waiting_could_be_placed() {
            next = Some(next.map_or(ticked, |at| at.min(ticked)));
        }
        next
    }

    /// Whether a reservation that was waiting at the last tick fits a spot
    /// (unit) that is free now: only after a layout change, since every
    /// other decide offers what it frees.
    fn waiting_could_be_placed(&self) -> bool {
        let due_until = Millis(self.volatile.ticked.0.saturating_add(self.lead_ms()));
        (0..CLASSES).any(|class| {
            let waiting = self.ix.scheduled[class]
                .first()
                .is_some_and(|(starts, _)| *starts <= due_until);
            waiting
                && match &self.shape {
                    Shape::Counter(_) => self.counts.overall.available > 0,
                    Shape::Spots(_) => kinds_of(class)
                        .iter()
                        .any(|k| self.counts.by_kind[k.index()].available > 0),
                }
        })
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
        let overstay = slot
            .booking
            .as_ref()
            .and_then(|id| self.live.get(id))
            .is_some_and(|b| b.overstay);
        SpotView {
            id: slot.id.clone(),
            zone: self.layout.id.clone(),
            kind: slot.kind,
            state: slot.state(),
            booking: slot.booking.clone(),
            overstay,
        }
    }

    /// Whether the zone may leave its facility's layout: only while it
    /// holds no live booking. The refusal names a held spot, or the zone
    /// itself when the booking holds none (a counter zone, a reservation
    /// not placed yet).
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

    /// Decides and applies a command in one step, and keeps the volatile
    /// state (hearing clocks, the last tick); returns the applied events
    /// with their effects.
    pub fn execute(&mut self, command: &Command) -> Result<Vec<(Event, Effect)>, EngineError> {
        let now = command.now();
        self.volatile.liveness.observe(now);
        // A reading or a heartbeat is looked up once: decided, applied and
        // heard of by index.
        let heard = match command {
            Command::Sense {
                reading: Reading::Spot { spot, occupied },
                ..
            } => {
                let i = self.spot_index(spot)?;
                Some((i, self.decide_sense_at(i, *occupied, now)))
            }
            Command::Heartbeat { spot, .. } => {
                let i = self.spot_index(spot)?;
                Some((i, self.decide_heartbeat_at(i, now)))
            }
            _ => None,
        };
        let events = match heard {
            Some((i, events)) => {
                self.volatile.liveness.hear(i, now);
                events
            }
            None => self.decide(command)?,
        };
        let applied = events
            .into_iter()
            .map(|event| {
                let effect = self.apply(&event);
                (event, effect)
            })
            .collect();
        if let Command::Tick { now } = command {
            self.volatile.ticked = self.volatile.ticked.max(*now);
            let shape = &self.shape;
            self.volatile.liveness.refile(*now, |i| shape.is_stale(i));
        }
        Ok(applied)
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
                let c = Counter {
                    reserved: confirmed_units(&self.live),
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

/// Units of a counter zone held by `CONFIRMED` bookings.
fn confirmed_units(live: &HashMap<BookingId, Booking>) -> u32 {
    live.values()
        .filter(|b| b.status == BookingStatus::Confirmed)
        .count() as u32
}
