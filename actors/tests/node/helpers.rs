//! Small local helpers shared by the node tests: layouts, a node started
//! on a chosen backend, booking shorthands and poll-until helpers (no
//! sleeps standing in for "long enough").

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parkme_actors::{ActorError, BookParams, Booked, Node, NodeConfig, SensorReading};
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

pub fn spot_reading(spot: &SpotId, occupied: bool) -> SensorReading {
    SensorReading::Spot {
        spot: spot.clone(),
        occupied,
    }
}

pub fn plate_reading(p: &str, direction: PlateDirection) -> SensorReading {
    SensorReading::Plate {
        plate: plate(p),
        direction,
    }
}

/// Sends readings and expects every one to be accepted.
pub async fn sense(node: &Node, f: &str, readings: Vec<SensorReading>) {
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
