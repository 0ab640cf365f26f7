//! Supervision: a failing zone restarts from durable state while the rest
//! of its facility keeps serving.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parkme_engine::{BookingStatus, SpotState};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_zone_is_restarted_from_durable_state_and_the_facility_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 4), spot_zone("B", 4)]))
        .await
        .expect("facility");
    let in_a = book(&node, "f1", params(Some("A"))).await.expect("booked");
    let in_b = book(&node, "f1", params(Some("B"))).await.expect("booked");

    node.inject_zone_panic(&fid("f1"), &zid("A"))
        .expect("panic injected");
    // B keeps serving while A is down or restarting.
    let more_in_b = book(&node, "f1", params(Some("B")))
        .await
        .expect("B serves");
    assert_ne!(more_in_b.spot, in_b.spot);

    // A comes back with its booking.
    let after_restart = book_when_available(&node, "f1", "A").await;
    let held = in_a.spot.clone().expect("spot");
    let view = spot_view(&node, "f1", "A", &held).await;
    assert_eq!(view.state, SpotState::Reserved);
    assert_eq!(view.booking.as_ref(), Some(&in_a.id));
    assert_eq!(
        stored(&node, &in_a.id).await.status,
        BookingStatus::Confirmed
    );
    assert_ne!(
        after_restart.spot, in_a.spot,
        "the held spot is not handed out again"
    );

    // Filling A hands out each of its spots exactly once.
    let mut taken: HashSet<_> = [in_a.spot.clone(), after_restart.spot.clone()].into();
    loop {
        let result = book(&node, "f1", params(Some("A"))).await;
        if is_no_spot(&result) {
            break;
        }
        let booking = result.expect("booked or full");
        assert!(taken.insert(booking.spot.clone()), "spot handed out twice");
    }
    assert_eq!(taken.len(), 4);

    // The read model agrees with the zone after the restart.
    let view = node.facility(&fid("f1")).await.expect("view");
    assert_eq!(view.zones[0].counts.overall.reserved, 4);
    assert_eq!(view.zones[1].counts.overall.reserved, 2);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_panic_amid_bookings_loses_no_acknowledged_booking_and_leaks_no_spot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 210)]))
        .await
        .expect("facility");
    // Sixteen callers book one after another, so bookings are in flight
    // at any moment; the fortieth answer panics the zone. A caller retries
    // what is refused as retryable (the request did not happen), so every
    // caller ends up with all its bookings, none twice.
    let done = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..16 {
        let (handle, done) = (node.node().clone(), Arc::clone(&done));
        callers.push(tokio::spawn(async move {
            let mut booked = Vec::new();
            for _ in 0..12 {
                booked.push(book_when_available(&handle, "f1", "A").await);
                if done.fetch_add(1, Ordering::SeqCst) == 39 {
                    handle
                        .inject_zone_panic(&fid("f1"), &zid("A"))
                        .expect("panic injected");
                }
            }
            booked
        }));
    }
    let mut acknowledged = Vec::new();
    for caller in callers {
        acknowledged.extend(caller.await.expect("caller"));
    }
    assert_eq!(acknowledged.len(), 16 * 12);
    // What the restarted zone holds is exactly what was acknowledged.
    let held: HashSet<_> = spots(&node, "f1", "A")
        .await
        .into_iter()
        .filter(|s| s.state == SpotState::Reserved)
        .map(|s| (s.id, s.booking.expect("a reserved spot names its booking")))
        .collect();
    let acked: HashSet<_> = acknowledged
        .iter()
        .map(|b| (b.spot.clone().expect("spot"), b.id.clone()))
        .collect();
    assert_eq!(acked.len(), acknowledged.len(), "no spot handed out twice");
    assert_eq!(
        held, acked,
        "the zone holds exactly the acknowledged bookings"
    );
    for booking in &acknowledged {
        assert_eq!(
            stored(&node, &booking.id).await.status,
            BookingStatus::Confirmed
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_in_flight_when_its_zone_restarts_is_retryable_and_leaves_no_trace() {
    let (storage, mut gate) = crate::gated::gated();
    let node = TestNode::start(storage).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 1)]))
        .await
        .expect("facility");

    // The booking is decided and queued, but its commit is held.
    gate.close();
    let in_flight = {
        let handle = node.node().clone();
        tokio::spawn(async move { book(&handle, "f1", params(Some("A"))).await })
    };
    gate.held(1).await;

    // The zone restarts meanwhile: the new incarnation recovers without
    // the held write and fences it.
    node.inject_zone_panic(&fid("f1"), &zid("A"))
        .expect("panic injected");
    poll_until("zone A is back", || async {
        // A no-op command needs no commit: it answers once A is back.
        node.set_service(&fid("f1"), &spot_of("A", 0), false)
            .await
            .ok()
    })
    .await;
    gate.open();

    let refused = in_flight.await.expect("task");
    let error = refused.expect_err("a fenced write is never acknowledged");
    assert!(error.is_retryable(), "got {error:?}");
    assert_eq!(
        spot_view(&node, "f1", "A", &spot_of("A", 0)).await.state,
        SpotState::Available,
        "the refused booking holds nothing"
    );
    // The retry succeeds, on the one spot.
    let retried = book(&node, "f1", params(Some("A"))).await.expect("booked");
    assert_eq!(retried.spot, Some(spot_of("A", 0)));
    node.stop().await;
}
