//! Contract §8 through the real binary: `parkme backup` while the engine
//! serves, `parkme restore` into an empty store of any backend, and the
//! file's own protection. CQL tests use the server at `PARKME_TEST_CQL`,
//! each in keyspaces of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::http::{self, Api, NO_LIMITS, layout, spot_zone};
use crate::helpers::{ADMIN_TOKEN, TestServer, cql_server, test_keyspace, ws};

/// A `scylla://` URI of a keyspace no other test (or run) uses.
fn fresh_keyspace(tag: &str) -> String {
    format!("scylla://{}/{}", cql_server(), test_keyspace(tag))
}

/// Runs `parkme <args>` with exactly `env` as its PARKME_* settings.
async fn parkme(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        crate::helpers::parkme()
            .args(&args)
            .envs(env)
            .env("RUST_LOG", "warn")
            .output()
            .expect("parkme runs")
    })
    .await
    .expect("the command's thread")
}

#[track_caller]
fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What a client sees of a deployment: every facility, its spots per
/// zone, and every booking named.
async fn views(api: &Api, facilities: &[&str], bookings: &[String]) -> BTreeMap<String, Value> {
    let mut seen = BTreeMap::new();
    for fid in facilities {
        let facility = api.get(&format!("/v1/facilities/{fid}"), None).await;
        let facility = facility.assert_status(200).clone();
        for zone in facility["zones"].as_array().expect("zones") {
            let zid = zone["id"].as_str().expect("zone id");
            let spots = api
                .get(&format!("/v1/facilities/{fid}/zones/{zid}/spots"), None)
                .await;
            seen.insert(
                format!("{fid}/{zid}/spots"),
                spots.assert_status(200).clone(),
            );
        }
        seen.insert((*fid).to_owned(), facility);
    }
    for id in bookings {
        let booking = api
            .get(&format!("/v1/bookings/{id}"), Some(ADMIN_TOKEN))
            .await;
        seen.insert(format!("booking {id}"), booking.assert_status(200).clone());
    }
    seen
}

fn garage() -> Value {
    layout(vec![
        spot_zone("z1", "a", 40, "standard"),
        spot_zone("z2", "e", 10, "ev"),
        json!({"id": "c", "capacity": 25}),
    ])
}

/// A deployment with confirmed, cancelled, counter and out-of-service
/// state; returns the booking ids.
async fn populate(server: &TestServer) -> Vec<String> {
    let api = Api::new(server);
    api.put_facility(server.admin_token(), "f1", garage()).await;
    api.put_facility(
        server.admin_token(),
        "f2",
        layout(vec![spot_zone("q", "q", 5, "compact")]),
    )
    .await;
    let token = server.user_token("mover");
    let mut ids = Vec::new();
    for (i, body) in [
        json!({"plate": "AA-1", "zone": "z1"}),
        json!({"plate": "AA-2", "zone": "z2", "kind": "ev"}),
        json!({"plate": "AA-3", "zone": "c"}),
        json!({"plate": "AA-4", "zone": "z1", "hold_seconds": 7200}),
        json!({"plate": "AA-5", "zone": "z1"}),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = api.book("f1", &token, body).await;
        let id = reply.assert_status(201)["id"]
            .as_str()
            .expect("id")
            .to_owned();
        if i == 4 {
            api.delete(&format!("/v1/bookings/{id}"), Some(&token))
                .await
                .assert_status(200);
        }
        ids.push(id);
    }
    let keyed = api
        .send(
            reqwest::Method::POST,
            "/v1/facilities/f2/bookings",
            Some(&token),
            http::Body::Json(json!({"plate": "KEY-1"})),
            &[("idempotency-key", "retry-me")],
        )
        .await;
    ids.push(
        keyed.assert_status(201)["id"]
            .as_str()
            .expect("id")
            .to_owned(),
    );
    api.put(
        "/v1/facilities/f1/spots/a040/service",
        Some(server.admin_token()),
        json!({"out_of_service": true}),
    )
    .await
    .assert_status(200);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_cql_and_back_with_identical_views() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = TestServer::start(NO_LIMITS).await;
    let bookings = populate(&first).await;
    let before = views(&Api::new(&first), &["f1", "f2"], &bookings).await;

    // The running server holds its directory: the backup goes through it.
    let file1 = dir.path().join("from-embedded.pkb");
    let data_dir = first.data_dir().to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{}", first.port());
    let out = parkme(
        &["backup", "--out", &file1.to_string_lossy()],
        &[
            ("PARKME_DATA_DIR", &data_dir),
            ("PARKME_LISTEN", &listen),
            ("PARKME_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    assert_ok("backup of a running embedded server", &out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 facilities"),
        "{out:?}"
    );
    drop(first);

    let keyspace = fresh_keyspace("mv");
    let cql = [("PARKME_STORAGE", keyspace.as_str())];
    assert_ok(
        "restore into CQL",
        &parkme(&["restore", "--from", &file1.to_string_lossy()], &cql).await,
    );
    let on_cql = TestServer::start(&[NO_LIMITS, &cql[..]].concat()).await;
    let middle = views(&Api::new(&on_cql), &["f1", "f2"], &bookings).await;
    assert_eq!(
        middle, before,
        "the CQL store shows what the embedded one did"
    );

    // Read from CQL while that server serves it.
    let file2 = dir.path().join("from-cql.pkb");
    assert_ok(
        "backup of a serving CQL keyspace",
        &parkme(&["backup", "--out", &file2.to_string_lossy()], &cql).await,
    );
    drop(on_cql);
    let back = tempfile::tempdir().expect("temp dir");
    let back_dir = back.path().to_string_lossy().into_owned();
    assert_ok(
        "restore into embedded",
        &parkme(
            &["restore", "--from", &file2.to_string_lossy()],
            &[("PARKME_DATA_DIR", &back_dir)],
        )
        .await,
    );
    let last = TestServer::start_on(NO_LIMITS, back).await;
    let api = Api::new(&last);
    assert_eq!(views(&api, &["f1", "f2"], &bookings).await, before);

    // The idempotency key came along: a retry replays its booking.
    let retry = api
        .send(
            reqwest::Method::POST,
            "/v1/facilities/f2/bookings",
            Some(&last.user_token("mover")),
            http::Body::Json(json!({"plate": "KEY-1"})),
            &[("idempotency-key", "retry-me")],
        )
        .await;
    assert_eq!(retry.assert_status(200)["id"], bookings[5].as_str());
    // And the restored zones serve: the next booking takes a free spot.
    let next = api
        .book(
            "f1",
            &last.user_token("mover"),
            json!({"plate": "NEW-1", "zone": "z1"}),
        )
        .await;
    assert_eq!(
        next.assert_status(201)["spot"],
        "a003",
        "the cancelled booking's spot"
    );
}

/// Bookings acknowledged while the load runs, with the time of their ack.
#[derive(Debug, Default)]
struct Acked {
    /// id → (spot, status) as acknowledged, in ack order.
    bookings: Vec<(String, Value, String, std::time::Instant)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_bookings_and_readings_flow_holds_every_booking_acknowledged_before_it()
 {
    let source = fresh_keyspace("live");
    let env = [
        NO_LIMITS,
        &[
            ("PARKME_STORAGE", source.as_str()),
            ("PARKME_RATE_SENSOR_PER_SEC", "0"),
        ][..],
    ]
    .concat();
    let mut server = TestServer::start(&env).await;
    let api = Api::new(&server);
    let created = api
        .put_facility(
            server.admin_token(),
            "live",
            layout(vec![
                spot_zone("z1", "b", 300, "standard"),
                spot_zone("r", "r", 50, "standard"),
                json!({"id": "c", "capacity": 100}),
            ]),
        )
        .await;
    let sensor_key = created["sensor_key"]
        .as_str()
        .expect("sensor key")
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (api, stop, acked) = (Api::new(&server), Arc::clone(&stop), Arc::clone(&acked));
        let token = server.user_token(&format!("w{worker}"));
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let zone = if n % 3 == 0 { "c" } else { "z1" };
                let body =
                    json!({"plate": format!("W{worker}-{n}"), "zone": zone, "hold_seconds": 3600});
                let reply = api.book("live", &token, body).await;
                if reply.status != 201 {
                    continue;
                }
                let id = reply.json["id"].as_str().expect("id").to_owned();
                let mut status = "CONFIRMED".to_owned();
                // Some are cancelled right away (before the backup for
                // the early ones, so their status is settled).
                if n % 4 == 0 {
                    let cancel = api
                        .delete(&format!("/v1/bookings/{id}"), Some(&token))
                        .await;
                    if cancel.status != 200 {
                        continue;
                    }
                    status = "CANCELLED".to_owned();
                }
                let at = std::time::Instant::now();
                acked.lock().expect("lock").bookings.push((
                    id,
                    reply.json["spot"].clone(),
                    status,
                    at,
                ));
            }
        }));
    }
    // Readings flow on the zone nobody books (they never touch bookings).
    let readings = {
        let mut ws = ws::sensor(&server, "live", &sensor_key, ws::JSON).await;
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let message = json!({"t": "spot", "seq": seq, "spot": format!("r{:03}", seq % 50 + 1), "occupied": seq.is_multiple_of(2)});
                ws::send_json(&mut ws, &message).await;
                ws::await_ack(&mut ws, seq).await;
            }
            seq
        })
    };
    // Until enough bookings (confirmed and cancelled) were acknowledged.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").bookings.len() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never got going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("live.pkb");
    let began = std::time::Instant::now();
    let out = parkme(
        &["backup", "--out", &file.to_string_lossy()],
        &[("PARKME_STORAGE", source.as_str())],
    )
    .await;
    assert_ok("backup while serving", &out);
    // The load went on during the backup; let it run a little more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("booker");
    }
    let sent = readings.await.expect("sensor");
    assert!(sent > 10, "readings flowed ({sent})");
    server.kill9();

    let target = fresh_keyspace("into");
    assert_ok(
        "restore into a fresh keyspace",
        &parkme(
            &["restore", "--from", &file.to_string_lossy()],
            &[("PARKME_STORAGE", target.as_str())],
        )
        .await,
    );
    let restored =
        TestServer::start(&[NO_LIMITS, &[("PARKME_STORAGE", target.as_str())][..]].concat()).await;
    let api = Api::new(&restored);
    let acked = std::mem::take(&mut acked.lock().expect("lock").bookings);
    let before: Vec<_> = acked.iter().filter(|(_, _, _, at)| *at < began).collect();
    assert!(
        before.len() >= 40,
        "bookings were acknowledged before the backup ({})",
        before.len()
    );
    for (id, spot, status, _) in &before {
        let reply = api
            .get(&format!("/v1/bookings/{id}"), Some(ADMIN_TOKEN))
            .await;
        let booking = reply.assert_status(200);
        assert_eq!(&booking["spot"], spot, "spot of {id}");
        assert_eq!(booking["status"], status.as_str(), "status of {id}");
    }
    // The restored records agree with the restored zones: every reserved
    // spot's booking is confirmed on that very spot, and every confirmed
    // spot-zone booking acknowledged before the backup holds its spot.
    let spots = api.get("/v1/facilities/live/zones/z1/spots", None).await;
    let mut held = BTreeMap::new();
    for spot in spots.assert_status(200)["spots"].as_array().expect("spots") {
        if spot["state"] == "RESERVED" {
            let id = spot["booking"]
                .as_str()
                .expect("a reserved spot names its booking");
            let booking = api
                .get(&format!("/v1/bookings/{id}"), Some(ADMIN_TOKEN))
                .await;
            let booking = booking.assert_status(200);
            assert_eq!(booking["status"], "CONFIRMED", "{booking}");
            assert_eq!(booking["spot"], spot["id"], "{booking}");
            held.insert(id.to_owned(), spot["id"].clone());
        }
    }
    for (id, spot, status, _) in &before {
        if status == "CONFIRMED" && !spot.is_null() {
            assert_eq!(held.get(id), Some(spot), "booking {id} holds its spot");
        }
    }
}

/// A backup of a small populated server, and what the command printed.
async fn small_backup_with_output(dir: &Path) -> (PathBuf, Output) {
    let server = TestServer::start(NO_LIMITS).await;
    populate(&server).await;
    let file = dir.join("small.pkb");
    let data_dir = server.data_dir().to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{}", server.port());
    let output = parkme(
        &["backup", "--out", &file.to_string_lossy()],
        &[
            ("PARKME_DATA_DIR", &data_dir),
            ("PARKME_LISTEN", &listen),
            ("PARKME_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    assert_ok("backup", &output);
    (file, output)
}

async fn small_backup(dir: &Path) -> PathBuf {
    small_backup_with_output(dir).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_show_progress_on_stderr_and_a_summary_on_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, backup) = small_backup_with_output(dir.path()).await;
    // stderr is a pipe here, as in a CronJob's log: plain progress lines.
    let stderr = String::from_utf8_lossy(&backup.stderr);
    let stdout = String::from_utf8_lossy(&backup.stdout);
    assert!(stderr.contains("zones: "), "backup's stderr: {stderr}");
    assert!(
        stdout.starts_with("backup: ") && stdout.contains(" facilities, "),
        "backup's stdout: {stdout}"
    );
    assert!(!stdout.contains("zones: "), "progress on stdout: {stdout}");
    let target = dir.path().join("restored");
    let target_dir = target.to_string_lossy().into_owned();
    let restore = parkme(
        &["restore", "--from", &file.to_string_lossy()],
        &[("PARKME_DATA_DIR", &target_dir)],
    )
    .await;
    assert_ok("restore", &restore);
    let stderr = String::from_utf8_lossy(&restore.stderr);
    let stdout = String::from_utf8_lossy(&restore.stdout);
    assert!(stderr.contains("verifying: "), "restore's stderr: {stderr}");
    assert!(
        stdout.starts_with("restore: ") && stdout.contains("restored: "),
        "restore's stdout: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_bit_flipped_file_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = small_backup(dir.path()).await;
    let bytes = std::fs::read(&file).expect("read the backup");
    let mut damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() - 100].to_vec()),
        ("cut at the end marker", bytes[..bytes.len() - 3].to_vec()),
        ("cut inside the header", bytes[..200].to_vec()),
    ];
    for at in [100, 600, bytes.len() / 2, bytes.len() - 10] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        damaged.push(("bit-flipped", flipped));
    }
    let keyspace = fresh_keyspace("bad");
    for (i, (what, content)) in damaged.into_iter().enumerate() {
        let path = dir.path().join(format!("damaged-{i}.pkb"));
        std::fs::write(&path, content).expect("write");
        let target = dir.path().join(format!("target-{i}"));
        let target_dir = target.to_string_lossy().into_owned();
        let out = parkme(
            &["restore", "--from", &path.to_string_lossy()],
            &[("PARKME_DATA_DIR", &target_dir)],
        )
        .await;
        assert!(!out.status.success(), "a {what} file was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused") && stderr.contains("nothing was written"),
            "{what}: {stderr}"
        );
        assert!(
            !target.exists(),
            "restoring a {what} file created {}",
            target.display()
        );
        if i == 0 {
            // Nor on CQL: the keyspace is never even created.
            let out = parkme(
                &["restore", "--from", &path.to_string_lossy()],
                &[("PARKME_STORAGE", keyspace.as_str())],
            )
            .await;
            assert!(!out.status.success(), "a {what} file was accepted into CQL");
        }
    }
    // The intact file still restores.
    let good = dir.path().join("good");
    let good_dir = good.to_string_lossy().into_owned();
    assert_ok(
        "restore",
        &parkme(
            &["restore", "--from", &file.to_string_lossy()],
            &[("PARKME_DATA_DIR", &good_dir)],
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_into_a_store_that_holds_data_is_refused_without_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = small_backup(dir.path()).await;
    let target = tempfile::tempdir().expect("temp dir");
    let target_dir = target.path().to_string_lossy().into_owned();
    let env = [("PARKME_DATA_DIR", target_dir.as_str())];
    // A store with data of its own.
    let server = TestServer::start_on(NO_LIMITS, target).await;
    Api::new(&server)
        .put_facility(
            server.admin_token(),
            "mine",
            layout(vec![spot_zone("m", "m", 3, "standard")]),
        )
        .await;
    let mut server = server;
    server.kill9();

    let out = parkme(&["restore", "--from", &file.to_string_lossy()], &env).await;
    assert!(!out.status.success(), "a non-empty store was restored into");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("--force"),
        "{stderr}"
    );

    assert_ok(
        "restore --force",
        &parkme(
            &["restore", "--from", &file.to_string_lossy(), "--force"],
            &env,
        )
        .await,
    );
    server.restart().await;
    let api = Api::new(&server);
    api.get("/v1/facilities/mine", None)
        .await
        .assert_status(404);
    api.get("/v1/facilities/f1", None).await.assert_status(200);
}
