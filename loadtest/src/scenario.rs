//! What each scenario means in numbers: the facility layouts, where apps
//! book, what fate a booking meets, when sensors storm and when watchers
//! stall. Pure: no I/O, no clock.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{Cli, Scenario};

/// The bookable zone of every facility.
pub const BOOKABLE_ZONE: &str = "R";

/// One spot of a generated layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotSpec {
    pub id: String,
    pub zone: String,
    pub kind: &'static str,
    /// In the bookable zone: only apps move cars here.
    pub bookable: bool,
}

/// One generated facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilitySpec {
    pub id: String,
    pub zones: Vec<String>,
    pub spots: Vec<SpotSpec>,
}

impl FacilitySpec {
    /// The `PUT /v1/facilities/{fid}` body.
    pub fn layout_json(&self) -> Value {
        let zones: Vec<Value> = self
            .zones
            .iter()
            .map(|zone| {
                let spots: Vec<Value> = self
                    .spots
                    .iter()
                    .filter(|s| &s.zone == zone)
                    .map(|s| json!({"id": s.id, "kind": s.kind}))
                    .collect();
                let name = if zone == BOOKABLE_ZONE {
                    "Reserved parking".to_owned()
                } else {
                    format!("Level {zone}")
                };
                json!({"id": zone, "name": name, "spots": spots})
            })
            .collect();
        json!({
            "name": format!("Load test {}", self.id),
            "timezone": "UTC",
            "location": {"lat": 48.8566, "lon": 2.3522},
            "zones": zones,
        })
    }
}

/// What happens to a confirmed booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The car arrives (the sensor reports the spot occupied), stays, leaves.
    Arrive,
    /// The owner cancels.
    Cancel,
    /// Nobody comes; the hold expires.
    NoShow,
}

/// A scenario in numbers.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub bookable_per_facility: usize,
    /// All apps book in facility 0 (the last-spot race).
    pub apps_share_one_facility: bool,
    /// Probabilities of arrive and cancel; the rest never shows.
    pub p_arrive: f64,
    pub p_cancel: f64,
    /// Scales how long a car takes to come, stays, or an owner waits to
    /// cancel (1 = about the hold; last-spot turns spots over fast).
    pub fate_pace: f64,
    /// Mean pause between bookings of one app.
    pub think: Duration,
    /// Pause after `no_spot_available`.
    pub retry_after_full: Duration,
    /// Fractions of the run at which every sensor drops and reconnects.
    pub storms: Vec<f64>,
    /// Idle watchers stop reading in `[from, to)` fractions of the run.
    pub stall: Option<(f64, f64)>,
    /// Idle watchers (after scenario defaults).
    pub subscribers: usize,
    /// Idle watchers also drop and resume (`since`) with each storm.
    pub watchers_resume: bool,
}

impl Plan {
    pub fn new(cli: &Cli) -> Self {
        let scenario = cli.scenario;
        let default_bookable = match scenario {
            Scenario::LastSpot => 4.min(cli.spots),
            _ => (cli.spots / 5).max(1).min(cli.spots),
        };
        let last_spot = scenario == Scenario::LastSpot;
        Plan {
            scenario,
            bookable_per_facility: cli.bookable.unwrap_or(default_bookable),
            apps_share_one_facility: last_spot,
            p_arrive: if last_spot { 0.45 } else { 0.6 },
            p_cancel: if last_spot { 0.5 } else { 0.25 },
            fate_pace: if last_spot { 0.1 } else { 1.0 },
            think: if last_spot {
                cli.think.min(Duration::from_millis(20))
            } else {
                cli.think
            },
            retry_after_full: if last_spot {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(250)
            },
            storms: if scenario == Scenario::ReconnectStorm {
                vec![0.35, 0.7]
            } else {
                Vec::new()
            },
            stall: (scenario == Scenario::SlowConsumers).then_some((0.1, 0.75)),
            subscribers: if scenario == Scenario::SlowConsumers && cli.subscribers == 0 {
                20
            } else {
                cli.subscribers
            },
            watchers_resume: scenario == Scenario::ReconnectStorm,
        }
    }

    /// Traffic intensity at a fraction `t` of the run: 1 except in rush
    /// hour, where it climbs from 0.3 to 1.6 mid-run and falls back.
    pub fn intensity(&self, t: f64) -> f64 {
        if self.scenario != Scenario::RushHour {
            return 1.0;
        }
        let t = t.clamp(0.0, 1.0);
        0.3 + 1.3 * (std::f64::consts::PI * t).sin().powi(2)
    }

    /// The facility an app books in and watches.
    pub fn app_facility(&self, app: usize, facilities: usize) -> usize {
        if self.apps_share_one_facility || facilities == 0 {
            0
        } else {
            app % facilities
        }
    }

    /// The fate of a booking from a uniform draw in `[0, 1)`.
    pub fn fate(&self, draw: f64) -> Fate {
        if draw < self.p_arrive {
            Fate::Arrive
        } else if draw < self.p_arrive + self.p_cancel {
            Fate::Cancel
        } else {
            Fate::NoShow
        }
    }

    /// The layout of facility `index` of run `run_id`.
    pub fn facility(
        &self,
        run_id: &str,
        index: usize,
        spots: usize,
        zone_size: usize,
    ) -> FacilitySpec {
        let id = format!("{run_id}-f{index:03}");
        let bookable = self.bookable_per_facility.min(spots);
        let walk_in = spots - bookable;
        let mut zones = Vec::new();
        let mut specs = Vec::with_capacity(spots);
        let zone_size = zone_size.max(1);
        for i in 0..walk_in {
            let zone = zone_name(i / zone_size);
            if zones.last() != Some(&zone) {
                zones.push(zone.clone());
            }
            specs.push(SpotSpec {
                id: format!("{zone}-{:04}", i % zone_size),
                zone,
                kind: walk_in_kind(i),
                bookable: false,
            });
        }
        if bookable > 0 {
            zones.push(BOOKABLE_ZONE.to_owned());
            for i in 0..bookable {
                specs.push(SpotSpec {
                    id: format!("{BOOKABLE_ZONE}-{i:04}"),
                    zone: BOOKABLE_ZONE.to_owned(),
                    kind: "standard",
                    bookable: true,
                });
            }
        }
        FacilitySpec {
            id,
            zones,
            spots: specs,
        }
    }
}

/// Walk-in zones are `A`, `B`, … `Z`, then `Z1`, `Z2`, … (never `R`).
fn zone_name(index: usize) -> String {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQSTUVWXYZ";
    match LETTERS.get(index) {
        Some(&c) => char::from(c).to_string(),
        None => format!("Z{}", index + 1 - LETTERS.len()),
    }
}

/// A plausible mix: mostly standard, some EV, accessible, compact, bikes.
fn walk_in_kind(i: usize) -> &'static str {
    match i % 20 {
        0 | 10 => "ev",
        5 => "accessible",
        15 => "compact",
        19 => "motorcycle",
        _ => "standard",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> (Plan, Cli) {
        let mut all = vec!["parkme-loadtest", "--admin-token", "t", "--jwt-secret", "s"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).expect("parses");
        (Plan::new(&cli), cli)
    }

    #[test]
    fn layouts_split_walk_in_zones_and_the_bookable_zone() {
        let (plan, _) = plan(&["--spots", "250"]);
        let f = plan.facility("run1", 3, 250, 100);
        assert_eq!(f.id, "run1-f003");
        assert_eq!(f.zones, vec!["A", "B", "R"]);
        assert_eq!(f.spots.len(), 250);
        assert_eq!(f.spots.iter().filter(|s| s.bookable).count(), 50);
        let ids: std::collections::HashSet<_> = f.spots.iter().map(|s| &s.id).collect();
        assert_eq!(ids.len(), 250, "spot ids are unique within the facility");
        let body = f.layout_json();
        assert_eq!(body["zones"][2]["id"], "R");
    }

    #[test]
    fn last_spot_races_every_app_for_a_handful_of_spots() {
        let (plan, _) = plan(&["--scenario", "last-spot"]);
        assert_eq!(plan.bookable_per_facility, 4);
        assert_eq!(plan.app_facility(57, 10), 0);
    }

    #[test]
    fn rush_hour_peaks_mid_run() {
        let (plan, _) = plan(&["--scenario", "rush-hour"]);
        assert!(plan.intensity(0.5) > plan.intensity(0.05) * 3.0);
        let (steady, _) = plan_steady();
        assert!((steady.intensity(0.5) - 1.0).abs() < f64::EPSILON);
    }

    fn plan_steady() -> (Plan, Cli) {
        plan(&[])
    }

    #[test]
    fn fates_follow_the_probabilities() {
        let (plan, _) = plan(&[]);
        assert_eq!(plan.fate(0.0), Fate::Arrive);
        assert_eq!(plan.fate(0.7), Fate::Cancel);
        assert_eq!(plan.fate(0.99), Fate::NoShow);
    }
}
