//! Contract §7 through real processes: three (or two, then three) `parkme`
//! nodes on one CQL keyspace and one Redis prefix of their own, talking
//! over real sockets. Each test states one promise of the cluster.
//!
//! Needs the CQL server and Redis that `scripts/test` starts
//! (`PARKME_TEST_CQL`, `PARKME_TEST_REDIS`). Leases are 2 s here, so a
//! failover is due within 4 s.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::TestServer;
use crate::helpers::http::{Api, layout, spot_zone};

const LEASE_MS: u64 = 2000;

fn cql_server() -> String {
    std::env::var("PARKME_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn redis_url() -> String {
    std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into())
}

fn unique(tag: &str) -> String {
    crate::helpers::test_keyspace(&format!("cl{tag}"))
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
        self.spawn_with(index, &[]).await
    }

    /// Starts node `index` with `extra` settings over the cluster's.
    async fn spawn_with(&self, index: usize, extra: &[(&str, &str)]) -> TestServer {
        let name = format!("n{index}");
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("PARKME_NODE_ID", name.as_str()));
        env.extend_from_slice(extra);
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
    /// `facilities` (and, with `settled`, that owner is the one placement
    /// gives it over the live nodes, so handover has finished); returns
    /// facility -> owner index.
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
            if consistent
                && let Some(owned) = owned
                && (!settled || owned == placement(facilities, &live))
            {
                return owned;
            }
            last = first.clone();
            assert!(
                Instant::now() < deadline,
                "nodes never agreed on owners: last view {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates one facility of `spots` spots and waits for its owner;
    /// returns the owner and the other nodes.
    async fn one_facility(&self, facility: &str, spots: usize) -> (usize, Vec<usize>) {
        let facility = facility.to_owned();
        self.create(0, std::slice::from_ref(&facility), spots).await;
        let owners = self
            .agreed(
                std::slice::from_ref(&facility),
                Duration::from_secs(30),
                false,
            )
            .await;
        let owner = owners[&facility];
        let others = self.live().into_iter().filter(|i| *i != owner).collect();
        (owner, others)
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

/// Where placement puts `facilities` (the only ones in the test's keyspace)
/// over the live nodes `n{i}`: facility -> node index.
fn placement(facilities: &[String], live: &[usize]) -> BTreeMap<String, usize> {
    let ids: Vec<parkme_engine::FacilityId> = facilities
        .iter()
        .map(|f| parkme_engine::FacilityId::parse(f).expect("facility id"))
        .collect();
    let names: Vec<parkme_cluster::NodeName> = live
        .iter()
        .map(|i| parkme_cluster::NodeName::parse(&format!("n{i}")).expect("node name"))
        .collect();
    parkme_cluster::place(&ids, &names)
        .into_iter()
        .map(|(f, n)| {
            let index = n.as_str()[1..].parse().expect("node index");
            (f.as_str().to_owned(), index)
        })
        .collect()
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
    // Epochs reach every node's view a tick after the claim.
    let mut epochs_seen = false;
    for _ in 0..100 {
        let info = cluster
            .api(1)
            .get("/v1/cluster", Some(&cluster.admin()))
            .await;
        if info.assert_status(200)["facilities"]
            .as_array()
            .expect("facilities")
            .iter()
            .all(|f| f["epoch"].as_u64().is_some_and(|e| e > 0))
        {
            epochs_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        epochs_seen,
        "every facility shows the epoch its owner claimed"
    );
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
        // The DATEX II publication of any node holds every facility of
        // the cluster (§9 over §7), and NGSI-LD is the owner's.
        let datex = cluster.api(i).get("/v1/datex2/parking-status", None).await;
        assert_eq!(datex.status.as_u16(), 200, "datex on n{i}: {datex:?}");
        for f in &facilities {
            assert!(
                datex.text.contains(&format!("id=\"{f}\"")),
                "datex on n{i} lacks {f}: {}",
                datex.text
            );
            let ngsi = cluster
                .api(i)
                .get(&format!("/v1/facilities/{f}/ngsi-ld"), None)
                .await;
            assert_eq!(
                ngsi.assert_status(200)[0]["id"],
                format!("urn:ngsi-ld:OffStreetParking:{f}"),
                "ngsi-ld on n{i}"
            );
        }
    }
}

/// Every booking request and answer of a test, as `tools/lincheck` reads
/// them (JSON Lines).
#[derive(Clone)]
struct History {
    start: Instant,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl History {
    fn new() -> History {
        History {
            start: Instant::now(),
            lines: Arc::default(),
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Bookings acknowledged after `at`.
    fn acked_since(&self, at: Instant) -> usize {
        let since = self.ns(at);
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l["op"] == "book" && l["ok"] == true)
            .filter(|l| l["return_ns"].as_u64().is_some_and(|r| r > since))
            .count()
    }

    fn push(&self, line: Value) {
        self.lines.lock().expect("lock").push(line);
    }

    /// Runs the linearizability checker over the history; panics unless
    /// every answer is explained by one spot-at-a-time serial order.
    fn check(&self, layout: &Value) {
        let checker = std::env::var("PARKME_LINCHECK")
            .unwrap_or_else(|_| format!("{}/../target/tools/lincheck", env!("CARGO_MANIFEST_DIR")));
        assert!(
            std::path::Path::new(&checker).exists(),
            "the history checker {checker} is missing: build it with tools/lincheck/build.sh target/tools/lincheck (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let history = dir.path().join("history.jsonl");
        let layout_file = dir.path().join("layout.json");
        let lines = self.lines.lock().expect("lock").clone();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&history, text).expect("history written");
        std::fs::write(&layout_file, layout.to_string()).expect("layout written");
        let out = std::process::Command::new(&checker)
            .arg("--layout")
            .arg(&layout_file)
            .arg(&history)
            .output()
            .expect("lincheck runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{}", stdout.trim_end());
        assert!(
            out.status.success(),
            "history not linearizable ({:?}):\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One booking request through `api`, recorded; retried with the same
/// idempotency key while its outcome is unknown (503, no answer), so each
/// logical booking ends with a definite answer or the run's end.
struct Booker {
    api: Api,
    history: History,
    client: u64,
    node: String,
    facility: String,
    token: String,
}

async fn book_recorded(
    booker: &Booker,
    key: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<(Instant, String, String)> {
    let Booker {
        api,
        history,
        client,
        node,
        facility,
        token,
    } = booker;
    loop {
        let call = Instant::now();
        let sent = api
            .client
            .post(format!("{}/v1/facilities/{facility}/bookings", api.base))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({"plate": key.replace('_', "-").chars().take(12).collect::<String>(), "hold_seconds": 86400}))
            .send()
            .await;
        let mut line = json!({
            "client": client, "call_ns": history.ns(call), "op": "book",
            "facility": facility, "zone": null, "spot": null, "kind": null,
            "key": key, "node": node,
        });
        let Ok(response) = sent else {
            line["return_ns"] = json!(history.ns(Instant::now()));
            line["ok"] = json!(false);
            line["http"] = Value::Null;
            line["error"] = json!("no_answer");
            history.push(line);
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let now = Instant::now();
        line["return_ns"] = json!(history.ns(now));
        line["http"] = json!(status);
        line["ok"] = json!((200..300).contains(&status));
        if (200..300).contains(&status) {
            let id = body["id"].as_str().expect("id").to_owned();
            let spot = body["spot"].as_str().expect("spot").to_owned();
            line["booking"] = json!(id);
            line["got_spot"] = json!(spot);
            line["status"] = body["status"].clone();
            history.push(line);
            return Some((now, id, spot));
        }
        line["error"] = body["error"]["code"].clone();
        history.push(line);
        if status == 503 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert!(
            matches!(status, 409 | 503),
            "booking answered {status}: {body}"
        );
        if status == 409 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return None;
    }
}

/// Books through `via` until `stop`; returns every acknowledged booking
/// (when, id, spot).
fn storm(
    cluster: &Cluster,
    via: &[usize],
    facility: &str,
    history: &History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Instant, String, String)>>> {
    let mut tasks = Vec::new();
    for node in via {
        for worker in 0..3u64 {
            let client = (*node as u64) * 10 + worker;
            let booker = Booker {
                api: cluster.api(*node),
                history: history.clone(),
                client,
                node: format!("n{node}"),
                facility: facility.to_owned(),
                token: cluster.node(*node).user_token(&format!("storm-{client}")),
            };
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let key = format!("c{client}_{i}");
                    if let Some(booking) = book_recorded(&booker, &key, &stop).await {
                        acked.push(booking);
                    }
                }
                acked
            }));
        }
    }
    tasks
}

/// Every acknowledged booking is in the store, live, on a spot of its own
/// (each read is recorded in the history too).
async fn assert_all_present(
    api: &Api,
    token_of: &TestServer,
    facility: &str,
    history: Option<&History>,
    acked: &[(Instant, String, String)],
) {
    let token = token_of.admin_token().to_owned();
    let mut spots = HashSet::new();
    for (_, id, spot) in acked {
        let call = Instant::now();
        let read = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
        let booking = read.assert_status(200);
        if let Some(history) = history {
            history.push(json!({
                "client": 99, "call_ns": history.ns(call), "return_ns": history.ns(Instant::now()),
                "op": "get", "facility": facility, "booking": id, "ok": true, "http": 200,
                "status": booking["status"], "got_spot": spot,
            }));
        }
        assert_eq!(booking["spot"], spot.as_str(), "{booking}");
        assert!(
            matches!(booking["status"].as_str(), Some("CONFIRMED" | "ACTIVE")),
            "acknowledged booking {id} is not live: {booking}"
        );
        assert!(spots.insert(spot.clone()), "spot {spot} booked twice");
    }
}

type Acked = Vec<(Instant, String, String)>;

/// Stops a storm and gathers what it acknowledged.
async fn end_storm(
    stop: &std::sync::atomic::AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<Acked>>,
) -> Acked {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("storm task"));
    }
    acked
}

/// Every acknowledged booking is present through node `via`, and the
/// whole history is linearizable over a one-zone facility of `spots`
/// spots `s001…`.
async fn assert_durable_and_linearizable(
    cluster: &Cluster,
    via: usize,
    facility: &str,
    spots: usize,
    history: &History,
    acked: &[(Instant, String, String)],
) {
    let api = cluster.api(via);
    assert_all_present(&api, cluster.node(via), facility, Some(history), acked).await;
    let spots: Vec<Value> = (1..=spots)
        .map(|i| json!({"id": format!("s{i:03}"), "kind": "standard"}))
        .collect();
    history.check(&json!({"facility": facility, "zones": [{"id": "z1", "spots": spots}]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_killed_with_sigkill_loses_no_acknowledged_booking_and_the_history_is_linearizable()
 {
    let mut cluster = Cluster::start("kill", 3).await;
    let facility = "k1".to_owned();
    let (owner, survivors) = cluster.one_facility(&facility, 400).await;
    let history = History::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The owner's own clients book too, until it dies.
    let owner_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let owner_tasks = storm(
        &cluster,
        &[owner],
        &facility,
        &history,
        Arc::clone(&owner_stop),
    );
    let tasks = storm(&cluster, &survivors, &facility, &history, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    owner_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    cluster.kill9(owner);
    // Until a survivor serves the facility again (bounded), and a little
    // longer; the time it took is measured, not asserted (bench/failover.py).
    let deadline = killed + Duration::from_secs(60);
    while history.acked_since(killed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acked = end_storm(&stop, tasks).await;
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
    acked.extend(end_storm(&owner_stop, owner_tasks).await);
    assert_durable_and_linearizable(&cluster, survivors[0], &facility, 400, &history, &acked).await;
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
    let (owner, survivors) = cluster.one_facility(&facility, 200).await;
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
    assert_all_present(
        &survivor,
        cluster.node(survivors[0]),
        &facility,
        None,
        &acked,
    )
    .await;
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
    // `agreed(.., true)` waited for the placement over all three nodes;
    // that placement gives the newcomer a real share.
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
    let rotation = Arc::new(Mutex::new(Rotation {
        apis: cluster.live().into_iter().map(|i| cluster.api(i)).collect(),
        in_flight: BTreeMap::new(),
    }));
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
                let api = rotation.lock().expect("lock").pick(i);
                let reply = api
                    .book(
                        &facility,
                        &token,
                        json!({"plate": format!("R{worker}-{i}")}),
                    )
                    .await;
                rotation.lock().expect("lock").done(&api);
                if reply.status != 201 {
                    failures.lock().expect("lock").push(format!(
                        "book via {}: {} {}",
                        api.base, reply.status, reply.text
                    ));
                    continue;
                }
                let id = reply.json["id"].as_str().expect("id").to_owned();
                let api = rotation.lock().expect("lock").pick(i + 1);
                let cancel = api
                    .delete(&format!("/v1/bookings/{id}"), Some(&token))
                    .await;
                rotation.lock().expect("lock").done(&api);
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
            .apis
            .retain(|api| api.base != base);
        // What Kubernetes' preStop wait gives: requests that picked the node
        // just before it left the rotation reach it before it stops. Here
        // the wait lasts until they were answered (a fixed wait is not
        // enough on a loaded machine, where a request may be picked well
        // before it is sent).
        let quiet = Instant::now() + Duration::from_secs(30);
        while rotation.lock().expect("lock").busy(&base) {
            assert!(Instant::now() < quiet, "requests to n{index} never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        rotation.lock().expect("lock").apis.push(cluster.api(index));
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

/// The nodes a load balancer sends to, and the requests each has in flight.
struct Rotation {
    apis: Vec<Api>,
    in_flight: BTreeMap<String, usize>,
}

impl Rotation {
    /// The `i`-th node of the rotation, counted in flight until [`Rotation::done`].
    fn pick(&mut self, i: usize) -> Api {
        let api = self.apis[i % self.apis.len()].clone();
        *self.in_flight.entry(api.base.clone()).or_default() += 1;
        api
    }

    fn done(&mut self, api: &Api) {
        if let Some(n) = self.in_flight.get_mut(&api.base) {
            *n = n.saturating_sub(1);
        }
    }

    fn busy(&self, base: &str) -> bool {
        self.in_flight.get(base).is_some_and(|n| *n > 0)
    }
}

/// Deletes every Redis key of the cluster: members, leases, epochs — what
/// a Redis failover to a replica that missed the latest writes may do.
async fn forget_redis(prefix: &str) -> usize {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_every_lease_mid_storm_never_yields_two_writers() {
    let cluster = Cluster::start("redisloss", 3).await;
    let prefix = cluster
        .env
        .iter()
        .find(|(k, _)| k == "PARKME_REDIS_PREFIX")
        .map(|(_, v)| v.clone())
        .expect("prefix");
    let facility = "x1".to_owned();
    cluster.one_facility(&facility, 400).await;
    let history = History::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = storm(
        &cluster,
        &cluster.live(),
        &facility,
        &history,
        Arc::clone(&stop),
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let forgotten = forget_redis(&prefix).await;
        println!("forgot {forgotten} Redis keys mid-storm");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked = end_storm(&stop, tasks).await;
    println!("{} bookings acknowledged", acked.len());
    assert!(!acked.is_empty());
    assert_durable_and_linearizable(&cluster, 0, &facility, 400, &history, &acked).await;
    cluster
        .agreed(
            std::slice::from_ref(&facility),
            Duration::from_secs(20),
            false,
        )
        .await;
}

#[test]
fn a_cluster_node_without_a_secret_refuses_to_start_saying_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = format!("scylla://{}/{}", cql_server(), unique("nosecret"));
    let redis = redis_url();
    let said = crate::helpers::refused_start(
        dir.path(),
        &[
            ("PARKME_STORAGE", storage.as_str()),
            ("PARKME_REDIS_URL", redis.as_str()),
            ("PARKME_NODE_ID", "n0"),
        ],
    );
    assert!(
        said.contains("PARKME_CLUSTER_SECRET is required"),
        "it says why: {said}"
    );
    let said = crate::helpers::refused_start(
        dir.path(),
        &[
            ("PARKME_STORAGE", storage.as_str()),
            ("PARKME_REDIS_URL", redis.as_str()),
            ("PARKME_CLUSTER_SECRET", "a cluster secret for the tests"),
            ("PARKME_NODE_ID", "not a name"),
        ],
    );
    assert!(said.contains("PARKME_NODE_ID"), "it says why: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cut_off_from_redis_is_replaced_and_nothing_it_answers_after_is_lost() {
    let mut cluster = Cluster::start("cutoff", 0).await;
    let target = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut relay = crate::helpers::relay::Relay::start(&target).await;
    let through_relay = format!("redis://127.0.0.1:{}", relay.port);
    // n0 reaches Redis only through the relay; n1 and n2 directly.
    let n0 = cluster
        .spawn_with(0, &[("PARKME_REDIS_URL", through_relay.as_str())])
        .await;
    cluster.nodes.push(Some(n0));
    cluster.add().await;
    cluster.add().await;
    let facilities = ids("c", 6);
    cluster.create(1, &facilities, 200).await;
    let owners = cluster
        .agreed(&facilities, Duration::from_secs(30), true)
        .await;
    let facility = owners
        .iter()
        .find(|(_, owner)| **owner == 0)
        .map(|(f, _)| f.clone())
        .expect("n0 owns a facility");
    let history = History::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Clients of every node book, n0's included: n0 keeps answering while
    // it is cut off, from what it holds.
    let tasks = storm(
        &cluster,
        &cluster.live(),
        &facility,
        &history,
        Arc::clone(&stop),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = Instant::now();
    relay.cut();
    // The others take it over once its lease lapses.
    let deadline = cut + Duration::from_secs(60);
    loop {
        let owner = cluster.owners(1).await.get(&facility).cloned().flatten();
        if owner.as_deref().is_some_and(|o| o != "n0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nobody replaced the cut-off owner"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "cut off from Redis: replaced after {} ms",
        cut.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.listen().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = end_storm(&stop, tasks).await;
    println!("{} bookings acknowledged", acked.len());
    assert_durable_and_linearizable(&cluster, 1, &facility, 200, &history, &acked).await;
    // Back in touch, n0 rejoins: one owner again, seen alike by all.
    cluster
        .agreed(&facilities, Duration::from_secs(30), false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_bookings_racing_over_three_nodes_for_fifty_spots_give_exactly_fifty() {
    let cluster = Cluster::start("race", 3).await;
    let facility = "r1".to_owned();
    cluster.one_facility(&facility, 50).await;
    let mut racing = Vec::new();
    for i in 0..200usize {
        let api = cluster.api(i % 3);
        let token = cluster.node(i % 3).user_token(&format!("racer-{i}"));
        let facility = facility.clone();
        racing.push(tokio::spawn(async move {
            let reply = api
                .book(&facility, &token, json!({"plate": format!("RACE-{i}")}))
                .await;
            (reply.status.as_u16(), reply.json)
        }));
    }
    let mut spots = HashSet::new();
    let (mut booked, mut full) = (0, 0);
    for task in racing {
        let (status, body) = task.await.expect("racer");
        match status {
            201 => {
                booked += 1;
                assert!(
                    spots.insert(body["spot"].as_str().expect("spot").to_owned()),
                    "a spot booked twice: {body}"
                );
            }
            409 => {
                assert_eq!(body["error"]["code"], "no_spot_available", "{body}");
                full += 1;
            }
            other => panic!("a racing booking answered {other}: {body}"),
        }
    }
    assert_eq!((booked, full), (50, 150));
}

/// Reads `ws` into `follower` until every spot it shows is `state`.
async fn follow_until_all(
    ws: &mut crate::helpers::ws::Ws,
    follower: &mut crate::helpers::ws::Follower,
    spots: usize,
    state: &str,
    wait: Duration,
) {
    use crate::helpers::ws::{Said, next_within};
    let deadline = tokio::time::Instant::now() + wait;
    while follower.spots.len() < spots || follower.spots.values().any(|s| s != state) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_within(ws, left).await {
            Some(Said::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                match value["t"].as_str() {
                    Some("snapshot" | "delta") => follower.apply(&value),
                    _ => panic!("unexpected message {value}"),
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!(
                "stream stopped at seq {:?} with spots {:?}, waiting for all {state}",
                follower.seq, follower.spots
            ),
        }
    }
}

/// Sends one reading per spot `s001..` (`occupied`) and waits for the ack.
async fn readings(
    sensor: &mut crate::helpers::ws::Ws,
    seq: &mut u64,
    spots: usize,
    occupied: bool,
) {
    use crate::helpers::ws::{await_ack, send_sensor, spot};
    let messages: Vec<_> = (1..=spots)
        .map(|i| {
            *seq += 1;
            spot(*seq, &format!("s{i:03}"), occupied)
        })
        .collect();
    send_sensor(sensor, "parkme.v1.json", &messages).await;
    let errors = await_ack(sensor, *seq).await;
    assert!(errors.is_empty(), "readings refused: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_another_node_gets_the_owners_gap_free_deltas_and_resumes_with_since() {
    use crate::helpers::ws::{self, Follower};
    const SPOTS: usize = 8;
    let cluster = Cluster::start("fanout", 3).await;
    let fid = "fan1".to_owned();
    let created = cluster
        .api(0)
        .put_facility(
            &cluster.admin(),
            &fid,
            layout(vec![spot_zone("z1", "s", SPOTS, "standard")]),
        )
        .await;
    let key = created["sensor_key"]
        .as_str()
        .expect("sensor key")
        .to_owned();
    let owners = cluster
        .agreed(std::slice::from_ref(&fid), Duration::from_secs(30), false)
        .await;
    let owner = owners[&fid];
    let watcher = (0..3).find(|i| *i != owner).expect("another node");

    let mut app = ws::app(cluster.node(watcher), None).await;
    ws::subscribe(&mut app, &fid, "spots", None).await;
    let mut follower = Follower::default();
    let first = ws::next_json(&mut app).await;
    assert_eq!(
        first["t"], "snapshot",
        "a subscription starts with a snapshot: {first}"
    );
    follower.apply(&first);
    assert_eq!(follower.spots.len(), SPOTS);

    let mut sensor = ws::sensor(cluster.node(owner), &fid, &key, "parkme.v1.json").await;
    let mut seq = 0;
    readings(&mut sensor, &mut seq, SPOTS, true).await;
    follow_until_all(
        &mut app,
        &mut follower,
        SPOTS,
        "OCCUPIED",
        Duration::from_secs(20),
    )
    .await;
    let midway = follower.seq.expect("a seq");
    readings(&mut sensor, &mut seq, SPOTS, false).await;
    follow_until_all(
        &mut app,
        &mut follower,
        SPOTS,
        "AVAILABLE",
        Duration::from_secs(20),
    )
    .await;
    // Deltas, not resyncs: the chain came through Redis as the owner made it.
    assert_eq!(
        follower.snapshots, 1,
        "no fresh snapshot was needed: {follower:?}"
    );
    assert!(follower.deltas >= 2, "{follower:?}");
    let owner_seq = ws::facility_seq(cluster.node(owner), &fid).await;
    assert_eq!(
        follower.seq,
        Some(owner_seq),
        "the copy is at the owner's seq"
    );

    // `since` resumes on this node from its own history: no snapshot.
    let mut again = ws::app(cluster.node(watcher), None).await;
    ws::subscribe(&mut again, &fid, "spots", Some(midway)).await;
    let resumed = ws::next_json(&mut again).await;
    assert_eq!(resumed["t"], "delta", "resumed with deltas: {resumed}");
    assert_eq!(resumed["prev"].as_u64(), Some(midway), "{resumed}");
    let mut follower = Follower {
        seq: Some(midway),
        ..Follower::default()
    };
    follower.apply(&resumed);
    while follower.seq < Some(owner_seq) {
        let next = ws::next_json(&mut again).await;
        follower.apply(&next);
    }
    assert_eq!(follower.seq, Some(owner_seq));
}

/// After the owner dies, a subscriber on another node follows the new
/// owner without resubscribing: a fresh snapshot at most, its seq never
/// going back, and later readings (sent to the new owner) reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_another_node_follows_the_facility_to_its_next_owner() {
    use crate::helpers::ws::{self, Follower};
    const SPOTS: usize = 6;
    let mut cluster = Cluster::start("fanmove", 3).await;
    let fid = "fan2".to_owned();
    let created = cluster
        .api(0)
        .put_facility(
            &cluster.admin(),
            &fid,
            layout(vec![spot_zone("z1", "s", SPOTS, "standard")]),
        )
        .await;
    let key = created["sensor_key"]
        .as_str()
        .expect("sensor key")
        .to_owned();
    let owners = cluster
        .agreed(std::slice::from_ref(&fid), Duration::from_secs(30), false)
        .await;
    let owner = owners[&fid];
    let watcher = (0..3).find(|i| *i != owner).expect("another node");
    let mut app = ws::app(cluster.node(watcher), None).await;
    ws::subscribe(&mut app, &fid, "spots", None).await;
    let mut follower = Follower::default();
    let mut sensor = ws::sensor(cluster.node(owner), &fid, &key, "parkme.v1.json").await;
    let mut seq = 0;
    readings(&mut sensor, &mut seq, SPOTS, true).await;
    follow_until_all(
        &mut app,
        &mut follower,
        SPOTS,
        "OCCUPIED",
        Duration::from_secs(20),
    )
    .await;
    let before = follower.seq.expect("a seq");

    drop(sensor);
    cluster.kill9(owner);
    let owners = cluster
        .agreed(std::slice::from_ref(&fid), Duration::from_secs(30), false)
        .await;
    let next = owners[&fid];
    let mut sensor = ws::sensor(cluster.node(next), &fid, &key, "parkme.v1.json").await;
    let mut seq = 0;
    readings(&mut sensor, &mut seq, SPOTS, false).await;
    follow_until_all(
        &mut app,
        &mut follower,
        SPOTS,
        "AVAILABLE",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        follower.seq > Some(before),
        "seq went on growing: {follower:?}"
    );
}

/// Contract §7: bookings and cancels over the app socket of a node that
/// does not own the facility work as over HTTP: served by the owner, a
/// resent key answered with the first booking, the cancel seen by all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_and_cancels_over_any_nodes_app_socket_are_served_by_the_owner() {
    use crate::helpers::ws;
    let cluster = Cluster::start("sockbook", 3).await;
    let fid = "sock1".to_owned();
    let (owner, others) = cluster.one_facility(&fid, 4).await;
    let token = cluster.node(0).user_token("driver-sock");
    let mut app = ws::app(cluster.node(others[0]), Some(&token)).await;

    let book = json!({"op": "book", "req": "r1", "facility": fid, "plate": "SOCK-1",
        "idempotency_key": "sock-key-1"});
    ws::send_json(&mut app, &book).await;
    let booked = ws::next_json(&mut app).await;
    assert_eq!(booked["t"], "booking", "{booked}");
    assert_eq!(booked["req"], "r1");
    let id = booked["booking"]["id"].as_str().expect("id").to_owned();
    assert_eq!(booked["booking"]["status"], "CONFIRMED", "{booked}");

    // The same key again: the first booking, not a second spot.
    let mut again = book.clone();
    again["req"] = "r2".into();
    ws::send_json(&mut app, &again).await;
    let replayed = ws::next_json(&mut app).await;
    assert_eq!(replayed["req"], "r2", "{replayed}");
    assert_eq!(replayed["booking"]["id"].as_str(), Some(id.as_str()));
    let seen = cluster
        .api(owner)
        .get(&format!("/v1/bookings/{id}"), Some(&token))
        .await;
    assert_eq!(seen.assert_status(200)["spot"], booked["booking"]["spot"]);

    // A refusal reads as on the owner: an unknown zone.
    let bad =
        json!({"op": "book", "req": "r3", "facility": fid, "plate": "SOCK-2", "zone": "nope"});
    ws::send_json(&mut app, &bad).await;
    let refused = ws::next_json(&mut app).await;
    assert_eq!(refused["t"], "error", "{refused}");
    assert_eq!(refused["req"], "r3");
    let direct = cluster
        .api(owner)
        .book(&fid, &token, json!({"plate": "SOCK-2", "zone": "nope"}))
        .await;
    assert_eq!(refused["code"], direct.json["error"]["code"], "{direct:?}");

    ws::send_json(
        &mut app,
        &json!({"op": "cancel", "req": "r4", "booking": id}),
    )
    .await;
    let cancelled = ws::next_json(&mut app).await;
    assert_eq!(cancelled["req"], "r4", "{cancelled}");
    assert_eq!(cancelled["booking"]["status"], "CANCELLED", "{cancelled}");
    let seen = cluster
        .api(owner)
        .get(&format!("/v1/bookings/{id}"), Some(&token))
        .await;
    assert_eq!(seen.assert_status(200)["status"], "CANCELLED");
}

/// Every spot of `fid`'s zone `z1` as node `via` answers: `state`? Polls
/// for a moment (a read may reach the model just before the commit's
/// publication lands).
async fn all_spots_are(cluster: &Cluster, via: usize, fid: &str, state: &str) -> bool {
    for _ in 0..40 {
        let states = cluster.api(via).spot_states(fid, "z1").await;
        if !states.is_empty() && states.iter().all(|(_, s)| s == state) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Contract §7: a sensor may connect to any node. Its handshake is judged
/// as the owner would; its readings are acked only once the owner made
/// them durable (they survive the owner's kill -9); when the facility
/// moves, the same socket goes on being served, without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_on_a_non_owner_is_acked_after_durability_and_survives_an_ownership_move() {
    use crate::helpers::ws;
    const SPOTS: usize = 6;
    let mut cluster = Cluster::start("sensany", 3).await;
    let fid = "sens1".to_owned();
    let created = cluster
        .api(0)
        .put_facility(
            &cluster.admin(),
            &fid,
            layout(vec![spot_zone("z1", "s", SPOTS, "standard")]),
        )
        .await;
    let key = created["sensor_key"]
        .as_str()
        .expect("sensor key")
        .to_owned();
    let owners = cluster
        .agreed(std::slice::from_ref(&fid), Duration::from_secs(30), false)
        .await;
    let owner = owners[&fid];
    let holder = (0..3).find(|i| *i != owner).expect("another node");

    // The handshake on a non-owner answers as the owner's would.
    let url = format!("{}/v1/sensors/{fid}", cluster.node(holder).ws_url());
    let wrong = ws::open(&url, &[("authorization", "Bearer sk_not_the_key")]).await;
    assert_eq!(ws::refused_status(wrong), 401);
    let missing = ws::open(&url, &[]).await;
    assert_eq!(ws::refused_status(missing), 401);
    let unknown = format!("{}/v1/sensors/nowhere", cluster.node(holder).ws_url());
    let bearer = format!("Bearer {key}");
    let unknown = ws::open(&unknown, &[("authorization", bearer.as_str())]).await;
    assert_eq!(ws::refused_status(unknown), 404);

    let mut sensor = ws::sensor(cluster.node(holder), &fid, &key, "parkme.v1.json").await;
    let mut seq = 0;
    readings(&mut sensor, &mut seq, SPOTS, true).await;
    // Acked means durable on the owner: it survives the owner's death.
    cluster.kill9(owner);
    let owners = cluster
        .agreed(std::slice::from_ref(&fid), Duration::from_secs(30), false)
        .await;
    let next = owners[&fid];
    assert!(
        all_spots_are(&cluster, next, &fid, "OCCUPIED").await,
        "acknowledged readings lost with their owner: {:?}",
        cluster.api(next).spot_states(&fid, "z1").await
    );
    // The same socket, not a new one, on whichever node owns it now.
    readings(&mut sensor, &mut seq, SPOTS, false).await;
    assert!(
        all_spots_are(&cluster, next, &fid, "AVAILABLE").await,
        "readings after the move: {:?}",
        cluster.api(next).spot_states(&fid, "z1").await
    );
}
