//! Booking promises: no double booking under concurrency, never a booking
//! on an occupied or out-of-service spot, cancellation, idempotent retries.

use std::collections::HashSet;

use parkme_actors::{ActorError, Booked};
use parkme_engine::{BookingStatus, EngineError, SpotState};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_never_share_a_spot() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 25), spot_zone("B", 25)])).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let node = node.node().clone();
        let mut p = params(None);
        p.plate = plate(&format!("CAR-{i}"));
        tasks.push(tokio::spawn(async move { book(&node, "f1", p).await }));
    }
    let mut booked = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let result = task.await.expect("booking task");
        if is_no_spot(&result) {
            refused += 1;
        } else {
            booked.push(result.expect("booked or no_spot_available"));
        }
    }
    assert_eq!(booked.len(), 50, "every spot is booked once");
    assert_eq!(refused, 150, "the rest get no_spot_available");
    let distinct: HashSet<_> = booked
        .iter()
        .map(|b| b.spot.clone().expect("spot zones hand out spots"))
        .collect();
    assert_eq!(distinct.len(), 50, "no spot is handed out twice");

    let states = spot_states(&node, "f1").await;
    for booking in &booked {
        let spot = &states[booking.spot.as_ref().expect("spot")];
        assert_eq!(spot.state, SpotState::Reserved);
        assert_eq!(spot.booking.as_ref(), Some(&booking.id));
    }
    let view = node.facility(&fid("f1")).await.expect("view");
    assert_eq!(view.totals.overall.reserved, 50);
    assert_eq!(view.totals.overall.available, 0);
}

#[tokio::test]
async fn no_booking_lands_on_an_occupied_or_out_of_service_spot() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 2)])).await;
    let (occupied, broken) = (spot_of("A", 0), spot_of("A", 1));
    sense(&node, "f1", vec![spot_reading(&occupied, true)]).await;
    node.set_service(&fid("f1"), &broken, true)
        .await
        .expect("out of service");

    for spot in [&occupied, &broken] {
        let mut p = params(None);
        p.spot = Some(spot.clone());
        let result = book(&node, "f1", p).await;
        assert!(
            matches!(
                result,
                Err(ActorError::Engine(EngineError::SpotNotAvailable(_)))
            ),
            "booking {spot} must be refused, got {result:?}"
        );
    }
    assert!(is_no_spot(&book(&node, "f1", params(None)).await));
    assert!(is_no_spot(&book(&node, "f1", params(Some("A"))).await));
}

#[tokio::test]
async fn only_a_confirmed_booking_can_be_cancelled_and_cancelling_frees_its_spot() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 1)])).await;
    let booking = book(&node, "f1", params(None)).await.expect("booked");
    let spot = booking.spot.clone().expect("spot");

    let cancelled = node.cancel(&booking).await.expect("cancelled");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Cancelled
    );
    until_spot(&node, "f1", "A", &spot, SpotState::Available).await;

    let again = node.cancel(&booking).await;
    assert!(
        matches!(
            again,
            Err(ActorError::Engine(EngineError::InvalidTransition(
                BookingStatus::Cancelled
            )))
        ),
        "a second cancel is a conflict, got {again:?}"
    );

    // An active booking cannot be cancelled either.
    let active = book(&node, "f1", params(None)).await.expect("booked");
    sense(&node, "f1", vec![spot_reading(&spot, true)]).await;
    until_status(&node, &active.id, BookingStatus::Active).await;
    assert!(matches!(
        node.cancel(&active).await,
        Err(ActorError::Engine(EngineError::InvalidTransition(
            BookingStatus::Active
        )))
    ));
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_same_booking() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 5)])).await;
    let mut p = params(None);
    p.idempotency_key = Some("retry-1".into());
    let first = match node.book(&fid("f1"), p.clone()).await.expect("booked") {
        Booked::Created(b) => b,
        Booked::Replayed(b) => panic!("first call replayed {b:?}"),
    };
    let second = match node.book(&fid("f1"), p.clone()).await.expect("replayed") {
        Booked::Replayed(b) => b,
        Booked::Created(b) => panic!("a retry created a second booking {b:?}"),
    };
    assert_eq!(first, second);
    let reserved = spots(&node, "f1", "A")
        .await
        .into_iter()
        .filter(|s| s.state == SpotState::Reserved)
        .count();
    assert_eq!(reserved, 1, "a retry holds no second spot");

    // The key is scoped to its owner.
    p.owner = parkme_engine::UserId::parse("driver-2").expect("user");
    let other = node.book(&fid("f1"), p).await.expect("booked");
    assert!(matches!(other, Booked::Created(b) if b.id != first.id));
}
