//! Durability promises on the embedded backend: an acknowledged booking
//! survives a crash, a data dir has one owner, the facility seq survives a
//! restart, and a graceful stop leaves snapshots behind.

use std::sync::Arc;

use parkme_engine::{BookingStatus, EngineError, SpotState};
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::{Storage, ZoneKey};

use crate::helpers::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The first node lives in its own runtime, which is dropped right after
/// `book` returns: no graceful stop, no final snapshot, no checkpoint
/// beyond what already ran — the closest an in-process test gets to
/// `kill -9`. Dropping the runtime drops every task, so the data dir's
/// lock must be free again.
#[test]
fn a_booking_is_acknowledged_only_once_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crashed = runtime();
    let (spot_booking, counter_booking) = crashed.block_on(async {
        let node = TestNode::embedded(dir.path()).await;
        node.put_facility(facility(
            "f1",
            vec![spot_zone("A", 3), counter_zone("C", 2)],
        ))
        .await
        .expect("facility");
        let spot_booking = book(&node, "f1", params(Some("A"))).await.expect("booked");
        let counter_booking = book(&node, "f1", params(Some("C"))).await.expect("booked");
        // No `stop`: dropping the handle leaves every actor running until
        // the runtime's drop kills them mid-flight.
        drop(node);
        (spot_booking, counter_booking)
    });
    drop(crashed);

    let recovered = runtime();
    recovered.block_on(async {
        let node = TestNode::embedded(dir.path()).await;
        for booking in [&spot_booking, &counter_booking] {
            let found = stored(&node, &booking.id).await;
            assert_eq!(&found, booking, "the acknowledged booking is recovered");
            assert_eq!(found.status, BookingStatus::Confirmed);
        }
        let spot = spot_booking.spot.clone().expect("spot");
        let view = spot_view(&node, "f1", "A", &spot).await;
        assert_eq!(view.state, SpotState::Reserved);
        assert_eq!(view.booking.as_ref(), Some(&spot_booking.id));
        let counter = node.facility(&fid("f1")).await.expect("view").zones[1].clone();
        assert_eq!(counter.counts.overall.reserved, 1);

        // The recovered hold still excludes everyone else from that spot.
        let mut p = params(None);
        p.spot = Some(spot);
        assert!(matches!(
            book(&node, "f1", p).await,
            Err(parkme_actors::ActorError::Engine(
                EngineError::SpotNotAvailable(_)
            ))
        ));
        node.stop().await;
    });
}

/// Snapshots every few events, so recovery reads a snapshot plus a
/// journal tail; the crash is again a dropped runtime.
#[test]
fn a_crash_recovers_exactly_the_acknowledged_state_from_snapshots_and_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = parkme_actors::NodeConfig {
        snapshot_every: 3,
        ..Default::default()
    };
    let open = |config: parkme_actors::NodeConfig| {
        let storage = EmbeddedStorage::open(dir.path()).expect("open embedded storage");
        TestNode::start_with(Arc::new(storage), config)
    };
    let crashed = runtime();
    let (before, seq, bookings) = crashed.block_on(async {
        let node = open(config.clone()).await;
        node.put_facility(facility(
            "f1",
            vec![spot_zone("A", 6), counter_zone("C", 4)],
        ))
        .await
        .expect("facility");
        let mut bookings = Vec::new();
        for zone in ["A", "A", "A", "C", "C", "A"] {
            bookings.push(book(&node, "f1", params(Some(zone))).await.expect("booked"));
        }
        node.cancel(&bookings[1]).await.expect("cancelled");
        let first = bookings[0].spot.clone().expect("spot");
        sense(&node, "f1", vec![spot_reading(&first, true)]).await;
        sense(&node, "f1", vec![spot_reading(&spot_of("A", 5), true)]).await;
        sense(
            &node,
            "f1",
            vec![
                parkme_engine::Reading::Count {
                    zone: zid("C"),
                    delta: 1,
                },
                plate_reading("AB-123", parkme_engine::PlateDirection::In),
            ],
        )
        .await;
        let view = node.facility(&fid("f1")).await.expect("view");
        let mut bookings_now = Vec::new();
        for booking in &bookings {
            bookings_now.push(stored(&node, &booking.id).await);
        }
        (
            (view.zones, spot_states(&node, "f1").await),
            view.seq,
            bookings_now,
        )
    });
    drop(crashed);

    let recovered = runtime();
    recovered.block_on(async {
        let node = open(config).await;
        let view = node.facility(&fid("f1")).await.expect("view");
        assert_eq!((view.zones, spot_states(&node, "f1").await), before);
        assert!(view.seq >= seq);
        for booking in &bookings {
            assert_eq!(&stored(&node, &booking.id).await, booking);
        }
        node.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = TestNode::embedded(dir.path()).await;
    assert!(
        EmbeddedStorage::open(dir.path()).is_err(),
        "a second opener must be refused while the first node runs"
    );
    first.stop().await;
    // Once the first node is gone the directory can be opened again.
    EmbeddedStorage::open(dir.path()).expect("the lock is released after a graceful stop");
}

#[tokio::test]
async fn the_facility_seq_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 4), spot_zone("B", 4)]))
        .await
        .expect("facility");
    let booking = book(&node, "f1", params(Some("A"))).await.expect("booked");
    let spot = booking.spot.clone().expect("spot");
    sense(&node, "f1", vec![spot_reading(&spot, true)]).await;
    // A layout change moves the base of the seq.
    node.put_facility(facility("f1", vec![spot_zone("A", 5)]))
        .await
        .expect("relayout");
    book(&node, "f1", params(Some("A"))).await.expect("booked");
    // A zone tells its facility before it answers, so the view already
    // holds every acknowledged change.
    let before = node.facility(&fid("f1")).await.expect("view").seq;
    node.stop().await;

    let node = TestNode::embedded(dir.path()).await;
    let after = node.facility(&fid("f1")).await.expect("view").seq;
    assert!(
        after >= before,
        "seq went back across a restart: {before} -> {after}"
    );
    // And it keeps increasing from there.
    book(&node, "f1", params(Some("A"))).await.expect("booked");
    assert!(node.facility(&fid("f1")).await.expect("view").seq > after);
    node.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_leaves_a_snapshot_of_every_zone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    node.put_facility(facility(
        "f1",
        vec![spot_zone("A", 2), counter_zone("C", 2)],
    ))
    .await
    .expect("facility");
    book(&node, "f1", params(Some("A"))).await.expect("booked");
    book(&node, "f1", params(Some("C"))).await.expect("booked");
    node.stop().await;

    let storage = Arc::new(EmbeddedStorage::open(dir.path()).expect("reopen"));
    for zone in ["A", "C"] {
        let key = ZoneKey::new(fid("f1"), zid(zone));
        let (seq, _) = storage
            .latest_snapshot(&key)
            .await
            .expect("read snapshot")
            .unwrap_or_else(|| panic!("zone {zone} wrote no snapshot on stop"));
        assert!(seq.0 >= 1);
        assert!(
            storage
                .read_events(&key, seq)
                .await
                .expect("journal")
                .is_empty(),
            "zone {zone}: the snapshot covers the whole journal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_booking_is_answered_or_shown_before_its_commit_is_durable() {
    let (storage, mut gate) = crate::gated::gated();
    let node = TestNode::start(storage).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 2)]))
        .await
        .expect("facility");

    gate.close();
    let pending = {
        let handle = node.node().clone();
        tokio::spawn(async move { book(&handle, "f1", params(Some("A"))).await })
    };
    gate.held(1).await;
    // A negative can only be checked for a while: 100 ms with the commit
    // held is plenty for an answer that should not come at all.
    let early = tokio::time::timeout(std::time::Duration::from_millis(100), async {
        while !pending.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "book answered before its commit was durable"
    );
    let view = node.facility(&fid("f1")).await.expect("view");
    assert_eq!(
        view.totals.overall.available, 2,
        "readers never see a change that is not durable"
    );

    gate.open();
    let booking = pending.await.expect("task").expect("booked once durable");
    assert_eq!(stored(&node, &booking.id).await, booking);
    assert_eq!(
        node.facility(&fid("f1"))
            .await
            .expect("view")
            .totals
            .overall
            .reserved,
        1
    );
    node.stop().await;
}
