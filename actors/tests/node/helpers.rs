//! Small local helpers shared by the node tests: layouts, a node started
//! on a chosen backend, booking shorthands and poll-until helpers (no
//! sleeps standing in for "long enough").

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parkme_actors::{ActorError, BookParams, Booked, Node, NodeConfig};
use parkme_engine::Reading;
use parkme_engine::{
    Booking, BookingId, BookingStatus, FacilityId, FacilityLayout, Plate, PlateDirection, SpotId,
    SpotKind, SpotLayout, SpotState, SpotView, UserId, ZoneId, ZoneLayout, ZoneShape,
};
use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::memory::MemoryStorage;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub fn fid(id: &str) -> FacilityId {
    FacilityId::parse(id).expect("valid facility id")
}

pub fn zid(id: &str) -> ZoneId {
    ZoneId::parse(id).expect("valid zone id")
}

pub fn sid(id: &str) -> SpotId {
    SpotId::parse(id).expect("valid spot id")
}

pub fn plate(p: &str) -> Plate {
    Plate::parse(p).expect("valid plate")
}

/// The id of the `n`th spot of a spot zone built by [`spot_zone`].
pub fn spot_of(zone: &str, n: usize) -> SpotId {
    sid(&format!("{zone}-{n:03}"))
}

/// A spot zone `id` with `spots` standard spots named `{id}-000`, ...
pub fn spot_zone(id: &str, spots: usize) -> ZoneLayout {
    ZoneLayout {
        id: zid(id),
        name: format!("zone {id}"),
        shape: ZoneShape::Spots(
            (0..spots)
                .map(|n| SpotLayout {
                    id: spot_of(id, n),
                    kind: SpotKind::Standard,
                })
                .collect(),
        ),
        reservable: 0,
    }
}

pub fn counter_zone(id: &str, capacity: u32) -> ZoneLayout {
    ZoneLayout {
        id: zid(id),
        name: format!("zone {id}"),
        shape: ZoneShape::Counter {
            capacity,
            kind: SpotKind::Standard,
        },
        reservable: 0,
    }
}

pub fn facility(id: &str, zones: Vec<ZoneLayout>) -> FacilityLayout {
    FacilityLayout::new(fid(id), format!("facility {id}"), "UTC".into(), None, zones)
        .expect("valid layout")
}

/// A node with its shutdown token and committer, stopped in order by
/// [`TestNode::stop`].
#[derive(Debug)]
pub struct TestNode {
    node: Node,
    shutdown: CancellationToken,
    committer: JoinHandle<()>,
}

impl Deref for TestNode {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl TestNode {
    pub async fn start(storage: Arc<dyn Storage>) -> Self {
        Self::start_with(storage, NodeConfig::default()).await
    }

    pub async fn start_with(storage: Arc<dyn Storage>, config: NodeConfig) -> Self {
        let shutdown = CancellationToken::new();
        let (node, committer) = Node::start(storage, config).await.expect("node starts");
        Self {
            node,
            shutdown,
            committer,
        }
    }

    pub async fn memory() -> Self {
        Self::start(Arc::new(MemoryStorage::new())).await
    }

    pub async fn embedded(dir: &Path) -> Self {
        let storage = EmbeddedStorage::open(dir).expect("open embedded storage");
        Self::start(Arc::new(storage)).await
    }

    /// A node serving one facility.
    pub async fn memory_with(layout: FacilityLayout) -> Self {
        let node = Self::memory().await;
        node.put_facility(layout).await.expect("facility created");
        node
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The graceful path: stop taking work, stop every actor, drain the
    /// committer. Afterwards nothing of this node holds its storage.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.node.stop().await;
        drop(self.node);
        self.committer.await.expect("committer ends cleanly");
    }
}

pub fn params(zone: Option<&str>) -> BookParams {
    BookParams {
        owner: UserId::parse("driver-1").expect("valid user"),
        plate: plate("AB-123"),
        zone: zone.map(zid),
        kind: None,
        spot: None,
        hold_seconds: 900,
        starts_at: None,
        ends_at: None,
        idempotency_key: None,
    }
}

/// Books and expects a new booking.
pub async fn book(node: &Node, f: &str, params: BookParams) -> Result<Booking, ActorError> {
    match node.book(&fid(f), params).await? {
        Booked::Created(booking) => Ok(booking),
        Booked::Replayed(booking) => panic!("expected a new booking, got a replay of {booking:?}"),
    }
}

/// Books in `zone`, retrying while the zone is restarting.
pub async fn book_when_available(node: &Node, f: &str, zone: &str) -> Booking {
    poll_until(&format!("zone {zone} accepts bookings"), || async {
        match book(node, f, params(Some(zone))).await {
            Ok(booking) => Some(booking),
            Err(e) if e.is_retryable() => None,
            Err(e) => panic!("booking in {zone} refused: {e}"),
        }
    })
    .await
}

pub fn is_no_spot(result: &Result<Booking, ActorError>) -> bool {
    matches!(
        result,
        Err(ActorError::Engine(
            parkme_engine::EngineError::NoSpotAvailable
        ))
    )
}

/// The durable record of a booking.
pub async fn stored(node: &Node, id: &BookingId) -> Booking {
    node.booking(id)
        .await
        .expect("booking lookup")
        .expect("booking is stored")
}

pub async fn spots(node: &Node, f: &str, zone: &str) -> Vec<SpotView> {
    node.spots(&fid(f), &zid(zone)).await.expect("zone spots")
}

pub async fn spot_view(node: &Node, f: &str, zone: &str, spot: &SpotId) -> SpotView {
    spots(node, f, zone)
        .await
        .into_iter()
        .find(|s| &s.id == spot)
        .expect("spot is listed")
}

/// Spot id → state, over every zone of a facility.
pub async fn spot_states(node: &Node, f: &str) -> HashMap<SpotId, SpotView> {
    let view = node.facility(&fid(f)).await.expect("facility view");
    let mut all = HashMap::new();
    for zone in view.zones {
        for spot in node.spots(&fid(f), &zone.id).await.expect("zone spots") {
            all.insert(spot.id.clone(), spot);
        }
    }
    all
}

/// Polls until the durable booking has `status`.
pub async fn until_status(node: &Node, id: &BookingId, status: BookingStatus) -> Booking {
    poll_until(&format!("booking {id} is {}", status.as_str()), || async {
        let booking = stored(node, id).await;
        (booking.status == status).then_some(booking)
    })
    .await
}

/// Polls until the facility's read model shows `spot` in `state`.
pub async fn until_spot(node: &Node, f: &str, zone: &str, spot: &SpotId, state: SpotState) {
    poll_until(&format!("spot {spot} is {}", state.as_str()), || async {
        (spot_view(node, f, zone, spot).await.state == state).then_some(())
    })
    .await;
}

pub fn spot_reading(spot: &SpotId, occupied: bool) -> Reading {
    Reading::Spot {
        spot: spot.clone(),
        occupied,
    }
}

pub fn plate_reading(p: &str, direction: PlateDirection) -> Reading {
    Reading::Plate {
        plate: plate(p),
        direction,
    }
}

/// Sends readings and expects every one to be accepted.
pub async fn sense(node: &Node, f: &str, readings: Vec<Reading>) {
    for result in node
        .sense(&fid(f), readings)
        .await
        .expect("facility exists")
    {
        result.expect("reading accepted");
    }
}

/// Polls `probe` until it yields a value; fails after 5 s (of tokio time,
/// so it also bounds paused-clock tests).
pub async fn poll_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_within(Duration::from_secs(5), what, probe).await
}

/// Polls `probe` every 5 ms until it yields a value or `limit` passes.
pub async fn poll_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A facility as it is served: zone ids in layout order, each with its
/// spot ids in order (empty for a counter zone).
pub type Served = Vec<(ZoneId, Vec<SpotId>)>;

/// What `layout` declares, in the shape of [`Served`].
pub fn declared(layout: &FacilityLayout) -> Served {
    layout
        .zones
        .iter()
        .map(|z| {
            let spots = match &z.shape {
                ZoneShape::Spots(spots) => spots.iter().map(|s| s.id.clone()).collect(),
                ZoneShape::Counter { .. } => Vec::new(),
            };
            (z.id.clone(), spots)
        })
        .collect()
}

/// What the node lists for a facility: its view's zones and each zone's
/// spots.
pub async fn served(node: &Node, f: &str) -> Served {
    let view = node.facility(&fid(f)).await.expect("facility view");
    let mut served = Vec::new();
    for zone in view.zones {
        let spots = node.spots(&fid(f), &zone.id).await.expect("zone spots");
        served.push((zone.id, spots.into_iter().map(|s| s.id).collect()));
    }
    served
}

fn unknown_spot(result: &Result<impl std::fmt::Debug, ActorError>) -> bool {
    matches!(
        result,
        Err(ActorError::Engine(parkme_engine::EngineError::UnknownSpot(
            _
        )))
    )
}

/// Asserts that facility `f` serves exactly `expected`, and that every way
/// of naming a spot agrees with the listing: each listed spot can be
/// booked by id (or is refused for its state, never as unknown), set in or
/// out of service and sensed; each id of `others` that is not listed is
/// `unknown_spot` everywhere. Every spot's booking is a live booking on
/// that spot, and every live booking of `bookings` holds a listed spot.
/// Changes nothing it does not undo (a test booking is cancelled again).
pub async fn assert_serves(
    node: &Node,
    f: &str,
    expected: &FacilityLayout,
    others: &[SpotId],
    bookings: &[BookingId],
) {
    let served_now = served(node, f).await;
    assert_eq!(served_now, declared(expected), "the layout served");
    let facility_id = fid(f);
    let mut listed = HashMap::new();
    for (zone, _) in &served_now {
        for spot in spots(node, f, zone.as_str()).await {
            listed.insert(spot.id.clone(), spot);
        }
    }
    for (id, spot) in &listed {
        let occupied = spot.state == SpotState::Occupied;
        let sensed = node
            .sense(&facility_id, vec![spot_reading(id, occupied)])
            .await
            .expect("facility exists");
        assert!(
            sensed.iter().all(Result::is_ok),
            "a reading for listed spot {id}: {sensed:?}"
        );
        let service = node
            .set_service(&facility_id, id, spot.state == SpotState::OutOfService)
            .await;
        assert!(service.is_ok(), "service of listed spot {id}: {service:?}");
        let mut by_id = params(None);
        by_id.spot = Some(id.clone());
        let booked = book(node, f, by_id).await;
        assert!(
            !unknown_spot(&booked) && !matches!(booked, Err(ActorError::UnknownZone(_))),
            "booking listed spot {id} by id: {booked:?}"
        );
        match booked {
            Ok(booking) => {
                assert_eq!(spot.state, SpotState::Available, "{id} was free");
                node.cancel(&booking).await.expect("test booking cancelled");
            }
            Err(e) => assert_ne!(spot.state, SpotState::Available, "{id} is free: {e}"),
        }
        if let Some(booking) = &spot.booking {
            let record = stored(node, booking).await;
            assert!(record.is_live(), "spot {id} names ended booking {record:?}");
            assert_eq!(record.spot.as_ref(), Some(id), "booking of spot {id}");
        }
    }
    for id in others.iter().filter(|id| !listed.contains_key(*id)) {
        let sensed = node
            .sense(&facility_id, vec![spot_reading(id, true)])
            .await
            .expect("facility exists");
        assert!(
            unknown_spot(&sensed[0]),
            "reading for unlisted {id}: {sensed:?}"
        );
        let service = node.set_service(&facility_id, id, true).await;
        assert!(
            unknown_spot(&service),
            "service of unlisted {id}: {service:?}"
        );
        let mut by_id = params(None);
        by_id.spot = Some(id.clone());
        let booked = book(node, f, by_id).await;
        assert!(unknown_spot(&booked), "booking unlisted {id}: {booked:?}");
    }
    for id in bookings {
        let record = stored(node, id).await;
        if !record.is_live() {
            continue;
        }
        match &record.spot {
            Some(spot) => {
                let held = listed.get(spot).and_then(|s| s.booking.as_ref());
                assert_eq!(
                    held,
                    Some(id),
                    "live booking {record:?} holds a listed spot"
                );
            }
            None => assert!(
                served_now.iter().any(|(zone, _)| *zone == record.zone),
                "live counter booking {record:?} is in a listed zone"
            ),
        }
    }
}

/// A runtime of its own for a node that is to crash: dropping it drops
/// every task mid-flight (no graceful stop, no final snapshot), the
/// closest an in-process test gets to `kill -9`.
pub fn crash_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The layout a zone's storage says it has: its latest snapshot's, then
/// the last layout change journaled after it (`None`: still the layout it
/// was created with).
pub async fn journaled_layout(storage: &dyn Storage, zone: &str) -> Option<ZoneLayout> {
    use parkme_engine::codec::decode_stored;
    use parkme_engine::{Event, Seq, ZoneSnapshot};
    let key = parkme_storage::ZoneKey::new(fid("f1"), zid(zone));
    let snapshot = storage.latest_snapshot(&key).await.expect("snapshot read");
    let (after, mut layout) = match snapshot {
        Some((seq, bytes)) => {
            let image: ZoneSnapshot = decode_stored(&bytes).expect("a snapshot");
            (seq, Some(image.layout))
        }
        None => (Seq::ZERO, None),
    };
    for (_, bytes) in storage.read_events(&key, after).await.expect("journal") {
        if let Event::Relaid { layout: next } = decode_stored(&bytes).expect("an event") {
            layout = Some(next);
        }
    }
    layout
}
