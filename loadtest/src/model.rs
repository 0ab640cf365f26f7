//! A seeded discrete-event model of one sensor gateway's walk-in spots:
//! cars arrive (Poisson, rate scaled by the scenario's intensity), park on
//! a random free spot for a dwell time, leave; every spot's sensor also
//! sends a heartbeat now and then. Sensors report on change only.
//!
//! Time here is virtual (milliseconds): the sensor task decides how fast
//! it runs. Pure: no clock, no I/O.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensed {
    /// Spot `spot` (index into the model's spots) changed.
    Spot { spot: usize, occupied: bool },
    /// Spot `spot`'s sensor is alive.
    Heartbeat { spot: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Arrival,
    Departure(usize),
    Heartbeat(usize),
}

/// Tunables of the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelParams {
    /// Mean time a car stays (virtual ms).
    pub dwell_ms: f64,
    /// Share of spots occupied at equilibrium with intensity 1.
    pub target_occupancy: f64,
    /// Every spot's heartbeat period (virtual ms).
    pub heartbeat_ms: u64,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            dwell_ms: 60_000.0,
            target_occupancy: 0.7,
            heartbeat_ms: 180_000,
        }
    }
}

#[derive(Debug)]
pub struct ParkingModel {
    rng: StdRng,
    params: ModelParams,
    now: u64,
    occupied: Vec<bool>,
    free: Vec<usize>,
    queue: BinaryHeap<Reverse<(u64, Due)>>,
}

/// A draw from the exponential distribution of mean `mean`.
pub(crate) fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    -u.ln() * mean
}

impl ParkingModel {
    /// A model of `spots` spots, all free at first.
    pub fn new(spots: usize, params: ModelParams, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut queue = BinaryHeap::new();
        for spot in 0..spots {
            let phase = rng.random_range(0..params.heartbeat_ms.max(1));
            queue.push(Reverse((phase, Due::Heartbeat(spot))));
        }
        if spots > 0 {
            queue.push(Reverse((0, Due::Arrival)));
        }
        Self {
            rng,
            params,
            now: 0,
            occupied: vec![false; spots],
            free: (0..spots).collect(),
            queue,
        }
    }

    pub fn occupied(&self) -> usize {
        self.occupied.len() - self.free.len()
    }

    /// The next report. `intensity` scales the arrival rate (rush hour).
    /// `None` only for a model without spots.
    pub fn next(&mut self, intensity: f64) -> Option<Sensed> {
        loop {
            let Reverse((at, due)) = self.queue.pop()?;
            self.now = at;
            match due {
                Due::Heartbeat(spot) => {
                    let next = at + self.params.heartbeat_ms.max(1);
                    self.queue.push(Reverse((next, Due::Heartbeat(spot))));
                    return Some(Sensed::Heartbeat { spot });
                }
                Due::Departure(spot) => {
                    self.occupied[spot] = false;
                    self.free.push(spot);
                    return Some(Sensed::Spot {
                        spot,
                        occupied: false,
                    });
                }
                Due::Arrival => {
                    let spots = self.occupied.len() as f64;
                    let rate = self.params.target_occupancy * spots / self.params.dwell_ms
                        * intensity.max(0.01);
                    let gap = exponential(&mut self.rng, 1.0 / rate);
                    self.queue
                        .push(Reverse((at + gap.ceil() as u64, Due::Arrival)));
                    if self.free.is_empty() {
                        // Full: the car drives on.
                        continue;
                    }
                    let pick = self.rng.random_range(0..self.free.len());
                    let spot = self.free.swap_remove(pick);
                    self.occupied[spot] = true;
                    let dwell =
                        self.params.dwell_ms * (0.1 + 0.9 * exponential(&mut self.rng, 1.0));
                    self.queue
                        .push(Reverse((at + dwell.ceil() as u64, Due::Departure(spot))));
                    return Some(Sensed::Spot {
                        spot,
                        occupied: true,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_changes_and_stays_consistent() {
        let mut model = ParkingModel::new(50, ModelParams::default(), 7);
        let mut state = [false; 50];
        let mut heartbeats = 0;
        for _ in 0..20_000 {
            match model.next(1.0) {
                Some(Sensed::Spot { spot, occupied }) => {
                    assert_ne!(state[spot], occupied, "a report is always a change");
                    state[spot] = occupied;
                }
                Some(Sensed::Heartbeat { .. }) => heartbeats += 1,
                None => panic!("a model with spots never runs dry"),
            }
        }
        assert_eq!(model.occupied(), state.iter().filter(|&&o| o).count());
        assert!(heartbeats > 0);
        let share = model.occupied() as f64 / 50.0;
        assert!((0.3..=1.0).contains(&share), "occupancy {share}");
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let mut a = ParkingModel::new(10, ModelParams::default(), 42);
        let mut b = ParkingModel::new(10, ModelParams::default(), 42);
        for _ in 0..1000 {
            assert_eq!(a.next(1.0), b.next(1.0));
        }
    }

    #[test]
    fn no_spots_means_no_reports() {
        assert_eq!(
            ParkingModel::new(0, ModelParams::default(), 1).next(1.0),
            None
        );
    }
}
