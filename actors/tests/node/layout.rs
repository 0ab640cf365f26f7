//! Layout replacement: refused as a whole when it would drop a live
//! booking; otherwise applied with the facility seq moving forward and
//! readers kept in step.

use parkme_actors::{ActorError, Start};
use parkme_engine::{EngineError, SpotState};

use crate::helpers::*;
use crate::subscriptions::Replica;

#[tokio::test]
async fn a_layout_that_drops_a_booked_spot_is_refused_and_changes_nothing() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 3), spot_zone("B", 3)])).await;
    let mut p = params(None);
    p.spot = Some(spot_of("B", 1));
    let booking = book(&node, "f1", p).await.expect("booked");
    let view_before = node.facility(&fid("f1")).await.expect("view");
    let spots_before = spot_states(&node, "f1").await;

    // Grows A but drops B-001, which is held.
    let mut b = spot_zone("B", 3);
    if let parkme_engine::ZoneShape::Spots(spots) = &mut b.shape {
        spots.retain(|s| s.id != spot_of("B", 1));
    }
    let refused = node
        .put_facility(facility("f1", vec![spot_zone("A", 5), b]))
        .await;
    assert!(
        matches!(refused, Err(ActorError::Engine(EngineError::SpotHasLiveBooking(ref s))) if *s == spot_of("B", 1)),
        "got {refused:?}"
    );
    // Dropping the whole zone is refused the same way.
    let refused = node
        .put_facility(facility("f1", vec![spot_zone("A", 5)]))
        .await;
    assert!(matches!(
        refused,
        Err(ActorError::Engine(EngineError::SpotHasLiveBooking(_)))
    ));

    assert_eq!(node.facility(&fid("f1")).await.expect("view"), view_before);
    assert_eq!(spot_states(&node, "f1").await, spots_before);
    assert_eq!(
        spot_view(&node, "f1", "B", &spot_of("B", 1)).await.booking,
        Some(booking.id)
    );
    // A did not grow behind the refusal.
    let mut p = params(None);
    p.spot = Some(spot_of("A", 4));
    assert!(matches!(
        book(&node, "f1", p).await,
        Err(ActorError::Engine(EngineError::UnknownSpot(_)))
    ));
}

#[tokio::test]
async fn adding_and_removing_zones_keeps_the_facility_seq_strictly_increasing() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 2), spot_zone("B", 2)])).await;
    book(&node, "f1", params(Some("A"))).await.expect("booked");
    let mut sub = node.subscribe(&fid("f1"), None).await.expect("subscribed");
    assert!(matches!(sub.start, Start::Snapshot(_)));
    let mut replica = Replica::default();
    replica.start(&sub.start);

    let layouts = [
        // Add a spot zone and a counter zone.
        vec![
            spot_zone("A", 2),
            spot_zone("B", 2),
            spot_zone("C", 3),
            counter_zone("D", 5),
        ],
        // Remove B (nothing booked there), grow A.
        vec![spot_zone("A", 4), spot_zone("C", 3), counter_zone("D", 5)],
        // Remove the counter zone, shrink C.
        vec![spot_zone("A", 4), spot_zone("C", 1)],
    ];
    let mut last = node.facility(&fid("f1")).await.expect("view").seq;
    for layout in layouts {
        let zones: Vec<_> = layout.iter().map(|z| z.id.clone()).collect();
        let (view, created) = node
            .put_facility(facility("f1", layout))
            .await
            .expect("relayout");
        assert!(!created);
        assert!(view.seq > last, "seq {} after {last}", view.seq);
        last = view.seq;
        let now = node.facility(&fid("f1")).await.expect("view");
        assert!(now.seq >= last);
        last = now.seq;
        assert_eq!(
            now.zones.iter().map(|z| z.id.clone()).collect::<Vec<_>>(),
            zones
        );

        // Readers following deltas arrive at the same state. (A layout
        // delta is marked `relaid`, telling readers to drop what is no
        // longer listed, as a fresh snapshot would.)
        replica.follow_to(&mut sub, last).await;
        replica.zones.retain(|id, _| zones.contains(id));
        replica.spots.retain(|_, s| zones.contains(&s.zone));
        replica.assert_matches(&node, "f1").await;
    }

    // What was added serves; what was removed is gone.
    let in_c = book(&node, "f1", params(Some("C"))).await.expect("booked");
    assert_eq!(in_c.spot, Some(spot_of("C", 0)));
    assert!(matches!(
        book(&node, "f1", params(Some("B"))).await,
        Err(ActorError::UnknownZone(_))
    ));
    assert!(node.facility(&fid("f1")).await.expect("view").seq > last);
    until_spot(&node, "f1", "C", &spot_of("C", 0), SpotState::Reserved).await;
}

#[tokio::test]
async fn a_zone_removed_and_declared_again_starts_afresh_from_its_new_layout() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 2), spot_zone("B", 2)])).await;
    // B gets a history, but nothing live.
    let booking = book(&node, "f1", params(Some("B"))).await.expect("booked");
    node.cancel(&booking).await.expect("cancelled");
    sense(&node, "f1", vec![spot_reading(&spot_of("B", 1), true)]).await;

    node.put_facility(facility("f1", vec![spot_zone("A", 2)]))
        .await
        .expect("B removed");
    let mut again = spot_zone("B", 3);
    again.name = "zone B, rebuilt".into();
    node.put_facility(facility("f1", vec![spot_zone("A", 2), again]))
        .await
        .expect("B declared again");

    let view = node.facility(&fid("f1")).await.expect("view");
    assert_eq!(view.zones[1].name, "zone B, rebuilt");
    assert_eq!(view.zones[1].counts.overall.total, 3);
    assert_eq!(view.zones[1].counts.overall.available, 3);
    let spots = spots(&node, "f1", "B").await;
    assert_eq!(spots.len(), 3);
    assert!(spots.iter().all(|s| s.state == SpotState::Available));
    let mut p = params(None);
    p.spot = Some(spot_of("B", 2));
    book(&node, "f1", p)
        .await
        .expect("the new spot is bookable");
}
