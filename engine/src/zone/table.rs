//! What a zone holds, spot by spot (or as one counter): the primary state
//! the events change, and the free sets derived from it.
//!
//! This module must never look at bookings beyond the id a spot holds: a
//! spot's state is a function of its own flags.

use std::collections::{BTreeSet, HashMap};

use crate::counts::Counts;
use crate::ids::{BookingId, SpotId};
use crate::kinds::{SpotKind, SpotState};
use crate::layout::{ZoneLayout, ZoneShape};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SpotSlot {
    pub id: SpotId,
    pub kind: SpotKind,
    pub occupied: bool,
    pub out_of_service: bool,
    /// The sensor went silent (journaled); cleared by the next reading or
    /// heartbeat.
    pub stale: bool,
    pub booking: Option<BookingId>,
}

impl SpotSlot {
    /// The contract's state: out of service wins; a spot held and not
    /// occupied is reserved (its silence does not matter while held);
    /// otherwise a silent sensor makes it unknown.
    pub fn state(&self) -> SpotState {
        spot_state(
            self.occupied,
            self.out_of_service,
            self.stale,
            self.booking.is_some(),
        )
    }
}

pub(super) fn spot_state(
    occupied: bool,
    out_of_service: bool,
    stale: bool,
    held: bool,
) -> SpotState {
    if out_of_service {
        SpotState::OutOfService
    } else if held && !occupied {
        SpotState::Reserved
    } else if stale {
        SpotState::Unknown
    } else if occupied {
        SpotState::Occupied
    } else {
        SpotState::Available
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SpotTable {
    pub slots: Vec<SpotSlot>,
    pub index: HashMap<SpotId, u32>,
    /// Available spots per kind, lowest index first.
    pub free: [BTreeSet<u32>; 5],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counter {
    pub capacity: u32,
    pub kind: SpotKind,
    pub occupied: u32,
    /// Live `CONFIRMED` bookings, each holding one unit.
    pub reserved: u32,
}

impl Counter {
    pub fn counts(&self) -> Counts {
        Counts {
            total: self.capacity,
            available: self
                .capacity
                .saturating_sub(self.occupied)
                .saturating_sub(self.reserved),
            reserved: self.reserved,
            occupied: self.occupied,
            out_of_service: 0,
            unknown: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shape {
    Spots(SpotTable),
    Counter(Counter),
}

impl Shape {
    pub fn build(layout: &ZoneLayout) -> Shape {
        match &layout.shape {
            ZoneShape::Spots(spots) => Shape::Spots(SpotTable {
                slots: spots
                    .iter()
                    .map(|s| SpotSlot {
                        id: s.id.clone(),
                        kind: s.kind,
                        occupied: false,
                        out_of_service: false,
                        stale: false,
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

    pub fn spot_count(&self) -> usize {
        match self {
            Shape::Spots(table) => table.slots.len(),
            Shape::Counter(_) => 0,
        }
    }

    pub fn is_stale(&self, i: usize) -> bool {
        match self {
            Shape::Spots(table) => table.slots.get(i).is_some_and(|s| s.stale),
            Shape::Counter(_) => false,
        }
    }
}

/// Booking classes: one per spot kind, and one for "any kind" (every
/// reservation of a counter zone is in it).
pub(super) const CLASSES: usize = 6;
pub(super) const ANY: usize = 5;

static KINDS: [SpotKind; 5] = SpotKind::ALL;

/// The class of a booking asking for `kind`.
pub(super) fn class_of(kind: Option<SpotKind>, counter: bool) -> usize {
    match kind {
        Some(kind) if !counter => kind.index(),
        _ => ANY,
    }
}

/// The kinds a class may take, in the order they are offered.
pub(super) fn kinds_of(class: usize) -> &'static [SpotKind] {
    if class >= ANY {
        &SpotKind::PREFERENCE
    } else {
        &KINDS[class..=class]
    }
}
