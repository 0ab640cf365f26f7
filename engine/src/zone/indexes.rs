//! The zone's derived indexes over its live bookings: deadlines, waiting
//! reservations, stays, plates and reservation windows. Each is a pure
//! function of the live bookings, kept in step by [`Indexes::change`]
//! (called with a booking before and after every change) and rebuilt from
//! scratch on restore.
//!
//! This module must never change a booking: it only files them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::booking::Booking;
use crate::ids::{BookingId, Millis, Plate};
use crate::intervals::Intervals;
use crate::kinds::BookingStatus;

use super::table::{CLASSES, class_of};

type Deadlines = BTreeSet<(Millis, BookingId)>;

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Indexes {
    /// No-show deadlines (`expires_at`) of `CONFIRMED` and `SCHEDULED`
    /// bookings.
    pub expiry: Deadlines,
    /// `SCHEDULED` reservations by class, by `starts_at`.
    pub scheduled: [Deadlines; CLASSES],
    /// `starts_at` of every `SCHEDULED` reservation, with multiplicity.
    pub starts: BTreeMap<Millis, u32>,
    pub scheduled_len: usize,
    /// `ACTIVE` bookings with an `ends_at` that have not overstayed, by
    /// `ends_at`.
    pub stays: Deadlines,
    /// `CONFIRMED` (`[0]`) and `ACTIVE` (`[1]`) bookings by plate, oldest
    /// first.
    pub plates: HashMap<Plate, [Deadlines; 2]>,
    /// Windows of live reservations.
    pub windows: Intervals,
}

fn expiry_key(b: &Booking) -> Option<Millis> {
    matches!(
        b.status,
        BookingStatus::Confirmed | BookingStatus::Scheduled
    )
    .then_some(b.expires_at)
}

fn scheduled_key(b: &Booking, counter: bool) -> Option<(usize, Millis)> {
    let starts = b.starts_at?;
    (b.status == BookingStatus::Scheduled).then(|| (class_of(b.kind, counter), starts))
}

fn stay_key(b: &Booking) -> Option<Millis> {
    (b.status == BookingStatus::Active && !b.overstay)
        .then_some(b.ends_at)
        .flatten()
}

fn plate_key(b: &Booking) -> Option<usize> {
    match b.status {
        BookingStatus::Confirmed => Some(0),
        BookingStatus::Active => Some(1),
        _ => None,
    }
}

fn window_key(b: &Booking) -> Option<(Millis, Millis)> {
    b.window().filter(|_| b.is_live())
}

/// Moves `id` in `set` from key `before` to key `after`.
fn refile<K: Copy + PartialEq>(
    set: &mut BTreeSet<(K, BookingId)>,
    id: &BookingId,
    before: Option<K>,
    after: Option<K>,
) where
    (K, BookingId): Ord,
{
    if before == after {
        return;
    }
    if let Some(key) = before {
        set.remove(&(key, id.clone()));
    }
    if let Some(key) = after {
        set.insert((key, id.clone()));
    }
}

impl Indexes {
    /// Files the change of one booking: `None` before (it is new), `None`
    /// after (it ended). `counter`: the zone is a counter zone.
    pub fn change(&mut self, before: Option<&Booking>, after: Option<&Booking>, counter: bool) {
        let Some(id) = before.or(after).map(|b| &b.id) else {
            return;
        };
        refile(
            &mut self.expiry,
            id,
            before.and_then(expiry_key),
            after.and_then(expiry_key),
        );
        refile(
            &mut self.stays,
            id,
            before.and_then(stay_key),
            after.and_then(stay_key),
        );
        let (was, is) = (
            before.and_then(|b| scheduled_key(b, counter)),
            after.and_then(|b| scheduled_key(b, counter)),
        );
        if was != is {
            if let Some((class, starts)) = was {
                self.scheduled[class].remove(&(starts, id.clone()));
                self.scheduled_len -= 1;
                if let Some(n) = self.starts.get_mut(&starts) {
                    *n -= 1;
                    if *n == 0 {
                        self.starts.remove(&starts);
                    }
                }
            }
            if let Some((class, starts)) = is {
                self.scheduled[class].insert((starts, id.clone()));
                self.scheduled_len += 1;
                *self.starts.entry(starts).or_default() += 1;
            }
        }
        let plate = |b: &Booking| plate_key(b).map(|k| (k, b.created_at));
        let (was, is) = (before.and_then(plate), after.and_then(plate));
        if was != is {
            if let (Some((k, created)), Some(b)) = (was, before)
                && let Some(sets) = self.plates.get_mut(&b.plate)
            {
                sets[k].remove(&(created, id.clone()));
                if sets.iter().all(BTreeSet::is_empty) {
                    self.plates.remove(&b.plate);
                }
            }
            if let (Some((k, created)), Some(b)) = (is, after) {
                self.plates.entry(b.plate.clone()).or_default()[k].insert((created, id.clone()));
            }
        }
        let (was, is) = (before.and_then(window_key), after.and_then(window_key));
        if was != is {
            if let Some((s, e)) = was {
                self.windows.remove(s, e);
            }
            if let Some((s, e)) = is {
                self.windows.insert(s, e);
            }
        }
    }

    /// The oldest booking of `plate` that is `CONFIRMED` (`active: false`)
    /// or `ACTIVE`.
    pub fn oldest_with_plate(&self, plate: &Plate, active: bool) -> Option<&BookingId> {
        self.plates
            .get(plate)
            .and_then(|sets| sets[usize::from(active)].first())
            .map(|(_, id)| id)
    }
}
