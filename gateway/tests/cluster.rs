//! Contract §7 through real processes: three (or two, then three) `parkme`
//! nodes on one CQL keyspace and one Redis prefix of their own, talking
//! over real sockets. Each test states one promise of the cluster.
//!
//! Needs the CQL server and Redis that `scripts/test` starts
//! (`PARKME_TEST_CQL`, `PARKME_TEST_REDIS`). Leases are 2 s here, so a
//! failover is due within 4 s.

mod common;
#[path = "common/http.rs"]
mod http;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;
use http::{Api, layout, spot_zone};

const LEASE_MS: u64 = 2000;

fn cql_server() -> String {
    std::env::var("PARKME_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn redis_url() -> String {
    std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into())
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or_default();
    format!("pm_cl_{tag}_{}_{nanos}", std::process::id())
}

/// A cluster of real nodes sharing one keyspace and one Redis prefix.
struct Cluster {
    env: Vec<(String, String)>,
    nodes: Vec<Option<TestServer>>,
}

impl Cluster {
    async fn start(tag: &str, n: usize) -> Cluster {
        let space = unique(tag);
        let env = vec![
            (
                "PARKME_STORAGE".to_owned(),
                format!("scylla://{}/{space}", cql_server()),
            ),
            ("PARKME_REDIS_URL".to_owned(), redis_url()),
            ("PARKME_REDIS_PREFIX".to_owned(), format!("{space}:")),
            (
                "PARKME_CLUSTER_SECRET".to_owned(),
                "a cluster secret for the tests".to_owned(),
            ),
            ("PARKME_LEASE_MS".to_owned(), LEASE_MS.to_string()),
            ("PARKME_RATE_BOOKINGS_PER_HOUR".to_owned(), "0".to_owned()),
            ("PARKME_RATE_USER_PER_HOUR".to_owned(), "0".to_owned()),
            ("PARKME_RATE_ANON_PER_HOUR".to_owned(), "0".to_owned()),
        ];
        let mut cluster = Cluster {
            env,
            nodes: Vec::new(),
        };
        for _ in 0..n {
            cluster.add().await;
        }
        cluster
    }

    /// Starts one more node, `n{index}`.
    async fn add(&mut self) -> usize {
        let index = self.nodes.len();
        let server = self.spawn(index).await;
        self.nodes.push(Some(server));
        index
    }

    async fn spawn(&self, index: usize) -> TestServer {
        let name = format!("n{index}");
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("PARKME_NODE_ID", name.as_str()));
        TestServer::start(&env).await
    }

    fn node(&self, index: usize) -> &TestServer {
        self.nodes[index].as_ref().expect("node is running")
    }

    fn api(&self, index: usize) -> Api {
        Api::new(self.node(index))
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    fn admin(&self) -> String {
        self.node(self.live()[0]).admin_token().to_owned()
    }

    fn kill9(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.kill9();
        }
    }

    /// `GET /v1/cluster` on one node: facility id -> owner node name.
    async fn owners(&self, index: usize) -> BTreeMap<String, Option<String>> {
        let reply = self
            .api(index)
            .get("/v1/cluster", Some(&self.admin()))
            .await;
        let info = reply.assert_status(200);
        info["facilities"]
            .as_array()
            .expect("facilities")
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().expect("id").to_owned(),
                    f["owner"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// Waits until every live node names the same live owner for each of
    /// `facilities` (and, with `settled`, no node owns more than its
    /// share); returns facility -> owner index.
    async fn agreed(
        &self,
        facilities: &[String],
        timeout: Duration,
        settled: bool,
    ) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let live = self.live();
            let names: BTreeSet<String> = live.iter().map(|i| format!("n{i}")).collect();
            let mut views = Vec::new();
            for i in &live {
                views.push(self.owners(*i).await);
            }
            let first = &views[0];
            let consistent = views.iter().all(|v| v == first);
            let owned: Option<BTreeMap<String, usize>> = facilities
                .iter()
                .map(|f| {
                    let owner = first.get(f)?.as_ref()?;
                    if !names.contains(owner) {
                        return None;
                    }
                    owner[1..].parse::<usize>().ok().map(|i| (f.clone(), i))
                })
                .collect();
            if consistent && let Some(owned) = owned {
                let cap = (12 * facilities.len()) / (10 * live.len()) + 1;
                let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
                for owner in owned.values() {
                    *per_node.entry(*owner).or_default() += 1;
                }
                let balanced = per_node.values().all(|n| *n <= cap)
                    && (live.len() > facilities.len() || per_node.len() == live.len());
                if !settled || balanced {
                    return owned;
                }
            }
            last = first.clone();
            assert!(
                Instant::now() < deadline,
                "nodes never agreed on owners: last view {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create(&self, via: usize, facilities: &[String], spots: usize) {
        let admin = self.admin();
        for f in facilities {
            let reply = self
                .api(via)
                .put(
                    &format!("/v1/facilities/{f}"),
                    Some(&admin),
                    layout(vec![spot_zone("z1", "s", spots, "standard")]),
                )
                .await;
            assert_eq!(reply.status.as_u16(), 201, "creating {f}: {reply:?}");
        }
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_names_one_live_owner_per_facility_and_none_owns_more_than_its_share() {
    let cluster = Cluster::start("owners", 3).await;
    let facilities = ids("f", 12);
    cluster.create(0, &facilities, 4).await;
    let owners = cluster
        .agreed(&facilities, Duration::from_secs(30), true)
        .await;
    let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
    for owner in owners.values() {
        *per_node.entry(*owner).or_default() += 1;
    }
    println!("facilities per node: {per_node:?}");
    // ⌊1.2 · 12 / 3⌋ + 1 = 5.
    assert!(per_node.values().all(|n| *n <= 5), "{per_node:?}");
    let info = cluster
        .api(1)
        .get("/v1/cluster", Some(&cluster.admin()))
        .await;
    let info = info.assert_status(200);
    assert_eq!(info["node"], "n1");
    let nodes = info["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{info}");
    for node in nodes {
        assert_eq!(node["status"], "up");
        assert!(node["url"].as_str().expect("url").starts_with("http://"));
    }
    for facility in info["facilities"].as_array().expect("facilities") {
        assert!(facility["epoch"].as_u64().expect("epoch") > 0, "{facility}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_every_facility_route_as_its_owner_would() {
    let cluster = Cluster::start("anynode", 3).await;
    let facilities = ids("a", 3);
    cluster.create(2, &facilities, 6).await;
    let owners = cluster
        .agreed(&facilities, Duration::from_secs(30), false)
        .await;
    let token = cluster.node(0).user_token("driver-1");
    for (f, owner) in &owners {
        let direct = cluster
            .api(*owner)
            .get(&format!("/v1/facilities/{f}"), None)
            .await;
        let direct = direct.assert_status(200).clone();
        for other in cluster.live().into_iter().filter(|i| i != owner) {
            let api = cluster.api(other);
            let seen = api.get(&format!("/v1/facilities/{f}"), None).await;
            assert_eq!(seen.assert_status(200)["totals"], direct["totals"]);
            let booked = api
                .book(f, &token, json!({"plate": format!("ANY-{other}")}))
                .await;
            let booking = booked.assert_status(201).clone();
            let id = booking["id"].as_str().expect("id");
            // Read and cancel it through a third node.
            let third = cluster
                .live()
                .into_iter()
                .find(|i| i != owner && *i != other)
                .unwrap_or(*owner);
            let read = cluster
                .api(third)
                .get(&format!("/v1/bookings/{id}"), Some(&token))
                .await;
            assert_eq!(read.assert_status(200)["spot"], booking["spot"]);
            let cancelled = cluster
                .api(third)
                .delete(&format!("/v1/bookings/{id}"), Some(&token))
                .await;
            assert_eq!(cancelled.assert_status(200)["status"], "CANCELLED");
        }
        // Errors are the owner's too.
        let api = cluster.api((owner + 1) % 3);
        api.get(&format!("/v1/facilities/{f}/zones/nope/spots"), None)
            .await
            .assert_error(404, "unknown_zone");
    }
    cluster
        .api(0)
        .get("/v1/facilities/never-created", None)
        .await
        .assert_error(404, "unknown_facility");
    for i in cluster.live() {
        let listed = cluster.api(i).get("/v1/facilities", None).await;
        let listed: Vec<String> = listed.assert_status(200)["facilities"]
            .as_array()
            .expect("facilities")
            .iter()
            .map(|f| f["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(listed, facilities, "list on n{i}");
    }
}

/// Books through `nodes` until `stop`; returns every acknowledged
/// booking (id, spot) and the time of each acknowledgement.
fn storm(
    cluster: &Cluster,
    via: &[usize],
    facility: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Instant, String, String)>>> {
    let mut tasks = Vec::new();
    for (n, node) in via.iter().enumerate() {
        for worker in 0..3 {
            let api = cluster.api(*node);
            let token = cluster
                .node(*node)
                .user_token(&format!("storm-{n}-{worker}"));
            let facility = facility.to_owned();
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let reply = api
                        .book(
                            &facility,
                            &token,
                            json!({"plate": format!("S{n}{worker}-{i}")}),
                        )
                        .await;
                    match reply.status.as_u16() {
                        201 => acked.push((
                            Instant::now(),
                            reply.json["id"].as_str().expect("id").to_owned(),
                            reply.json["spot"].as_str().expect("spot").to_owned(),
                        )),
                        409 => tokio::time::sleep(Duration::from_millis(50)).await,
                        503 => tokio::time::sleep(Duration::from_millis(20)).await,
                        other => panic!("booking answered {other}: {}", reply.text),
                    }
                }
                acked
            }));
        }
    }
    tasks
}

/// Every acknowledged booking is in the store, live, on a spot of its own.
async fn assert_all_present(api: &Api, token_of: &TestServer, acked: &[(Instant, String, String)]) {
    let token = token_of.admin_token().to_owned();
    let mut spots = HashSet::new();
    for (_, id, spot) in acked {
        let read = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
        let booking = read.assert_status(200);
        assert_eq!(booking["spot"], spot.as_str(), "{booking}");
        assert!(
            matches!(booking["status"].as_str(), Some("CONFIRMED" | "ACTIVE")),
            "acknowledged booking {id} is not live: {booking}"
        );
        assert!(spots.insert(spot.clone()), "spot {spot} booked twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_killed_with_sigkill_loses_no_acknowledged_booking_and_is_replaced_within_two_leases()
 {
    let mut cluster = Cluster::start("kill", 3).await;
    let facility = "k1".to_owned();
    cluster
        .create(0, std::slice::from_ref(&facility), 400)
        .await;
    let owners = cluster
        .agreed(
            std::slice::from_ref(&facility),
            Duration::from_secs(30),
            false,
        )
        .await;
    let owner = owners[&facility];
    let survivors: Vec<usize> = cluster.live().into_iter().filter(|i| *i != owner).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = storm(&cluster, &survivors, &facility, Arc::clone(&stop));
    // The owner's own clients book too, until it dies.
    let owner_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let owner_api = cluster.api(owner);
    let owner_token = cluster.node(owner).user_token("owner-client");
    let owner_acked: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
    let owner_task = {
        let (facility, stop, acked) = (
            facility.clone(),
            Arc::clone(&owner_stop),
            Arc::clone(&owner_acked),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let url = format!("{}/v1/facilities/{facility}/bookings", owner_api.base);
                let sent = owner_api
                    .client
                    .post(url)
                    .bearer_auth(&owner_token)
                    .json(&json!({"plate": format!("O-{i}")}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() == 201
                    && let Ok(body) = response.json::<Value>().await
                {
                    acked.lock().expect("lock").push((
                        Instant::now(),
                        body["id"].as_str().expect("id").to_owned(),
                        body["spot"].as_str().expect("spot").to_owned(),
                    ));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    cluster.kill9(owner);
    owner_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = owner_task.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for task in tasks.drain(..) {
        acked.extend(task.await.expect("storm task"));
    }
    let first_after = acked
        .iter()
        .filter(|(at, _, _)| *at > killed)
        .map(|(at, _, _)| at.duration_since(killed))
        .min()
        .expect("bookings succeed again after the owner died");
    println!(
        "kill -9 to first acknowledged booking on a survivor: {} ms ({} bookings acknowledged)",
        first_after.as_millis(),
        acked.len()
    );
    acked.extend(owner_acked.lock().expect("lock").iter().cloned());
    let api = cluster.api(survivors[0]);
    assert_all_present(&api, cluster.node(survivors[0]), &acked).await;
    let new_owner = cluster
        .agreed(
            std::slice::from_ref(&facility),
            Duration::from_secs(10),
            false,
        )
        .await;
    assert_ne!(new_owner[&facility], owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_gets_none_of_its_late_writes_acknowledged() {
    let cluster = Cluster::start("pause", 3).await;
    let facility = "p1".to_owned();
    cluster
        .create(0, std::slice::from_ref(&facility), 200)
        .await;
    let owners = cluster
        .agreed(
            std::slice::from_ref(&facility),
            Duration::from_secs(30),
            false,
        )
        .await;
    let owner = owners[&facility];
    let survivors: Vec<usize> = cluster.live().into_iter().filter(|i| *i != owner).collect();
    let pid = cluster.node(owner).pid().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    signal("-STOP");
    // Requests to the paused owner wait in its socket backlog.
    let owner_api = cluster.api(owner);
    let owner_token = cluster.node(owner).user_token("late");
    let mut late = Vec::new();
    for i in 0..8 {
        let (api, token, facility) = (owner_api.clone(), owner_token.clone(), facility.clone());
        late.push(tokio::spawn(async move {
            api.book(&facility, &token, json!({"plate": format!("LATE-{i}")}))
                .await
        }));
    }
    // The others take the facility over and book on it.
    let survivor = cluster.api(survivors[0]);
    let token = cluster.node(survivors[0]).user_token("meanwhile");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked = Vec::new();
    while acked.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "no failover while the owner was paused"
        );
        let reply = survivor
            .book(
                &facility,
                &token,
                json!({"plate": format!("NEW-{}", acked.len())}),
            )
            .await;
        if reply.status == 201 {
            acked.push((
                Instant::now(),
                reply.json["id"].as_str().expect("id").to_owned(),
                reply.json["spot"].as_str().expect("spot").to_owned(),
            ));
        }
    }
    signal("-CONT");
    let mut late_acked = 0;
    for task in late {
        let reply = task.await.expect("late request");
        if reply.status == 201 {
            late_acked += 1;
            acked.push((
                Instant::now(),
                reply.json["id"].as_str().expect("id").to_owned(),
                reply.json["spot"].as_str().expect("spot").to_owned(),
            ));
        } else {
            assert!(
                matches!(reply.status.as_u16(), 503 | 409),
                "a late write answered {}: {}",
                reply.status,
                reply.text
            );
        }
    }
    println!(
        "late requests to the paused owner acknowledged: {late_acked} of 8 (each only once durable on the new owner)"
    );
    // Whatever was acknowledged, by anyone, is there, once.
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    assert_all_present(&survivor, cluster.node(survivors[0]), &acked).await;
    cluster
        .agreed(
            std::slice::from_ref(&facility),
            Duration::from_secs(20),
            false,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_takes_its_share_within_30_seconds() {
    let mut cluster = Cluster::start("join", 2).await;
    let facilities = ids("j", 12);
    cluster.create(0, &facilities, 4).await;
    cluster
        .agreed(&facilities, Duration::from_secs(30), true)
        .await;
    let joined = Instant::now();
    let new = cluster.add().await;
    let owners = cluster
        .agreed(&facilities, Duration::from_secs(30), true)
        .await;
    let share = owners.values().filter(|o| **o == new).count();
    println!(
        "joining node owns {share} of 12 after {} ms",
        joined.elapsed().as_millis()
    );
    assert!(share >= 3, "the new node took {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_facilities_over_and_a_rolling_restart_fails_no_request() {
    let mut cluster = Cluster::start("roll", 3).await;
    let facilities = ids("r", 6);
    cluster.create(0, &facilities, 50).await;
    cluster
        .agreed(&facilities, Duration::from_secs(30), true)
        .await;
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rotation: Arc<Mutex<Vec<Api>>> = Arc::new(Mutex::new(
        cluster.live().into_iter().map(|i| cluster.api(i)).collect(),
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let token = cluster.node(0).user_token("rolling");
    let mut load = Vec::new();
    for worker in 0..4 {
        let (rotation, stop, failures, served, token) = (
            Arc::clone(&rotation),
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&served),
            token.clone(),
        );
        let facility = facilities[worker % facilities.len()].clone();
        load.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let api = {
                    let rotation = rotation.lock().expect("lock");
                    rotation[i % rotation.len()].clone()
                };
                let reply = api
                    .book(
                        &facility,
                        &token,
                        json!({"plate": format!("R{worker}-{i}")}),
                    )
                    .await;
                if reply.status != 201 {
                    failures.lock().expect("lock").push(format!(
                        "book via {}: {} {}",
                        api.base, reply.status, reply.text
                    ));
                    continue;
                }
                let id = reply.json["id"].as_str().expect("id").to_owned();
                let api = {
                    let rotation = rotation.lock().expect("lock");
                    rotation[(i + 1) % rotation.len()].clone()
                };
                let cancel = api
                    .delete(&format!("/v1/bookings/{id}"), Some(&token))
                    .await;
                if cancel.status != 200 {
                    failures.lock().expect("lock").push(format!(
                        "cancel via {}: {} {}",
                        api.base, cancel.status, cancel.text
                    ));
                }
                served.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for index in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The load balancer stops sending new requests to the node (its
        // readiness goes 503 at SIGTERM; Kubernetes also waits out
        // preStop); requests already sent to it must still succeed.
        let base = cluster.node(index).url();
        rotation
            .lock()
            .expect("lock")
            .retain(|api| api.base != base);
        let started = Instant::now();
        let mut node = cluster.nodes[index].take().expect("running");
        let pid = node.pid().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", pid.as_str()])
            .status()
            .expect("kill runs");
        let exit = tokio::task::spawn_blocking(move || {
            let status = node.child_mut().map(|c| c.wait());
            (node, status)
        })
        .await
        .expect("wait");
        println!(
            "n{index} handed over and exited in {} ms: {:?}",
            started.elapsed().as_millis(),
            exit.1
        );
        drop(exit.0);
        let server = cluster.spawn(index).await;
        cluster.nodes[index] = Some(server);
        rotation.lock().expect("lock").push(cluster.api(index));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let failures = failures.lock().expect("lock").clone();
    println!(
        "rolling restart: {} requests served, {} failed",
        served.load(std::sync::atomic::Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
}
