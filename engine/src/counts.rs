//! Occupancy counts: overall and per spot kind, one number per spot state
//! (`unknown` included) plus their total.
//!
//! Counts are maintained incrementally by the zone state machine and checked
//! against a full recount in debug builds and property tests. This module
//! must never decide anything: it only adds and subtracts.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::kinds::{SpotKind, SpotState};

/// `{total, available, reserved, occupied, out_of_service, unknown}`, with
/// `total` the sum of the other five.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct Counts {
    pub total: u32,
    pub available: u32,
    pub reserved: u32,
    pub occupied: u32,
    pub out_of_service: u32,
    pub unknown: u32,
}

impl Counts {
    pub fn slot(&mut self, state: SpotState) -> &mut u32 {
        match state {
            SpotState::Available => &mut self.available,
            SpotState::Reserved => &mut self.reserved,
            SpotState::Occupied => &mut self.occupied,
            SpotState::OutOfService => &mut self.out_of_service,
            SpotState::Unknown => &mut self.unknown,
        }
    }

    pub fn get(&self, state: SpotState) -> u32 {
        match state {
            SpotState::Available => self.available,
            SpotState::Reserved => self.reserved,
            SpotState::Occupied => self.occupied,
            SpotState::OutOfService => self.out_of_service,
            SpotState::Unknown => self.unknown,
        }
    }

    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.available += other.available;
        self.reserved += other.reserved;
        self.occupied += other.occupied;
        self.out_of_service += other.out_of_service;
        self.unknown += other.unknown;
    }
}

/// Counts of one zone, overall and for each kind present in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct ZoneCounts {
    pub overall: Counts,
    pub by_kind: [Counts; 5],
}

impl ZoneCounts {
    /// Moves one spot of `kind` from state `from` to state `to`.
    pub fn shift(&mut self, kind: SpotKind, from: SpotState, to: SpotState) {
        if from == to {
            return;
        }
        for counts in [&mut self.overall, &mut self.by_kind[kind.index()]] {
            let before = counts.slot(from);
            debug_assert!(*before > 0, "count underflow moving {from:?} -> {to:?}");
            *before = before.saturating_sub(1);
            *counts.slot(to) += 1;
        }
    }

    /// Adds one spot of `kind` in `state`.
    pub fn insert(&mut self, kind: SpotKind, state: SpotState) {
        for counts in [&mut self.overall, &mut self.by_kind[kind.index()]] {
            counts.total += 1;
            *counts.slot(state) += 1;
        }
    }

    /// Removes one spot of `kind` in `state`.
    pub fn remove(&mut self, kind: SpotKind, state: SpotState) {
        for counts in [&mut self.overall, &mut self.by_kind[kind.index()]] {
            counts.total = counts.total.saturating_sub(1);
            let slot = counts.slot(state);
            *slot = slot.saturating_sub(1);
        }
    }

    /// Kinds with at least one spot, with their counts.
    pub fn present_kinds(&self) -> BTreeMap<SpotKind, Counts> {
        SpotKind::ALL
            .into_iter()
            .filter(|k| self.by_kind[k.index()].total > 0)
            .map(|k| (k, self.by_kind[k.index()]))
            .collect()
    }

    pub fn add(&mut self, other: &ZoneCounts) {
        self.overall.add(&other.overall);
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind.iter()) {
            mine.add(theirs);
        }
    }
}
