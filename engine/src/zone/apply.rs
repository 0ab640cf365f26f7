//! `apply`: one event folded into the zone. Total and deterministic:
//! replaying a zone's events from a snapshot rebuilds the same state.
//!
//! This module must never panic, refuse an event or look at the clock: an
//! event is a fact, and volatile state (hearing clocks) is not its
//! business. An event that contradicts the state (a journal confirming a
//! booking that is already live, placing one on a spot another booking
//! holds, a window that ends before it starts) is one `decide` never
//! writes; it can only come from a damaged or foreign journal, and folding
//! it in would break "one booking per spot". [`ZoneState::admits`] names
//! those; `apply` skips them (the seq still advances, so positions in the
//! journal keep their meaning), which makes applying the same confirmation
//! twice idempotent.

use crate::booking::Booking;
use crate::counts::ZoneCounts;
use crate::ids::{BookingId, Millis, SpotId};
use crate::kinds::{BookingStatus, SpotState};
use crate::layout::ZoneLayout;

use super::table::{Shape, SpotSlot};
use super::{Effect, Event, ZoneState};

impl ZoneState {
    /// Folds one event into the state and advances `seq` by one.
    /// Events [`ZoneState::admits`] refuses change nothing but the seq.
    pub fn apply(&mut self, event: &Event) -> Effect {
        self.seq = self.seq.next();
        if !self.admits(event) {
            return Effect::default();
        }
        let effect = match event {
            Event::SpotSensed { spot, occupied } => self.update_slot(spot, |s| {
                s.occupied = *occupied;
                s.stale = false;
            }),
            Event::ServiceChanged {
                spot,
                out_of_service,
            } => self.update_slot(spot, |s| s.out_of_service = *out_of_service),
            Event::SpotStale { spot } => self.update_slot(spot, |s| s.stale = true),
            Event::SpotHeard { spot } => self.update_slot(spot, |s| s.stale = false),
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
            Event::BookingConfirmed(booking) | Event::BookingScheduled(booking) => {
                self.insert(booking)
            }
            Event::BookingActivated { id, at } => self.activate(id, *at),
            Event::BookingPlaced { id, spot, at } => self.place(id, spot.as_ref(), *at),
            Event::BookingCompleted { id, at } => self.finish(id, BookingStatus::Completed, *at),
            Event::BookingExpired { id, at } => self.finish(id, BookingStatus::Expired, *at),
            Event::BookingCancelled { id, at } => self.finish(id, BookingStatus::Cancelled, *at),
            Event::BookingOverstayed { id, at } => self.modify(id, |b| {
                b.overstay = true;
                b.updated_at = *at;
            }),
            Event::BookingExtended { id, ends_at, at } => self.modify(id, |b| {
                b.ends_at = Some(*ends_at);
                // The new end is in the future: the stay is on time again.
                b.overstay = false;
                b.updated_at = *at;
            }),
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

    /// Whether `event` fits the current state, i.e. could have been
    /// decided against it: a confirmation or a schedule of a booking that
    /// is not live yet, with the status its event gives, a non-empty
    /// window, and (for a confirmation) a spot of the zone no other
    /// booking holds, or no spot in a counter zone; a placement of a
    /// waiting reservation on such a spot (unit); an extension that keeps
    /// a reservation's window non-empty. Every other event fits any state.
    pub fn admits(&self, event: &Event) -> bool {
        match event {
            Event::BookingConfirmed(b) => {
                b.status == BookingStatus::Confirmed
                    && !self.live.contains_key(&b.id)
                    && b.window().is_none_or(|(s, e)| s < e)
                    && self.spot_is_free_for_a_hold(b.spot.as_ref())
            }
            Event::BookingScheduled(b) => {
                b.status == BookingStatus::Scheduled
                    && !self.live.contains_key(&b.id)
                    && b.spot.is_none()
                    && b.window().is_some_and(|(s, e)| s < e)
            }
            Event::BookingPlaced { id, spot, .. } => match self.live.get(id) {
                Some(b) if b.status == BookingStatus::Scheduled => {
                    self.spot_is_free_for_a_hold(spot.as_ref())
                }
                // Not waiting: nothing to place, applied as a no-op.
                _ => true,
            },
            Event::BookingExtended { id, ends_at, .. } => self
                .live
                .get(id)
                .and_then(|b| b.starts_at)
                .is_none_or(|starts| starts < *ends_at),
            _ => true,
        }
    }

    /// A spot of this zone that holds no booking (`Some`), or a unit of a
    /// counter zone (`None`).
    fn spot_is_free_for_a_hold(&self, spot: Option<&SpotId>) -> bool {
        match (&self.shape, spot) {
            (Shape::Spots(table), Some(spot)) => table
                .index
                .get(spot)
                .and_then(|&i| table.slots.get(i as usize))
                .is_some_and(|slot| slot.booking.is_none()),
            (Shape::Counter(_), None) => true,
            _ => false,
        }
    }

    /// Mutates one spot and keeps counts and free sets in step.
    fn update_slot(&mut self, spot: &SpotId, change: impl FnOnce(&mut SpotSlot)) -> Effect {
        let effect = Effect {
            spot: Some(spot.clone()),
            ..Effect::default()
        };
        let Shape::Spots(table) = &mut self.shape else {
            return effect;
        };
        let Some(&i) = table.index.get(spot) else {
            return effect;
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
        effect
    }

    fn refresh_counter_counts(&mut self) {
        if let Shape::Counter(counter) = &self.shape {
            let counts = counter.counts();
            self.counts = ZoneCounts::default();
            self.counts.overall = counts;
            self.counts.by_kind[counter.kind.index()] = counts;
        }
    }

    /// Takes (`held`) or gives back the spot (a counter unit, for `None`).
    fn hold(&mut self, spot: Option<&SpotId>, booking: Option<BookingId>) {
        match spot {
            Some(spot) => {
                self.update_slot(spot, |s| s.booking = booking);
            }
            None => {
                if let Shape::Counter(counter) = &mut self.shape {
                    counter.reserved = if booking.is_some() {
                        counter.reserved + 1
                    } else {
                        counter.reserved.saturating_sub(1)
                    };
                }
                self.refresh_counter_counts();
            }
        }
    }

    fn booking_effect(booking: Booking) -> Effect {
        Effect {
            spot: booking.spot.clone(),
            booking: Some(booking),
            relaid: false,
        }
    }

    /// Changes a live booking and refiles it.
    fn modify(&mut self, id: &BookingId, change: impl FnOnce(&mut Booking)) -> Effect {
        let counter = self.is_counter();
        let Some(booking) = self.live.get_mut(id) else {
            return Effect::default();
        };
        let before = booking.clone();
        change(booking);
        let after = booking.clone();
        self.ix.change(Some(&before), Some(&after), counter);
        Self::booking_effect(after)
    }

    /// A new live booking ([`ZoneState::admits`] checked it is not live
    /// yet and that its spot is free).
    fn insert(&mut self, booking: &Booking) -> Effect {
        if self.live.contains_key(&booking.id) {
            return Effect::default();
        }
        self.live.insert(booking.id.clone(), booking.clone());
        self.ix.change(None, Some(booking), self.is_counter());
        if booking.status == BookingStatus::Confirmed {
            self.hold(booking.spot.as_ref(), Some(booking.id.clone()));
        }
        Self::booking_effect(booking.clone())
    }

    fn activate(&mut self, id: &BookingId, at: Millis) -> Effect {
        if self.live.get(id).map(|b| b.status) != Some(BookingStatus::Confirmed) {
            return Effect::default();
        }
        let effect = self.modify(id, |b| {
            b.status = BookingStatus::Active;
            b.updated_at = at;
        });
        if let Some(booking) = &effect.booking
            && booking.spot.is_none()
        {
            // Arrived: the unit is no longer held for it, it is occupied
            // once the gate's count comes in.
            self.hold(None, None);
        }
        effect
    }

    /// A reservation takes its spot (unit): `SCHEDULED → CONFIRMED`.
    fn place(&mut self, id: &BookingId, spot: Option<&SpotId>, at: Millis) -> Effect {
        if self.live.get(id).map(|b| b.status) != Some(BookingStatus::Scheduled) {
            return Effect::default();
        }
        let kind = match (&self.shape, spot) {
            (Shape::Spots(table), Some(spot)) => {
                table.index.get(spot).map(|&i| table.slots[i as usize].kind)
            }
            (Shape::Counter(counter), None) => Some(counter.kind),
            _ => None,
        };
        // `admits` checked the spot (unit) exists and is free.
        let Some(kind) = kind else {
            return Effect::default();
        };
        let effect = self.modify(id, |b| {
            b.status = BookingStatus::Confirmed;
            b.spot = spot.cloned();
            b.kind = Some(kind);
            b.updated_at = at;
        });
        self.hold(spot, Some(id.clone()));
        effect
    }

    fn finish(&mut self, id: &BookingId, status: BookingStatus, at: Millis) -> Effect {
        let Some(mut booking) = self.live.remove(id) else {
            return Effect::default();
        };
        self.ix.change(Some(&booking), None, self.is_counter());
        let held = match &booking.spot {
            Some(_) => booking.status.holds_spot(),
            None => booking.status == BookingStatus::Confirmed,
        };
        booking.status = status;
        booking.updated_at = at;
        if held {
            self.hold(booking.spot.as_ref(), None);
        }
        Self::booking_effect(booking)
    }

    /// Replaces the layout, carrying over the state of spots that remain.
    fn relay(&mut self, layout: ZoneLayout) {
        let old_shape = std::mem::replace(&mut self.shape, Shape::build(&layout));
        match (&mut self.shape, old_shape) {
            (Shape::Spots(new), Shape::Spots(old)) => {
                for slot in &mut new.slots {
                    if let Some(&i) = old.index.get(&slot.id) {
                        let previous = &old.slots[i as usize];
                        slot.occupied = previous.occupied;
                        slot.out_of_service = previous.out_of_service;
                        slot.stale = previous.stale;
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
            (Some(_), None) => b.status == BookingStatus::Scheduled,
            (None, None) => true,
            (None, Some(_)) => false,
        });
        self.rebuild_derived();
        let shape = &self.shape;
        self.volatile
            .liveness
            .restart(shape.spot_count(), |i| shape.is_stale(i));
    }
}
