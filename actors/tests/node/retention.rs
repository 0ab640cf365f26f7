//! Ended bookings are forgotten once their retention has passed and live
//! ones are kept, on virtual time: the node runs the store's upkeep at
//! start and then every `upkeep_every` of tokio's (paused) clock.

use std::sync::Arc;
use std::time::Duration;

use parkme_actors::NodeConfig;
use parkme_engine::{BookingId, BookingStatus};
use parkme_storage::memory::MemoryStorage;

use crate::helpers::*;

const HOUR: Duration = Duration::from_secs(3600);

async fn is_forgotten(node: &TestNode, id: &BookingId) -> bool {
    node.booking(id).await.expect("lookup").is_none()
}

#[tokio::test(start_paused = true)]
async fn ended_bookings_are_forgotten_after_the_retention_and_live_ones_are_kept() {
    let config = NodeConfig {
        booking_retention_days: 1,
        upkeep_every: HOUR,
        ..NodeConfig::default()
    };
    let node = TestNode::start_with(Arc::new(MemoryStorage::new()), config).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 3)]))
        .await
        .expect("facility created");
    let cancelled = book(&node, "f1", params(Some("A"))).await.expect("booked");
    node.cancel(&cancelled).await.expect("cancelled");
    let mut day_long = params(Some("A"));
    day_long.hold_seconds = 86_400;
    let held = book(&node, "f1", day_long).await.expect("booked");

    // Almost a day after it ended, the cancelled booking is still known.
    tokio::time::advance(23 * HOUR).await;
    tokio::task::yield_now().await;
    assert!(!is_forgotten(&node, &cancelled.id).await);

    // Past the retention, the next upkeep forgets it; the other one has
    // just expired (ended now), so it stays for another day.
    tokio::time::advance(2 * HOUR).await;
    poll_until("the cancelled booking is forgotten", || async {
        is_forgotten(&node, &cancelled.id).await.then_some(())
    })
    .await;
    let expired = stored(&node, &held.id).await;
    assert_eq!(expired.status, BookingStatus::Expired);

    tokio::time::advance(24 * HOUR).await;
    poll_until("the expired booking is forgotten", || async {
        is_forgotten(&node, &held.id).await.then_some(())
    })
    .await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_live_booking_is_never_forgotten() {
    let config = NodeConfig {
        booking_retention_days: 1,
        upkeep_every: HOUR,
        ..NodeConfig::default()
    };
    let node = TestNode::start_with(Arc::new(MemoryStorage::new()), config).await;
    node.put_facility(facility("f1", vec![counter_zone("C", 5)]))
        .await
        .expect("facility created");
    let mut p = params(Some("C"));
    p.hold_seconds = 86_400;
    let booking = book(&node, "f1", p).await.expect("booked");
    // Entering turns it ACTIVE: live for as long as the car stays.
    sense(
        &node,
        "f1",
        vec![plate_reading("AB-123", parkme_engine::PlateDirection::In)],
    )
    .await;
    until_status(&node, &booking.id, BookingStatus::Active).await;
    tokio::time::advance(30 * 24 * HOUR).await;
    tokio::task::yield_now().await;
    for _ in 0..3 {
        tokio::time::advance(HOUR).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Active
    );
    node.stop().await;
}
