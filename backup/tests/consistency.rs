//! The consistency rules of a restore (crate docs), on stores whose
//! booking records lag or contradict their zones, as CQL's can: the
//! zone's own state always wins, and a restored spot and its booking
//! always agree.

use std::sync::Arc;

use parkme_actors::{BookParams, Node, NodeConfig};
use parkme_backup::{ExportOptions, FileWriter, Silent};
use parkme_engine::codec;
use parkme_engine::{
    Booking, BookingId, BookingStatus, FacilityId, FacilityLayout, Plate, SpotId, SpotKind,
    SpotLayout, SpotState, UserId, ZoneId, ZoneLayout, ZoneShape,
};
use parkme_storage::Storage;
use parkme_storage::Write;
use parkme_storage::memory::MemoryStorage;

fn id<T>(parse: fn(&str) -> Result<T, parkme_engine::IdError>, value: &str) -> T {
    parse(value).expect("a valid id")
}

fn garage() -> FacilityLayout {
    FacilityLayout {
        id: id(FacilityId::parse, "f1"),
        name: "F1".into(),
        timezone: "UTC".into(),
        location: None,
        zones: vec![ZoneLayout {
            id: id(ZoneId::parse, "z"),
            name: "z".into(),
            shape: ZoneShape::Spots(
                (1..=4)
                    .map(|i| SpotLayout {
                        id: id(SpotId::parse, &format!("s{i}")),
                        kind: SpotKind::Standard,
                    })
                    .collect(),
            ),
            reservable: 0,
        }],
    }
}

async fn book(node: &Node, plate: &str) -> Booking {
    let params = BookParams {
        owner: id(UserId::parse, "u1"),
        plate: id(Plate::parse, plate),
        zone: None,
        kind: None,
        spot: None,
        hold_seconds: 3600,
        starts_at: None,
        ends_at: None,
        idempotency_key: None,
    };
    match node.book(&id(FacilityId::parse, "f1"), params).await {
        Ok(parkme_actors::Booked::Created(booking)) => booking,
        other => panic!("booking: {other:?}"),
    }
}

async fn stop(node: Node, committer: tokio::task::JoinHandle<()>) {
    node.stop().await;
    drop(node);
    let _ = committer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zones_state_wins_over_booking_records_that_lag_or_run_ahead_of_it() {
    let source = Arc::new(MemoryStorage::new());
    let (node, committer) = Node::start(source.clone(), NodeConfig::default())
        .await
        .expect("node");
    node.put_facility(garage()).await.expect("layout");
    let held = book(&node, "HELD-1").await;
    let ended = book(&node, "ENDED-1").await;
    node.cancel(&ended).await.expect("cancel");
    stop(node, committer).await;

    // Records as a lagging or racing store may hold them: the held
    // booking's record already says cancelled (its zone says confirmed),
    // the cancelled one's still says confirmed, and a booking the zone
    // never saw (created after the zone was read) claims a free spot.
    let record = |booking: &Booking, status| Write::Booking {
        id: booking.id.clone(),
        bytes: codec::encode_stored(&Booking {
            status,
            ..booking.clone()
        }),
        forget_after: None,
    };
    let ghost = Booking {
        id: id(BookingId::parse, "bk_ghost"),
        spot: Some(id(SpotId::parse, "s4")),
        ..held.clone()
    };
    source
        .commit(&[
            record(&held, BookingStatus::Cancelled),
            record(&ended, BookingStatus::Confirmed),
            record(&ghost, BookingStatus::Confirmed),
        ])
        .await
        .expect("commit");

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("b.pkb");
    let mut file = FileWriter::create(&path, Arc::new(Silent))
        .await
        .expect("create");
    let options = ExportOptions {
        booking_retention_ms: 86_400_000,
        parkme_version: "test".into(),
    };
    parkme_backup::export(&*source, &options, file.body())
        .await
        .expect("export");
    file.finish().await.expect("finish");

    let target = Arc::new(MemoryStorage::new());
    parkme_backup::restore(&*target, &path, false, Arc::new(Silent))
        .await
        .expect("restore");
    let (node, committer) = Node::start(target.clone(), NodeConfig::default())
        .await
        .expect("node");
    let restored = |b: &Booking| {
        let node = node.clone();
        let id = b.id.clone();
        async move { node.booking(&id).await.expect("read") }
    };
    let held_now = restored(&held).await.expect("the held booking is there");
    assert_eq!(
        held_now.status,
        BookingStatus::Confirmed,
        "its zone holds it"
    );
    assert_eq!(held_now.spot, held.spot);
    // The zone ended this one: confirmed in no zone means not restored
    // from the lagging record (its ended version never reached the
    // store, so it is left out rather than shown live).
    assert!(
        restored(&ended)
            .await
            .is_none_or(|b| b.status != BookingStatus::Confirmed),
        "a booking its zone does not hold is never shown live"
    );
    assert_eq!(restored(&ghost).await, None, "the zone never saw it");
    let spots = node
        .spots(&id(FacilityId::parse, "f1"), &id(ZoneId::parse, "z"))
        .await
        .expect("spots");
    let states: Vec<SpotState> = spots.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        vec![
            SpotState::Reserved,
            SpotState::Available,
            SpotState::Available,
            SpotState::Available
        ]
    );
    stop(node, committer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_store_with_data_is_refused_and_force_wipes_it() {
    let source = Arc::new(MemoryStorage::new());
    let (node, committer) = Node::start(source.clone(), NodeConfig::default())
        .await
        .expect("node");
    node.put_facility(garage()).await.expect("layout");
    book(&node, "ONE-1").await;
    stop(node, committer).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("b.pkb");
    let mut file = FileWriter::create(&path, Arc::new(Silent))
        .await
        .expect("create");
    let options = ExportOptions {
        booking_retention_ms: 0,
        parkme_version: "test".into(),
    };
    parkme_backup::export(&*source, &options, file.body())
        .await
        .expect("export");
    file.finish().await.expect("finish");

    // The source itself holds data.
    let refused = parkme_backup::restore(&*source, &path, false, Arc::new(Silent)).await;
    assert!(
        matches!(refused, Err(parkme_backup::BackupError::NotEmpty(_))),
        "{refused:?}"
    );
    let forced = parkme_backup::restore(&*source, &path, true, Arc::new(Silent))
        .await
        .expect("forced");
    assert!(forced.wiped);
    assert_eq!((forced.facilities, forced.zones, forced.spots), (1, 1, 4));
}
