//! The sensor side of the booking lifecycle: spot sensors, gate plate
//! reads and entry/exit counts.

use parkme_actors::ActorError;
use parkme_engine::Reading;
use parkme_engine::{BookingStatus, PlateDirection, SpotState};

use crate::helpers::*;

fn count(zone: &str, delta: i32) -> Reading {
    Reading::Count {
        zone: zid(zone),
        delta,
    }
}

async fn counter_counts(node: &TestNode, zone: usize) -> parkme_engine::Counts {
    node.facility(&fid("f1")).await.expect("view").zones[zone]
        .counts
        .overall
}

#[tokio::test]
async fn a_held_spot_reported_occupied_activates_its_booking_and_vacating_completes_it() {
    let node = TestNode::memory_with(facility("f1", vec![spot_zone("A", 2)])).await;
    let booking = book(&node, "f1", params(None)).await.expect("booked");
    let spot = booking.spot.clone().expect("spot");

    sense(&node, "f1", vec![spot_reading(&spot, true)]).await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Active
    );
    let view = spot_view(&node, "f1", "A", &spot).await;
    assert_eq!(view.state, SpotState::Occupied);

    // Re-sending a state already in place is harmless.
    sense(&node, "f1", vec![spot_reading(&spot, true)]).await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Active
    );

    sense(&node, "f1", vec![spot_reading(&spot, false)]).await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Completed
    );
    let view = spot_view(&node, "f1", "A", &spot).await;
    assert_eq!(view.state, SpotState::Available);
    assert_eq!(view.booking, None);
}

#[tokio::test]
async fn a_plate_read_activates_a_counter_booking_and_its_exit_completes_it() {
    let node = TestNode::memory_with(facility("f1", vec![counter_zone("C", 3)])).await;
    let mut p = params(None);
    p.plate = plate("GATE-1");
    let booking = book(&node, "f1", p).await.expect("booked");
    assert_eq!(booking.spot, None, "a counter booking holds no spot");
    assert_eq!(counter_counts(&node, 0).await.reserved, 1);

    // Another car's plate changes nothing.
    sense(
        &node,
        "f1",
        vec![plate_reading("OTHER-9", PlateDirection::In)],
    )
    .await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Confirmed
    );

    sense(
        &node,
        "f1",
        vec![plate_reading("gate-1", PlateDirection::In)],
    )
    .await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Active
    );
    assert_eq!(counter_counts(&node, 0).await.reserved, 0);

    sense(
        &node,
        "f1",
        vec![plate_reading("GATE-1", PlateDirection::Out)],
    )
    .await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Completed
    );
}

#[tokio::test]
async fn counts_alone_never_activate_a_counter_booking() {
    let node = TestNode::memory_with(facility("f1", vec![counter_zone("C", 3)])).await;
    let booking = book(&node, "f1", params(None)).await.expect("booked");
    sense(&node, "f1", vec![count("C", 1), count("C", 1)]).await;
    assert_eq!(
        stored(&node, &booking.id).await.status,
        BookingStatus::Confirmed
    );
    let counts = counter_counts(&node, 0).await;
    assert_eq!(
        (counts.occupied, counts.reserved, counts.available),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn a_counter_zone_clamps_at_zero_and_capacity() {
    let node = TestNode::memory_with(facility("f1", vec![counter_zone("C", 3)])).await;
    sense(&node, "f1", vec![count("C", -5)]).await;
    let counts = counter_counts(&node, 0).await;
    assert_eq!((counts.occupied, counts.available), (0, 3));

    book(&node, "f1", params(None)).await.expect("booked");
    sense(&node, "f1", vec![count("C", 10)]).await;
    let counts = counter_counts(&node, 0).await;
    assert_eq!(
        (
            counts.total,
            counts.occupied,
            counts.reserved,
            counts.available
        ),
        (3, 3, 1, 0),
        "occupied stops at capacity and available never goes below 0"
    );
    assert!(is_no_spot(&book(&node, "f1", params(None)).await));

    sense(&node, "f1", vec![count("C", -1)]).await;
    let counts = counter_counts(&node, 0).await;
    assert_eq!((counts.occupied, counts.available), (2, 0));
    sense(&node, "f1", vec![count("C", -1)]).await;
    assert_eq!(counter_counts(&node, 0).await.available, 1);
}

#[tokio::test]
async fn unknown_spots_and_zones_are_refused_per_reading() {
    let node = TestNode::memory_with(facility(
        "f1",
        vec![spot_zone("A", 1), counter_zone("C", 1)],
    ))
    .await;
    let results = node
        .sense(
            &fid("f1"),
            vec![
                spot_reading(&sid("nope"), true),
                spot_reading(&spot_of("A", 0), true),
                count("nope", 1),
                count("A", 1),
                Reading::Heartbeat {
                    sensor: String::new(),
                },
            ],
        )
        .await
        .expect("facility exists");
    assert!(results[0].is_err());
    assert!(results[1].is_ok());
    assert!(matches!(results[2], Err(ActorError::UnknownZone(_))));
    assert!(results[3].is_err(), "a count for a spot zone is refused");
    assert!(results[4].is_ok());
    assert_eq!(
        spot_view(&node, "f1", "A", &spot_of("A", 0)).await.state,
        SpotState::Occupied
    );
}
