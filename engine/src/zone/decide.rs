//! `decide`: a command checked against the zone, answered with the events
//! it causes or a refusal. Every decide that could free a spot (a unit)
//! ends by offering it to the reservations whose lead time has come, and
//! an immediate booking lets them go first: see [`super::plan`].
//!
//! This module must never mutate the zone.

use std::collections::HashMap;

use crate::booking::{Booking, BookingRequest, MAX_HOLD_SECONDS, check_new_end, check_window};
use crate::error::EngineError;
use crate::ids::{BookingId, Millis, Plate, SpotId};
use crate::kinds::{BookingStatus, PlateDirection, SpotKind};
use crate::layout::{SpotLayout, ZoneLayout, ZoneShape};

use super::plan::Plan;
use super::table::{Shape, SpotSlot, class_of};
use super::{Command, Event, ZoneState};

impl ZoneState {
    /// Checks a command against the state and returns the events it causes.
    /// An empty list means the command changes nothing (it is idempotent).
    pub fn decide(&self, command: &Command) -> Result<Vec<Event>, EngineError> {
        match command {
            Command::Book(request) => self.decide_book(request),
            Command::Cancel { booking, now } => self.decide_cancel(booking, *now),
            Command::Extend {
                booking,
                ends_at,
                now,
            } => self.decide_extend(booking, *ends_at, *now),
            Command::Sense {
                spot,
                occupied,
                now,
            } => Ok(self.decide_sense_at(self.spot_index(spot)?, *occupied, *now)),
            Command::Heartbeat { spot, now } => {
                Ok(self.decide_heartbeat_at(self.spot_index(spot)?, *now))
            }
            Command::Count { delta, now } => self.decide_count(*delta, *now),
            Command::Plate {
                plate,
                direction,
                now,
            } => Ok(self.decide_plate(plate, *direction, *now)),
            Command::SetService {
                spot,
                out_of_service,
                now,
            } => self.decide_service(spot, *out_of_service, *now),
            Command::Tick { now } => Ok(self.decide_tick(*now)),
            Command::Relayout { layout, .. } => self.decide_relayout(layout),
        }
    }

    /// Runs the events decided so far through a plan and offers what they
    /// free to waiting reservations.
    fn then_offer(&self, mut events: Vec<Event>, now: Millis) -> Vec<Event> {
        if self.ix.scheduled_len == 0 {
            return events;
        }
        let mut plan = Plan::new(self, now);
        for event in &events {
            plan.absorb(event);
        }
        let mut placed = Vec::new();
        self.offer(&mut plan, &mut placed);
        events.extend(placed);
        events
    }

    /// The index of a spot of this zone.
    pub(super) fn spot_index(&self, spot: &SpotId) -> Result<usize, EngineError> {
        let Shape::Spots(table) = &self.shape else {
            return Err(EngineError::WrongZoneShape("counter"));
        };
        table
            .index
            .get(spot)
            .map(|&i| i as usize)
            .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))
    }

    fn slot_at(&self, i: usize) -> Option<&SpotSlot> {
        match &self.shape {
            Shape::Spots(table) => table.slots.get(i),
            Shape::Counter(_) => None,
        }
    }

    fn decide_book(&self, req: &BookingRequest) -> Result<Vec<Event>, EngineError> {
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
        if req.is_reservation() {
            return self.decide_reserve(req).map(|e| vec![e]);
        }
        check_window(None, req.ends_at, req.now)?;
        // Reservations whose lead time has come go first.
        let mut plan = Plan::new(self, req.now);
        let mut events = Vec::new();
        self.offer(&mut plan, &mut events);
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
                        if !plan.is_free(i) || !kind_ok {
                            return Err(EngineError::SpotNotAvailable(id.clone()));
                        }
                        i
                    }
                    None => plan
                        .find_free(class_of(req.kind, false))
                        .ok_or(EngineError::NoSpotAvailable)?,
                };
                let slot = &table.slots[index as usize];
                (Some(slot.id.clone()), slot.kind)
            }
            Shape::Counter(counter) => {
                if req.spot.is_some() {
                    return Err(EngineError::WrongZoneShape("counter"));
                }
                let kind_ok = req.kind.is_none_or(|k| k == counter.kind);
                if !kind_ok || plan.free_units() == 0 {
                    return Err(EngineError::NoSpotAvailable);
                }
                (None, counter.kind)
            }
        };
        events.push(Event::BookingConfirmed(Booking {
            id: req.id.clone(),
            facility: self.facility.clone(),
            zone: self.layout.id.clone(),
            spot,
            kind: Some(kind),
            plate: req.plate.clone(),
            owner: req.owner.clone(),
            status: BookingStatus::Confirmed,
            created_at: req.now,
            expires_at: req.now.plus_secs(req.hold_seconds),
            updated_at: req.now,
            starts_at: None,
            ends_at: req.ends_at,
            overstay: false,
        }));
        Ok(events)
    }

    /// An advance reservation: checked against the window rules, the
    /// zone's kinds and its quota at every instant of the window.
    fn decide_reserve(&self, req: &BookingRequest) -> Result<Event, EngineError> {
        if req.spot.is_some() {
            return Err(EngineError::ReservationNamesSpot);
        }
        check_window(req.starts_at, req.ends_at, req.now)?;
        let (Some(starts_at), Some(ends_at)) = (req.starts_at, req.ends_at) else {
            return Err(EngineError::NoCapacity);
        };
        let kind = match &self.shape {
            Shape::Spots(_) => {
                if req
                    .kind
                    .is_some_and(|k| self.counts.by_kind[k.index()].total == 0)
                {
                    return Err(EngineError::NoCapacity);
                }
                req.kind
            }
            Shape::Counter(counter) => {
                if req.kind.is_some_and(|k| k != counter.kind) {
                    return Err(EngineError::NoCapacity);
                }
                Some(counter.kind)
            }
        };
        if self.ix.windows.busiest(starts_at, ends_at) >= self.layout.reservable {
            return Err(EngineError::NoCapacity);
        }
        Ok(Event::BookingScheduled(Booking {
            id: req.id.clone(),
            facility: self.facility.clone(),
            zone: self.layout.id.clone(),
            spot: None,
            kind,
            plate: req.plate.clone(),
            owner: req.owner.clone(),
            status: BookingStatus::Scheduled,
            created_at: req.now,
            expires_at: starts_at.plus_secs(req.hold_seconds),
            updated_at: req.now,
            starts_at: Some(starts_at),
            ends_at: Some(ends_at),
            overstay: false,
        }))
    }

    fn decide_cancel(&self, id: &BookingId, now: Millis) -> Result<Vec<Event>, EngineError> {
        let found = self
            .live
            .get(id)
            .ok_or_else(|| EngineError::UnknownBooking(id.clone()))?;
        if !matches!(
            found.status,
            BookingStatus::Confirmed | BookingStatus::Scheduled
        ) {
            return Err(EngineError::InvalidTransition(found.status));
        }
        let events = vec![Event::BookingCancelled {
            id: id.clone(),
            at: now,
        }];
        Ok(self.then_offer(events, now))
    }

    fn decide_extend(
        &self,
        id: &BookingId,
        ends_at: Millis,
        now: Millis,
    ) -> Result<Vec<Event>, EngineError> {
        let found = self
            .live
            .get(id)
            .ok_or_else(|| EngineError::UnknownBooking(id.clone()))?;
        check_new_end(found, ends_at, now)?;
        if found.ends_at == Some(ends_at) {
            return Ok(Vec::new());
        }
        // Its own window already covers everything up to the old end.
        if let Some((_, old_end)) = found.window()
            && ends_at > old_end
            && self.ix.windows.busiest(old_end, ends_at) >= self.layout.reservable
        {
            return Err(EngineError::NoCapacity);
        }
        Ok(vec![Event::BookingExtended {
            id: id.clone(),
            ends_at,
            at: now,
        }])
    }

    pub(super) fn decide_sense_at(&self, i: usize, occupied: bool, now: Millis) -> Vec<Event> {
        let Some(slot) = self.slot_at(i) else {
            return Vec::new();
        };
        if slot.occupied == occupied && !slot.stale {
            return Vec::new();
        }
        let mut events = vec![Event::SpotSensed {
            spot: slot.id.clone(),
            occupied,
        }];
        let held = slot.booking.as_ref().and_then(|id| self.live.get(id));
        if let Some(booking) = held
            && slot.occupied != occupied
        {
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
        if occupied {
            // Nothing was freed.
            return events;
        }
        self.then_offer(events, now)
    }

    pub(super) fn decide_heartbeat_at(&self, i: usize, now: Millis) -> Vec<Event> {
        match self.slot_at(i) {
            Some(slot) if slot.stale => self.then_offer(
                vec![Event::SpotHeard {
                    spot: slot.id.clone(),
                }],
                now,
            ),
            _ => Vec::new(),
        }
    }

    fn decide_count(&self, delta: i32, now: Millis) -> Result<Vec<Event>, EngineError> {
        let Shape::Counter(counter) = &self.shape else {
            return Err(EngineError::WrongZoneShape("spot"));
        };
        if delta == 0 {
            return Ok(Vec::new());
        }
        let target =
            (i64::from(counter.occupied) + i64::from(delta)).clamp(0, i64::from(counter.capacity));
        let applied = (target - i64::from(counter.occupied)) as i32;
        let events = vec![Event::Counted {
            requested: delta,
            applied,
        }];
        Ok(if applied < 0 {
            self.then_offer(events, now)
        } else {
            events
        })
    }

    fn decide_plate(&self, plate: &Plate, direction: PlateDirection, now: Millis) -> Vec<Event> {
        let active = direction == PlateDirection::Out;
        let Some(id) = self.ix.oldest_with_plate(plate, active) else {
            return Vec::new();
        };
        let id = id.clone();
        let events = match direction {
            PlateDirection::In => vec![Event::BookingActivated { id, at: now }],
            PlateDirection::Out => vec![Event::BookingCompleted { id, at: now }],
        };
        self.then_offer(events, now)
    }

    fn decide_service(
        &self,
        spot: &SpotId,
        out_of_service: bool,
        now: Millis,
    ) -> Result<Vec<Event>, EngineError> {
        let slot = self
            .slot_at(self.spot_index(spot)?)
            .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))?;
        if slot.out_of_service == out_of_service {
            return Ok(Vec::new());
        }
        if out_of_service && slot.booking.is_some() {
            return Err(EngineError::SpotHasLiveBooking(spot.clone()));
        }
        let events = vec![Event::ServiceChanged {
            spot: spot.clone(),
            out_of_service,
        }];
        Ok(if out_of_service {
            events
        } else {
            self.then_offer(events, now)
        })
    }

    /// Everything due by `now`, in order: sensors gone silent, no-shows,
    /// overstays, then reservations placed (on what the no-shows freed
    /// too). Never refused.
    fn decide_tick(&self, now: Millis) -> Vec<Event> {
        let mut plan = Plan::new(self, now);
        let mut events = Vec::new();
        if let Shape::Spots(table) = &self.shape {
            for i in self.volatile.liveness.silent(now) {
                let Some(slot) = table.slots.get(i as usize) else {
                    continue;
                };
                if !slot.stale {
                    events.push(Event::SpotStale {
                        spot: slot.id.clone(),
                    });
                }
            }
        }
        events.extend(
            self.ix
                .expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|(_, id)| Event::BookingExpired {
                    id: id.clone(),
                    at: now,
                }),
        );
        let grace = self.grace_ms();
        events.extend(
            self.ix
                .stays
                .iter()
                .take_while(|(ends, _)| ends.0.saturating_add(grace) <= now.0)
                .map(|(_, id)| Event::BookingOverstayed {
                    id: id.clone(),
                    at: now,
                }),
        );
        for event in &events {
            plan.absorb(event);
        }
        let mut placed = Vec::new();
        self.offer(&mut plan, &mut placed);
        events.extend(placed);
        events
    }

    fn decide_relayout(&self, layout: &ZoneLayout) -> Result<Vec<Event>, EngineError> {
        if layout.id != self.layout.id {
            return Err(EngineError::InvalidLayout("zone id cannot change".into()));
        }
        if *layout == self.layout {
            return Ok(Vec::new());
        }
        layout.check_reservable()?;
        let held = self.ix.windows.busiest_ever();
        if layout.reservable < held {
            return Err(EngineError::ReservationsOverQuota {
                zone: layout.id.clone(),
                held,
                quota: layout.reservable,
            });
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

    /// Whether a booking of `kind` could be placed now.
    pub fn has_room(&self, kind: Option<SpotKind>) -> bool {
        match kind {
            Some(k) => self.counts.by_kind[k.index()].available > 0,
            None => self.counts.overall.available > 0,
        }
    }
}
