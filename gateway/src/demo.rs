//! `serve --demo`: a built-in demo city (20 facilities, 50,000 spots) loaded
//! when storage is empty, and a sensor simulator that keeps occupancy
//! moving so the dashboard has something to show.
//!
//! The simulator goes through the same node API as real sensors; it must
//! never touch state directly.

use std::time::Duration;

use parkme_engine::Reading;
use parkme_engine::{
    FacilityId, FacilityLayout, Location, SpotId, SpotKind, SpotLayout, ZoneId, ZoneLayout,
    ZoneShape,
};
use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::task::JoinHandle;

use crate::state::AppState;

const CITY: [&str; 20] = [
    "Harbour",
    "Old Town",
    "Station",
    "Cathedral",
    "Market",
    "University",
    "Stadium",
    "Airport",
    "Riverside",
    "Museum",
    "Hospital",
    "Arena",
    "Docklands",
    "Business Park",
    "Mall",
    "Zoo",
    "Library",
    "Ferry",
    "Conference",
    "Theatre",
];
const SPOT_ZONES: [&str; 4] = ["A", "B", "C", "D"];
const SPOTS_PER_ZONE: usize = 625;
/// Spots of each demo zone promised to advance reservations (half in the
/// counted garage).
const DEMO_RESERVABLE: u32 = 20;

fn kind_for(i: usize) -> SpotKind {
    match i % 50 {
        0..=3 => SpotKind::Ev,
        4..=5 => SpotKind::Accessible,
        6 => SpotKind::Motorcycle,
        7..=10 => SpotKind::Compact,
        _ => SpotKind::Standard,
    }
}

/// The demo city's layouts.
pub fn city() -> Vec<FacilityLayout> {
    CITY.iter()
        .enumerate()
        .filter_map(|(n, name)| {
            let id = FacilityId::parse(&format!("city-{:02}", n + 1)).ok()?;
            let mut zones: Vec<ZoneLayout> = SPOT_ZONES
                .iter()
                .filter_map(|z| {
                    let spots = (1..=SPOTS_PER_ZONE)
                        .filter_map(|i| {
                            Some(SpotLayout {
                                id: SpotId::parse(&format!("{z}-{i:03}")).ok()?,
                                kind: kind_for(i),
                            })
                        })
                        .collect();
                    Some(ZoneLayout {
                        id: ZoneId::parse(z).ok()?,
                        name: format!("Level {z}"),
                        shape: ZoneShape::Spots(spots),
                        reservable: DEMO_RESERVABLE,
                    })
                })
                .collect();
            zones.push(ZoneLayout {
                id: ZoneId::parse("G").ok()?,
                name: "Garage (counted)".into(),
                shape: ZoneShape::Counter {
                    capacity: 200,
                    kind: SpotKind::Standard,
                },
                reservable: DEMO_RESERVABLE / 2,
            });
            let location = Location {
                lat: 48.85 + n as f64 * 0.004,
                lon: 2.35 + n as f64 * 0.003,
            };
            FacilityLayout::new(
                id,
                format!("{name} Parking"),
                "Europe/Paris".into(),
                Some(location),
                zones,
            )
            .ok()
        })
        .collect()
}

/// Loads the city if storage is empty and starts the simulator.
pub async fn start(app: &AppState) -> Vec<JoinHandle<()>> {
    if app.node().facility_ids().is_empty() {
        let started = std::time::Instant::now();
        for layout in city() {
            if let Err(e) = app.node().put_facility(layout).await {
                tracing::warn!(error = %e, "demo facility not created");
            }
        }
        reserve_some(app).await;
        synthetic_day(app).await;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "demo city loaded"
        );
    }
    vec![tokio::spawn(simulate(app.clone()))]
}

/// A few advance reservations per facility over the next hours.
async fn reserve_some(app: &AppState) {
    let Ok(owner) = parkme_engine::UserId::parse("demo-planner") else {
        return;
    };
    let now = app.node().now().0;
    for facility in app.node().facility_ids() {
        for (i, plate) in ["RES-1", "RES-2", "RES-3"].iter().enumerate() {
            let Ok(plate) = parkme_engine::Plate::parse(plate) else {
                continue;
            };
            let start = now + (i as i64 + 1) * 3_600_000;
            let params = parkme_actors::BookParams {
                owner: owner.clone(),
                plate,
                zone: ZoneId::parse("A").ok(),
                kind: None,
                spot: None,
                hold_seconds: 900,
                starts_at: Some(parkme_engine::Millis(start)),
                ends_at: Some(parkme_engine::Millis(start + 2 * 3_600_000)),
                idempotency_key: None,
            };
            if let Err(e) = app.node().book(&facility, params).await {
                tracing::warn!(facility = %facility, error = %e, "demo reservation not made");
            }
        }
    }
}

/// A day of synthetic history (every 5 minutes, a daily curve) so the
/// dashboard's chart is not empty on first start.
async fn synthetic_day(app: &AppState) {
    use parkme_actors::history::{Sample, SampleCounts};
    let now = app.node().now().0;
    let step = 5 * 60_000;
    let mut samples = Vec::new();
    for (n, facility) in app.node().facility_ids().into_iter().enumerate() {
        let Ok(view) = app.node().facility(&facility).await else {
            continue;
        };
        for k in (1..=288).rev() {
            let at = now - k * step;
            let hour = (at.rem_euclid(86_400_000) as f64) / 3_600_000.0;
            // Busy from morning to evening, a little different per place.
            let phase = (hour - 7.0 - (n % 4) as f64) / 12.0 * std::f64::consts::PI;
            let share = (0.25 + 0.55 * phase.sin().max(0.0)).clamp(0.0, 0.95);
            let scaled = |total: u32| {
                let occupied = ((f64::from(total) * share).round() as u32).min(total);
                SampleCounts {
                    total,
                    available: total - occupied,
                    occupied,
                    ..SampleCounts::default()
                }
            };
            let sample = Sample {
                totals: scaled(view.totals.overall.total),
                zones: view
                    .zones
                    .iter()
                    .map(|z| (z.id.to_string(), scaled(z.counts.overall.total)))
                    .collect(),
            };
            samples.push((facility.clone(), parkme_engine::Millis(at), sample));
        }
    }
    if let Err(e) = app.node().record_history(samples).await {
        tracing::warn!(error = %e, "demo history not written");
    }
}

struct SimZone {
    facility: FacilityId,
    zone: ZoneId,
    spots: Vec<SpotId>,
}

async fn simulate(app: AppState) {
    let mut zones = Vec::new();
    for facility in app.node().facility_ids() {
        let Ok(view) = app.node().facility(&facility).await else {
            continue;
        };
        for zone in view.zones {
            let spots = app
                .node()
                .spots(&facility, &zone.id)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.id)
                .collect();
            zones.push(SimZone {
                facility: facility.clone(),
                zone: zone.id,
                spots,
            });
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = app.shutdown().cancelled() => break,
            _ = tick.tick() => {}
        }
        let batch = {
            let mut rng = rand::rng();
            let Some(zone) = zones.choose(&mut rng) else {
                break;
            };
            let readings: Vec<Reading> = if zone.spots.is_empty() {
                vec![Reading::Count {
                    zone: zone.zone.clone(),
                    delta: rng.random_range(-3..=3),
                }]
            } else {
                let mut readings = Vec::with_capacity(8);
                for _ in 0..8 {
                    if let Some(spot) = zone.spots.choose(&mut rng) {
                        readings.push(Reading::Spot {
                            spot: spot.clone(),
                            occupied: rng.random_bool(0.6),
                        });
                    }
                }
                readings
            };
            (zone.facility.clone(), readings)
        };
        let _ = app.node().sense(&batch.0, batch.1).await;
    }
}
