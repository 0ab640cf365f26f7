//! The coordination shell driving real leases in the real Redis of the test
//! command, with three in-process nodes whose host records what it serves
//! and claims epochs from one shared counter (standing in for the store's
//! fencing: a claim raises the facility's epoch). The real-process cluster
//! tests start `parkme` itself; these pin the shell's timing promises.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parkme_cluster::{Incarnation, Member, NodeId, NodeName, NodeStatus, OwnershipConfig};
use parkme_coord::{Coordination, Driver, DriverConfig, Host};
use parkme_engine::FacilityId;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_millis(1000);

#[derive(Default)]
struct Store {
    epochs: Mutex<BTreeMap<FacilityId, u64>>,
}

struct TestHost {
    name: String,
    store: Arc<Store>,
    facilities: BTreeSet<FacilityId>,
    serving: Mutex<BTreeMap<FacilityId, u64>>,
}

impl Host for TestHost {
    async fn facilities(&self) -> Result<BTreeSet<FacilityId>, String> {
        Ok(self.facilities.clone())
    }

    async fn acquire(&self, facility: &FacilityId) -> Result<u64, String> {
        let epoch = {
            let mut epochs = self.store.epochs.lock().expect("lock");
            let e = epochs.entry(facility.clone()).or_insert(0);
            *e += 1;
            *e
        };
        self.serving
            .lock()
            .expect("lock")
            .insert(facility.clone(), epoch);
        Ok(epoch)
    }

    async fn release(&self, facility: &FacilityId) {
        self.serving.lock().expect("lock").remove(facility);
    }

    async fn drop_facility(&self, facility: &FacilityId) {
        self.serving.lock().expect("lock").remove(facility);
    }
}

struct TestNode {
    host: Arc<TestHost>,
    driver: Driver,
    stop: CancellationToken,
}

async fn coordination(prefix: &str) -> (Coordination, redis::Client) {
    let url =
        std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into());
    let client = redis::Client::open(url).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client.clone())
        .await
        .expect("redis reachable (the test command starts it)");
    (
        Coordination::new(conn, prefix, LEASE, Duration::from_millis(500)),
        client,
    )
}

async fn start(
    name: &str,
    prefix: &str,
    store: &Arc<Store>,
    facilities: &BTreeSet<FacilityId>,
) -> TestNode {
    let (coord, client) = coordination(prefix).await;
    let id = NodeId::new(
        NodeName::parse(name).expect("name"),
        Incarnation(rand::random()),
    );
    let host = Arc::new(TestHost {
        name: name.to_owned(),
        store: Arc::clone(store),
        facilities: facilities.clone(),
        serving: Mutex::new(BTreeMap::new()),
    });
    let stop = CancellationToken::new();
    let config = DriverConfig {
        member: Member {
            id,
            url: format!("http://{name}"),
            status: NodeStatus::Up,
        },
        tick: LEASE / 5,
        ownership: OwnershipConfig { moves_per_round: 8 },
    };
    let driver = Driver::spawn(coord, Some(client), Arc::clone(&host), config, stop.clone());
    TestNode { host, driver, stop }
}

/// Every facility is served by exactly one of `nodes`, with the newest
/// epoch of the store.
fn settled(nodes: &[&TestNode], store: &Store, facilities: &BTreeSet<FacilityId>) -> bool {
    let cap = parkme_cluster::load_cap(facilities.len(), nodes.len());
    let balanced = nodes.iter().all(|n| {
        let load = n.host.serving.lock().expect("lock").len();
        load > 0 && load <= cap
    });
    let epochs = store.epochs.lock().expect("lock");
    balanced
        && facilities.iter().all(|f| {
            let servers: Vec<u64> = nodes
                .iter()
                .filter_map(|n| n.host.serving.lock().expect("lock").get(f).copied())
                .collect();
            servers.len() == 1 && epochs.get(f) == Some(&servers[0])
        })
}

async fn wait_settled(
    nodes: &[&TestNode],
    store: &Store,
    facilities: &BTreeSet<FacilityId>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    while !settled(nodes, store, facilities) {
        assert!(
            started.elapsed() < within,
            "not settled within {within:?}: {:?}",
            nodes
                .iter()
                .map(|n| (
                    n.host.name.clone(),
                    n.host.serving.lock().expect("lock").len()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn setup(n: usize) -> (String, Arc<Store>, BTreeSet<FacilityId>) {
    let prefix = format!("driver-test-{:016x}:", rand::random::<u64>());
    let facilities = (0..n)
        .map(|i| FacilityId::parse(&format!("f{i}")).expect("id"))
        .collect();
    (prefix, Arc::new(Store::default()), facilities)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_facilities_are_served_again_within_two_lease_periods() {
    let (prefix, store, facilities) = setup(12);
    let a = start("a", &prefix, &store, &facilities).await;
    let b = start("b", &prefix, &store, &facilities).await;
    let c = start("c", &prefix, &store, &facilities).await;
    wait_settled(&[&a, &b, &c], &store, &facilities, Duration::from_secs(10)).await;
    assert!(
        !c.host.serving.lock().expect("lock").is_empty(),
        "c took its share"
    );
    // c dies: it stops announcing and renewing, and (as a dead process
    // would) still believes it serves.
    c.stop.cancel();
    let took = wait_settled(&[&a, &b], &store, &facilities, 2 * LEASE + LEASE / 2).await;
    println!("failover took {took:?} with a lease of {LEASE:?}");
    a.stop.cancel();
    b.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_everything_over_then_leaves() {
    let (prefix, store, facilities) = setup(12);
    let a = start("a", &prefix, &store, &facilities).await;
    let b = start("b", &prefix, &store, &facilities).await;
    wait_settled(&[&a, &b], &store, &facilities, Duration::from_secs(10)).await;
    let started = Instant::now();
    b.driver.drain();
    tokio::time::timeout(Duration::from_secs(5), b.driver.drained())
        .await
        .expect("drain completes");
    assert!(b.host.serving.lock().expect("lock").is_empty());
    let took = wait_settled(&[&a], &store, &facilities, Duration::from_secs(5)).await;
    println!(
        "handoff of b's facilities took {:?}",
        started.elapsed() + took
    );
    // a sees b gone at its next round, a tick after b left.
    let gone = Instant::now() + Duration::from_secs(5);
    while a
        .driver
        .view()
        .members
        .iter()
        .any(|m| m.id.name.as_str() == "b")
    {
        assert!(Instant::now() < gone, "b left the member list");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_its_share() {
    let (prefix, store, facilities) = setup(30);
    let a = start("a", &prefix, &store, &facilities).await;
    wait_settled(&[&a], &store, &facilities, Duration::from_secs(10)).await;
    let b = start("b", &prefix, &store, &facilities).await;
    let started = Instant::now();
    wait_settled(&[&a, &b], &store, &facilities, Duration::from_secs(10)).await;
    println!("b took its share in {:?}", started.elapsed());
    a.stop.cancel();
    b.stop.cancel();
}
