//! Sensor liveness of one spot zone (contract §2.1): when each spot was
//! last heard of, and which spots may have gone silent by a given time.
//!
//! Cost model. Hearing of a spot (a reading, a heartbeat) only stores the
//! time: O(1), no timer touched. Each spot sits in exactly one bucket of a
//! coarse wheel (a sorted map of slot numbers, [`SLOTS_PER_PERIOD`] slots
//! per staleness period), filed under the slot of the deadline it had when
//! filed. When a slot comes due, its spots are looked at once: those heard
//! of since are filed again under their new deadline (lazy re-filing),
//! the others are silent. So a spot costs one look per staleness period
//! however many readings it sends, and nothing at all between; the zone
//! wakes once for the earliest slot ([`Liveness::next_due`]). A spot goes
//! silent at most one slot (1/64 of the period, at most a minute) late.
//!
//! The hearing clock is volatile: it is never journaled, and it starts
//! afresh at [`Liveness::start`] (boot, restart, a new layout), so no spot
//! is ever silent at start. Going silent, by contrast, is decided by the
//! zone and journaled (`SpotStale`).
//!
//! This module must never decide a spot's state: it only answers "who has
//! been silent since when".

use std::collections::BTreeMap;

use crate::ids::Millis;

/// Slots of the wheel per staleness period.
pub const SLOTS_PER_PERIOD: i64 = 64;
/// Widest slot, in milliseconds.
pub const MAX_SLOT_MS: i64 = 60_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    /// 0: liveness is off (or not started).
    stale_ms: i64,
    slot_ms: i64,
    /// The latest time the zone was told of; a new layout restarts the
    /// clocks there.
    clock: Millis,
    heard: Vec<Millis>,
    filed: Vec<bool>,
    wheel: BTreeMap<i64, Vec<u32>>,
}

impl Liveness {
    /// Starts every spot's clock at `now`. `stale_secs == 0` turns liveness
    /// off. Spots already stale are not watched until heard of again.
    pub fn start(
        &mut self,
        stale_secs: u32,
        spots: usize,
        is_stale: impl Fn(usize) -> bool,
        now: Millis,
    ) {
        self.stale_ms = i64::from(stale_secs) * 1000;
        self.slot_ms = (self.stale_ms / SLOTS_PER_PERIOD).clamp(1, MAX_SLOT_MS);
        self.clock = self.clock.max(now);
        self.wheel.clear();
        self.heard.clear();
        self.filed.clear();
        if !self.is_on() {
            return;
        }
        let now = self.clock;
        self.heard.resize(spots, now);
        self.filed = (0..spots).map(|i| !is_stale(i)).collect();
        let watched: Vec<u32> = (0..spots)
            .filter(|&i| self.filed[i])
            .map(|i| i as u32)
            .collect();
        if !watched.is_empty() {
            let slot = self.slot_of(self.deadline(now));
            self.wheel.insert(slot, watched);
        }
    }

    /// Starts the clocks again at the latest known time, for a zone whose
    /// spots changed (a new layout).
    pub fn restart(&mut self, spots: usize, is_stale: impl Fn(usize) -> bool) {
        let stale_secs = u32::try_from(self.stale_ms / 1000).unwrap_or(u32::MAX);
        self.start(stale_secs, spots, is_stale, self.clock);
    }

    pub fn is_on(&self) -> bool {
        self.stale_ms > 0
    }

    /// Notes the time of a command.
    pub fn observe(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
    }

    /// Spot `i` was heard of at `now`.
    #[inline]
    pub fn hear(&mut self, i: usize, now: Millis) {
        if !self.is_on() {
            return;
        }
        let Some(heard) = self.heard.get_mut(i) else {
            return;
        };
        *heard = (*heard).max(now);
        let heard = *heard;
        if !self.filed[i] {
            self.filed[i] = true;
            let slot = self.slot_of(self.deadline(heard));
            self.wheel.entry(slot).or_default().push(i as u32);
        }
    }

    /// Watched spots not heard of for the whole period at `now`, in index
    /// order. Looks only at the slots due by `now`.
    pub fn silent(&self, now: Millis) -> Vec<u32> {
        let mut silent: Vec<u32> = self
            .due(now)
            .flat_map(|(_, spots)| spots.iter().copied())
            .filter(|&i| self.deadline(self.heard[i as usize]) <= now)
            .collect();
        silent.sort_unstable();
        silent
    }

    /// Empties the slots due by `now`: spots heard of since are filed under
    /// their new deadline, stale ones leave the wheel until heard of.
    pub fn refile(&mut self, now: Millis, is_stale: impl Fn(usize) -> bool) {
        let due: Vec<i64> = self.due(now).map(|(&slot, _)| slot).collect();
        for slot in due {
            let Some(spots) = self.wheel.remove(&slot) else {
                continue;
            };
            for i in spots {
                let index = i as usize;
                if index >= self.heard.len() {
                    continue;
                }
                if is_stale(index) {
                    self.filed[index] = false;
                    continue;
                }
                // A silent spot the zone did not mark (it should have) is
                // looked at again next slot rather than filed in the past.
                let deadline = self.deadline(self.heard[index]).max(Millis(now.0 + 1));
                let slot = self.slot_of(deadline);
                self.wheel.entry(slot).or_default().push(i);
            }
        }
    }

    /// When the earliest slot comes due.
    pub fn next_due(&self) -> Option<Millis> {
        self.wheel
            .first_key_value()
            .map(|(&slot, _)| Millis(slot.saturating_mul(self.slot_ms)))
    }

    fn due(&self, now: Millis) -> impl Iterator<Item = (&i64, &Vec<u32>)> {
        let last = if self.is_on() {
            now.0.div_euclid(self.slot_ms)
        } else {
            i64::MIN
        };
        self.wheel.range(..=last)
    }

    fn deadline(&self, heard: Millis) -> Millis {
        Millis(heard.0.saturating_add(self.stale_ms))
    }

    /// The first slot whose start is at or after `at`.
    fn slot_of(&self, at: Millis) -> i64 {
        at.0.div_euclid(self.slot_ms) + i64::from(at.0.rem_euclid(self.slot_ms) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = Millis(1_700_000_000_000);

    fn at(secs: i64) -> Millis {
        Millis(T0.0 + secs * 1000)
    }

    #[test]
    fn a_spot_heard_of_stays_out_of_the_silent_list() {
        let mut live = Liveness::default();
        live.start(64, 3, |_| false, T0);
        assert_eq!(live.next_due(), Some(at(64)));
        live.hear(1, at(30));
        assert_eq!(live.silent(at(63)), Vec::<u32>::new());
        assert_eq!(live.silent(at(64)), vec![0, 2]);
        // The zone marks 0 and 2 stale; 1 is filed again for 30 + 64.
        live.refile(at(64), |i| i != 1);
        assert_eq!(live.next_due(), Some(at(94)));
        assert_eq!(live.silent(at(94)), vec![1]);
    }

    #[test]
    fn many_readings_file_a_spot_once() {
        let mut live = Liveness::default();
        live.start(3600, 1, |_| false, T0);
        for s in 0..10_000 {
            live.hear(0, at(s % 3000));
        }
        assert_eq!(live.wheel.values().map(Vec::len).sum::<usize>(), 1);
    }

    #[test]
    fn a_stale_spot_is_watched_again_once_heard_of() {
        let mut live = Liveness::default();
        live.start(10, 2, |i| i == 0, T0);
        // Due at most one slot (10 s / 64) after the deadline.
        let due = live.next_due().expect("spot 1 is watched");
        assert!(at(10) <= due && due < Millis(at(10).0 + 157), "{due:?}");
        assert!(live.silent(Millis(due.0 - 1)).is_empty());
        assert_eq!(live.silent(due), vec![1]);
        live.refile(due, |_| true);
        assert_eq!(live.next_due(), None);
        live.hear(0, at(12));
        assert_eq!(live.silent(at(23)), vec![0]);
    }

    #[test]
    fn zero_turns_liveness_off() {
        let mut live = Liveness::default();
        live.start(0, 5, |_| false, T0);
        live.hear(3, at(1));
        assert_eq!(live.next_due(), None);
        assert!(live.silent(Millis(i64::MAX)).is_empty());
    }
}
