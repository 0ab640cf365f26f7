//! Layout changes racing the commands of the zones they change: a layout
//! is replaced all at once or not at all, whatever arrives meanwhile.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parkme_actors::{ActorError, Node};
use parkme_engine::{BookingId, EngineError, FacilityLayout, SpotId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::helpers::*;

/// The layouts a facility moves between: spots added and dropped, a zone
/// added and removed, a spot zone becoming a counter zone and back.
pub fn race_layouts() -> Vec<FacilityLayout> {
    vec![
        facility("f1", vec![spot_zone("A", 6), spot_zone("B", 6)]),
        facility("f1", vec![spot_zone("A", 9), spot_zone("B", 6)]),
        facility(
            "f1",
            vec![spot_zone("A", 3), spot_zone("B", 8), spot_zone("C", 4)],
        ),
        facility("f1", vec![spot_zone("A", 9), spot_zone("C", 2)]),
        facility("f1", vec![spot_zone("B", 4), counter_zone("D", 3)]),
    ]
}

/// Every spot id any of `layouts` declares.
pub fn every_spot(layouts: &[FacilityLayout]) -> Vec<SpotId> {
    let all: BTreeSet<SpotId> = layouts
        .iter()
        .flat_map(declared)
        .flat_map(|(_, spots)| spots)
        .collect();
    all.into_iter().collect()
}

/// One random command of the kind a layout change competes with: a
/// booking by spot id or by zone, a cancellation, a reading, a service
/// toggle. Refusals are expected (the spot may be gone or taken); only
/// the bookings that were made matter.
async fn random_command(
    node: &Node,
    rng: &mut StdRng,
    universe: &[SpotId],
    booked: &Mutex<Vec<parkme_engine::Booking>>,
) {
    let spot = universe[rng.random_range(0..universe.len())].clone();
    match rng.random_range(0..6) {
        0 | 1 => {
            let mut p = params(None);
            p.spot = Some(spot);
            if let Ok(booking) = book(node, "f1", p).await {
                booked.lock().await.push(booking);
            }
        }
        2 => {
            let zone = ["A", "B", "C", "D"][rng.random_range(0..4)];
            if let Ok(booking) = book(node, "f1", params(Some(zone))).await {
                booked.lock().await.push(booking);
            }
        }
        3 => {
            let victim = {
                let list = booked.lock().await;
                (!list.is_empty()).then(|| list[rng.random_range(0..list.len())].clone())
            };
            if let Some(victim) = victim {
                let _ = node.cancel(&victim).await;
            }
        }
        4 => {
            let _ = node
                .sense(&fid("f1"), vec![spot_reading(&spot, rng.random_bool(0.5))])
                .await;
        }
        _ => {
            let _ = node
                .set_service(&fid("f1"), &spot, rng.random_bool(0.3))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_changes_racing_bookings_never_leave_a_partial_layout() {
    let layouts = race_layouts();
    let universe = Arc::new(every_spot(&layouts));
    let node = TestNode::memory_with(layouts[0].clone()).await;
    let booked = Arc::new(Mutex::new(Vec::new()));
    let mut current = layouts[0].clone();
    let mut seed_rng = StdRng::seed_from_u64(0x1a70);
    let (mut applied, mut refused) = (0, 0);
    for round in 0..120 {
        let target = layouts[(round * 3 + 1) % layouts.len()].clone();
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..6 {
            let (node, universe, booked, stop) = (
                node.node().clone(),
                Arc::clone(&universe),
                Arc::clone(&booked),
                Arc::clone(&stop),
            );
            let mut rng = StdRng::seed_from_u64(seed_rng.random());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    random_command(&node, &mut rng, &universe, &booked).await;
                }
            }));
        }
        // Let the workers get going, then change the layout under them.
        tokio::task::yield_now().await;
        let result = node.put_facility(target.clone()).await;
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.await.expect("worker");
        }
        match result {
            Ok(_) => {
                applied += 1;
                current = target;
            }
            Err(ActorError::Engine(
                EngineError::SpotHasLiveBooking(_) | EngineError::ZoneHasLiveBooking(_),
            )) => refused += 1,
            Err(e) => panic!("round {round}: the layout change failed: {e}"),
        }
        let ids: Vec<BookingId> = booked.lock().await.iter().map(|b| b.id.clone()).collect();
        assert_serves(&node, "f1", &current, &universe, &ids).await;
        // Free most spots again so that later changes can drop them.
        let list: Vec<_> = booked.lock().await.drain(..).collect();
        for (i, booking) in list.into_iter().enumerate() {
            if i % 4 != 0 {
                let _ = node.cancel(&booking).await;
            } else {
                booked.lock().await.push(booking);
            }
        }
    }
    assert!(
        applied > 0 && refused > 0,
        "applied {applied}, refused {refused}"
    );
    node.stop().await;
}
