//! Planning inside one `decide`: what the zone would look like after the
//! events decided so far, as far as "which spots (units) are free?" and
//! "which reservations still wait?" go, without touching the zone.
//!
//! A decide that frees a spot must offer it to the reservations waiting
//! for one before anything else can take it (contract §2.2), and a booking
//! must see the spots those placements took: so each decided event is
//! [`Plan::absorb`]ed into a small overlay (patched spots, counter units,
//! changed bookings) over the zone's state, and [`ZoneState::offer`] places
//! waiting reservations against the overlay. Its cost is proportional to
//! the events of the decide, never to the size of the zone.
//!
//! This module must never mutate the zone.

use std::collections::{BTreeSet, HashMap};

use crate::ids::{BookingId, Millis, SpotId};
use crate::kinds::{BookingStatus, SpotKind, SpotState};

use super::table::{CLASSES, Shape, kinds_of, spot_state};
use super::{Event, ZoneState};

#[derive(Debug, Clone, Copy)]
struct Patch {
    kind: SpotKind,
    occupied: bool,
    out_of_service: bool,
    stale: bool,
    held: bool,
}

impl Patch {
    fn is_free(&self) -> bool {
        spot_state(self.occupied, self.out_of_service, self.stale, self.held)
            == SpotState::Available
    }
}

pub(super) struct Plan<'z> {
    zone: &'z ZoneState,
    pub now: Millis,
    patches: HashMap<u32, Patch>,
    /// Patched spots that are free, per kind.
    freed: [BTreeSet<u32>; 5],
    /// Per kind: every base free spot below it is patched.
    cursor: [u32; 5],
    /// Counter zones: occupied and reserved units after the events.
    occupied: i64,
    reserved: i64,
    status: HashMap<BookingId, BookingStatus>,
    /// Per class: every scheduled reservation up to it no longer waits.
    waited: [Option<&'z (Millis, BookingId)>; CLASSES],
}

impl<'z> Plan<'z> {
    pub fn new(zone: &'z ZoneState, now: Millis) -> Self {
        let (occupied, reserved) = match &zone.shape {
            Shape::Counter(c) => (i64::from(c.occupied), i64::from(c.reserved)),
            Shape::Spots(_) => (0, 0),
        };
        Self {
            zone,
            now,
            patches: HashMap::new(),
            freed: Default::default(),
            cursor: [0; 5],
            occupied,
            reserved,
            status: HashMap::new(),
            waited: [None; CLASSES],
        }
    }

    fn status_of(&self, id: &BookingId) -> Option<BookingStatus> {
        self.status
            .get(id)
            .copied()
            .or_else(|| self.zone.live.get(id).map(|b| b.status))
    }

    /// Records a decided event.
    pub fn absorb(&mut self, event: &Event) {
        match event {
            Event::SpotSensed { spot, occupied } => self.patch(spot, |p| {
                p.occupied = *occupied;
                p.stale = false;
            }),
            Event::ServiceChanged {
                spot,
                out_of_service,
            } => self.patch(spot, |p| p.out_of_service = *out_of_service),
            Event::SpotStale { spot } => self.patch(spot, |p| p.stale = true),
            Event::SpotHeard { spot } => self.patch(spot, |p| p.stale = false),
            Event::Counted { applied, .. } => {
                if let Shape::Counter(c) = &self.zone.shape {
                    self.occupied =
                        (self.occupied + i64::from(*applied)).clamp(0, i64::from(c.capacity));
                }
            }
            Event::BookingConfirmed(booking) => {
                self.status
                    .insert(booking.id.clone(), BookingStatus::Confirmed);
                self.hold(booking.spot.as_ref(), true);
            }
            Event::BookingScheduled(booking) => {
                self.status
                    .insert(booking.id.clone(), BookingStatus::Scheduled);
            }
            Event::BookingPlaced { id, spot, .. } => {
                self.status.insert(id.clone(), BookingStatus::Confirmed);
                self.hold(spot.as_ref(), true);
            }
            Event::BookingActivated { id, .. } => {
                let was = self.status_of(id);
                self.status.insert(id.clone(), BookingStatus::Active);
                let spotless = self.zone.live.get(id).is_some_and(|b| b.spot.is_none());
                if was == Some(BookingStatus::Confirmed) && spotless {
                    self.reserved -= 1;
                }
            }
            Event::BookingCompleted { id, .. }
            | Event::BookingExpired { id, .. }
            | Event::BookingCancelled { id, .. } => {
                let was = self.status_of(id);
                self.status.insert(id.clone(), BookingStatus::Completed);
                let Some(booking) = self.zone.live.get(id) else {
                    return;
                };
                match &booking.spot {
                    Some(spot) => self.patch(spot, |p| p.held = false),
                    None if was == Some(BookingStatus::Confirmed) => self.reserved -= 1,
                    None => {}
                }
            }
            Event::BookingOverstayed { .. }
            | Event::BookingExtended { .. }
            | Event::Relaid { .. } => {}
        }
    }

    fn hold(&mut self, spot: Option<&SpotId>, held: bool) {
        match spot {
            Some(spot) => self.patch(spot, |p| p.held = held),
            None => self.reserved += if held { 1 } else { -1 },
        }
    }

    fn patch(&mut self, spot: &SpotId, change: impl FnOnce(&mut Patch)) {
        let Shape::Spots(table) = &self.zone.shape else {
            return;
        };
        let Some(&i) = table.index.get(spot) else {
            return;
        };
        let patch = self.patches.entry(i).or_insert_with(|| {
            let slot = &table.slots[i as usize];
            Patch {
                kind: slot.kind,
                occupied: slot.occupied,
                out_of_service: slot.out_of_service,
                stale: slot.stale,
                held: slot.booking.is_some(),
            }
        });
        change(patch);
        let free = &mut self.freed[patch.kind.index()];
        if patch.is_free() {
            free.insert(i);
        } else {
            free.remove(&i);
        }
    }

    /// Whether spot `i` is free after the events so far.
    pub fn is_free(&self, i: u32) -> bool {
        match self.patches.get(&i) {
            Some(patch) => patch.is_free(),
            None => match &self.zone.shape {
                Shape::Spots(table) => {
                    table.free[table.slots[i as usize].kind.index()].contains(&i)
                }
                Shape::Counter(_) => false,
            },
        }
    }

    /// Free units of a counter zone after the events so far.
    pub fn free_units(&self) -> i64 {
        match &self.zone.shape {
            Shape::Counter(c) => (i64::from(c.capacity) - self.occupied - self.reserved).max(0),
            Shape::Spots(_) => 0,
        }
    }

    /// The free spot a booking of `class` would get: the first kind (in
    /// the class's order) with a free spot, its lowest index.
    pub fn find_free(&mut self, class: usize) -> Option<u32> {
        let Shape::Spots(table) = &self.zone.shape else {
            return None;
        };
        kinds_of(class).iter().find_map(|kind| {
            let k = kind.index();
            let base = table.free[k]
                .range(self.cursor[k]..)
                .find(|i| !self.patches.contains_key(i))
                .copied();
            if let Some(i) = base {
                self.cursor[k] = i;
            }
            match (base, self.freed[k].first().copied()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        })
    }

    /// Whether a booking of `class` could be given a spot (a unit).
    pub fn has_room(&mut self, class: usize) -> bool {
        match self.zone.shape {
            Shape::Counter(_) => self.free_units() > 0,
            Shape::Spots(_) => self.find_free(class).is_some(),
        }
    }

    /// The first reservation of `class` still waiting (`SCHEDULED` and not
    /// placed in this plan), by `starts_at`.
    pub fn first_waiting(&mut self, class: usize) -> Option<&'z (Millis, BookingId)> {
        let scheduled = &self.zone.ix.scheduled[class];
        let mut rest = match self.waited[class] {
            Some(last) => {
                scheduled.range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
            }
            None => scheduled.range(..),
        };
        loop {
            let next = rest.next()?;
            if self.status_of(&next.1) == Some(BookingStatus::Scheduled) {
                return Some(next);
            }
            self.waited[class] = Some(next);
        }
    }
}

impl ZoneState {
    /// Places the reservations whose lead time has come (by `plan.now`) on
    /// the spots (units) free after the events so far, first `starts_at`
    /// first, for as long as one fits.
    pub(super) fn offer<'z>(&'z self, plan: &mut Plan<'z>, events: &mut Vec<Event>) {
        if self.ix.scheduled_len == 0 {
            return;
        }
        let due_until = Millis(plan.now.0.saturating_add(self.lead_ms()));
        loop {
            let mut best: Option<(usize, &'z (Millis, BookingId))> = None;
            for class in 0..CLASSES {
                let Some(head) = plan.first_waiting(class) else {
                    continue;
                };
                let earlier = best.is_none_or(|(_, b)| head < b);
                if head.0 <= due_until && earlier && plan.has_room(class) {
                    best = Some((class, head));
                }
            }
            let Some((class, (_, id))) = best else {
                break;
            };
            let spot = match &self.shape {
                Shape::Spots(table) => plan
                    .find_free(class)
                    .map(|i| table.slots[i as usize].id.clone()),
                Shape::Counter(_) => None,
            };
            let event = Event::BookingPlaced {
                id: id.clone(),
                spot,
                at: plan.now,
            };
            plan.absorb(&event);
            events.push(event);
        }
    }
}
