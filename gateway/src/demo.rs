//! `serve --demo`: a built-in demo city (20 facilities, 50,000 spots) loaded
//! when storage is empty, and a sensor simulator that keeps occupancy
//! moving so the dashboard has something to show.
//!
//! The simulator goes through the same node API as real sensors; it must
//! never touch state directly.

use std::time::Duration;

use parkme_actors::SensorReading;
use parkme_engine::{
    FacilityId, FacilityLayout, Location, SpotId, SpotKind, SpotLayout, ZoneId, ZoneLayout,
    ZoneShape,
};
use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::task::JoinHandle;

use crate::app::AppState;

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
                        reservable: 0,
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
                reservable: 0,
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
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "demo city loaded"
        );
    }
    vec![tokio::spawn(simulate(app.clone()))]
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
            let readings: Vec<SensorReading> = if zone.spots.is_empty() {
                vec![SensorReading::Count {
                    zone: zone.zone.clone(),
                    delta: rng.random_range(-3..=3),
                }]
            } else {
                let mut readings = Vec::with_capacity(8);
                for _ in 0..8 {
                    if let Some(spot) = zone.spots.choose(&mut rng) {
                        readings.push(SensorReading::Spot {
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
