//! Hold expiry on virtual time: the node's clock is built on tokio's
//! `Instant`, so `tokio::time::pause` + `advance` drive it.

use std::time::Duration;

use parkme_engine::{BookingStatus, SpotState};

use crate::helpers::*;

async fn held_for_60_seconds(node: &TestNode) -> parkme_engine::Booking {
    let mut p = params(Some("A"));
    p.hold_seconds = 60;
    let booking = book(node, "f1", p).await.expect("booked");
    assert_eq!(
        booking.expires_at.0 - booking.created_at.0,
        60_000,
        "expires_at is created_at + hold_seconds"
    );
    booking
}

async fn expires_at_expires_at(node: &TestNode) {
    let booking = held_for_60_seconds(node).await;
    let spot = booking.spot.clone().expect("spot");

    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        stored(node, &booking.id).await.status,
        BookingStatus::Confirmed
    );
    assert_eq!(
        spot_view(node, "f1", "A", &spot).await.state,
        SpotState::Reserved
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    // Due now; the zone's timer fires within a few milliseconds.
    let expired = poll_within(Duration::from_millis(100), "the hold expired", || async {
        let found = stored(node, &booking.id).await;
        (found.status == BookingStatus::Expired).then_some(found)
    })
    .await;
    assert!(expired.updated_at >= booking.expires_at);
    assert!(expired.updated_at.0 - booking.expires_at.0 < 100);
    until_spot(node, "f1", "A", &spot, SpotState::Available).await;
    assert_eq!(
        node.facility(&fid("f1"))
            .await
            .expect("view")
            .totals
            .overall
            .available,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn holds_expire_at_expires_at() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 2)])).await;
    expires_at_expires_at(&node).await;
    node.stop().await;
}

/// The same promise on the embedded backend, whose I/O runs on tokio's
/// blocking pool: paused time must not run ahead while a commit is on a
/// blocking thread.
#[tokio::test(start_paused = true)]
async fn holds_expire_at_expires_at_on_the_embedded_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 2)]))
        .await
        .expect("facility");
    expires_at_expires_at(&node).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_or_activated_hold_never_expires() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 2)])).await;
    let cancelled = held_for_60_seconds(&node).await;
    node.cancel(&cancelled).await.expect("cancelled");
    let active = held_for_60_seconds(&node).await;
    let spot = active.spot.clone().expect("spot");
    sense(&node, "f1", vec![spot_reading(&spot, true)]).await;

    tokio::time::advance(Duration::from_secs(120)).await;
    // Give a (wrong) timer every chance to fire.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stored(&node, &cancelled.id).await.status,
        BookingStatus::Cancelled
    );
    assert_eq!(
        stored(&node, &active.id).await.status,
        BookingStatus::Active
    );
    assert_eq!(
        spot_view(&node, "f1", "A", &spot).await.state,
        SpotState::Occupied
    );
    node.stop().await;
}
