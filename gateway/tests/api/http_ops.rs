//! Contract §1–2 and §6 over real sockets, the process as a whole:
//! concurrency never double-books, an acknowledged booking survives
//! `kill -9`, idempotency keys survive a restart, SIGTERM is a clean exit,
//! a second process on the same data dir is refused, `/health/` and
//! `/metrics` answer as promised.

use crate::helpers::{self, http};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestServer;
use crate::helpers::http::{Api, NO_LIMITS, layout, spot_zone};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_bookings_for_fifty_spots_give_exactly_fifty() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![
            spot_zone("A", "A-", 30, "standard"),
            spot_zone("B", "B-", 20, "standard"),
        ]),
    )
    .await;

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let api = api.clone();
            let token = server.user_token(&format!("user-{i}"));
            tokio::spawn(async move {
                api.book("f1", &token, json!({"plate": format!("CAR-{i}")}))
                    .await
            })
        })
        .collect();
    let mut spots = HashSet::new();
    let mut refused = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status.as_u16() {
            201 => {
                let spot = reply.json["spot"].as_str().expect("a spot").to_owned();
                assert!(spots.insert(spot.clone()), "{spot} booked twice");
            }
            409 => {
                reply.assert_error(409, "no_spot_available");
                refused += 1;
            }
            _ => panic!("unexpected answer {reply:?}"),
        }
    }
    assert_eq!(spots.len(), 50);
    assert_eq!(refused, 150);

    let facility = api.get("/v1/facilities/f1", None).await;
    let totals = &facility.assert_status(200)["totals"];
    assert_eq!(totals["reserved"], 50);
    assert_eq!(totals["available"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bookings_survive_kill_9() {
    let mut server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 40, "standard")]),
    )
    .await;
    let token = server.user_token("alice");

    // A stream of bookings, 4 at a time; the process is killed the moment
    // the 30th acknowledgement arrives, with more requests in flight.
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (acks, token) = (acks.clone(), token.clone());
        let url = format!("{}/v1/facilities/f1/bookings", server.url());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..10 {
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"plate": format!("K9-{worker}-{i}")}))
                    .send()
                    .await;
                // Past the kill, requests fail: that is the point.
                let Ok(response) = sent else { return };
                if response.status() != 201 {
                    return;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let _ = acks.send((
                    body["id"].as_str().expect("id").to_owned(),
                    body["spot"].as_str().expect("spot").to_owned(),
                ));
            }
        }));
    }
    drop(acks);
    let mut acknowledged = Vec::new();
    while let Some(ack) = acked.recv().await {
        acknowledged.push(ack);
        if acknowledged.len() == 30 {
            break;
        }
    }
    assert_eq!(acknowledged.len(), 30, "the bookings were acknowledged");
    server.kill9();
    for worker in workers {
        worker.await.expect("worker");
    }
    // An acknowledgement that raced the kill is acknowledged all the same.
    while let Ok(ack) = acked.try_recv() {
        acknowledged.push(ack);
    }

    server.restart().await;
    let api = Api::new(&server);
    let states: std::collections::HashMap<String, String> =
        api.spot_states("f1", "A").await.into_iter().collect();
    for (id, spot) in &acknowledged {
        let reply = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
        let booking = reply.assert_status(200);
        assert_eq!(booking["status"], "CONFIRMED", "{booking}");
        assert_eq!(booking["spot"], spot.as_str());
        assert_eq!(states[spot], "RESERVED", "spot {spot} after restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_survives_a_restart() {
    let mut server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 5, "standard")]),
    )
    .await;
    let token = server.user_token("alice");
    let book = |api: Api, token: String| async move {
        api.send(
            reqwest::Method::POST,
            "/v1/facilities/f1/bookings",
            Some(&token),
            http::Body::Json(json!({"plate": "AB-123"})),
            &[("Idempotency-Key", "retry-me-1")],
        )
        .await
    };
    let first = book(api.clone(), token.clone()).await;
    let id = first.assert_status(201)["id"].clone();

    server.kill9();
    server.restart().await;
    let api = Api::new(&server);

    let retry = book(api.clone(), token.clone()).await;
    assert_eq!(retry.assert_status(200)["id"], id);
    let facility = api.get("/v1/facilities/f1", None).await;
    assert_eq!(facility.assert_status(200)["totals"]["reserved"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_ten_seconds() {
    let mut server = TestServer::start(&[]).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 3, "standard")]),
    )
    .await;
    let token = server.user_token("alice");
    let booking = api.book("f1", &token, json!({"plate": "TERM-1"})).await;
    let id = booking.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A stalled client (half a request, never finished) must not hold
    // the exit.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    std::io::Write::write_all(
        &mut stalled,
        b"PUT /v1/facilities/f9 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    .expect("half a request");
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    std::io::Write::write_all(&mut idle, b"GET /health/ HTTP/1.1\r\n").expect("half a head");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pid = server.pid().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let signalled = Instant::now();
    let child = server.child_mut().expect("running");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    drop((stalled, idle));

    // What was acknowledged before the signal is there after a restart.
    server.restart().await;
    let api = Api::new(&server);
    let reply = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
    assert_eq!(reply.assert_status(200)["status"], "CONFIRMED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_data_dir_exits_non_zero_naming_the_directory() {
    let server = TestServer::start(&[]).await;
    let output = helpers::parkme_serve(server.data_dir())
        .env("PARKME_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .output()
        .expect("the second parkme runs");
    assert!(!output.status.success(), "exit status {:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&server.data_dir().display().to_string()) && stderr.contains("in use"),
        "the error names the directory in use: {stderr}"
    );
    // The first one serves on, untouched.
    let health = reqwest::get(format!("{}/health/", server.url()))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn health_is_200_healthy_with_checks_on_both_paths() {
    let server = TestServer::start(&[]).await;
    let api = Api::new(&server);
    for path in ["/health/", "/health"] {
        let reply = api.get(path, None).await;
        let health = reply.assert_status(200);
        assert_eq!(health["status"], "healthy", "{path}");
        let checks = health["checks"].as_object().expect("checks object");
        assert!(!checks.is_empty());
        assert_eq!(checks["storage"]["status"], "up");
    }
}

/// Every family of contract §6.
const FAMILIES: [&str; 8] = [
    "parkme_sensor_events_total",
    "parkme_bookings_total",
    "parkme_booking_latency_seconds",
    "parkme_ws_connections",
    "parkme_journal_write_seconds",
    "parkme_snapshot_seconds",
    "parkme_actor_mailbox_len",
    "parkme_spots",
];

#[tokio::test]
async fn metrics_expose_every_family_and_promtool_accepts_them() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    // A fresh server shows every family, before any event.
    let fresh = api.get("/metrics", None).await;
    fresh.assert_status(200);
    for family in FAMILIES {
        assert!(
            fresh.text.lines().any(|l| l.starts_with(family)),
            "{family} missing from a fresh scrape:\n{}",
            fresh.text
        );
    }
    promtool_accepts(&fresh.text);

    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 3, "standard")]),
    )
    .await;
    let user = server.user_token("alice");
    api.book("f1", &user, json!({"plate": "AB1"}))
        .await
        .assert_status(201);
    api.book("f1", &user, json!({"plate": "AB1", "kind": "motorcycle"}))
        .await
        .assert_status(409);
    let reply = api.get("/metrics", None).await;
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for family in FAMILIES {
        assert!(
            reply.text.contains(&format!("# TYPE {family} ")),
            "no TYPE line for {family}"
        );
    }
    let created = metric_value(&reply.text, "parkme_bookings_total{outcome=\"created\"}");
    assert!(created >= 1.0, "created bookings counted: {created}");
    let refused = metric_value(
        &reply.text,
        "parkme_bookings_total{outcome=\"no_spot_available\"}",
    );
    assert!(refused >= 1.0, "refused bookings counted: {refused}");
    assert!(
        reply
            .text
            .contains("parkme_booking_latency_seconds_bucket{")
    );
    assert!(reply.text.contains("parkme_spots{state=\"RESERVED\"}"));
    promtool_accepts(&reply.text);
}

#[tokio::test]
async fn metrics_report_the_process_memory_descriptors_tasks_and_clock_offset() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    let reply = api.get("/metrics", None).await;
    reply.assert_status(200);
    let rss = metric_value(&reply.text, "parkme_process_resident_memory_bytes");
    let kib = crate::helpers::ws::rss_kib(server.pid()) as f64;
    assert!(
        rss > 0.5 * kib * 1024.0 && rss < 2.0 * kib * 1024.0,
        "resident memory {rss} bytes, /proc says {kib} KiB"
    );
    let fds = metric_value(&reply.text, "parkme_process_open_fds");
    let listed = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("the server's fds")
        .count() as f64;
    assert!(
        fds >= 3.0 && (fds - listed).abs() < 32.0,
        "fds {fds}, /proc lists {listed}"
    );
    assert!(metric_value(&reply.text, "parkme_runtime_alive_tasks") >= 1.0);
    let offset = metric_value(&reply.text, "parkme_clock_offset_seconds");
    assert!(offset.abs() < 5.0, "an unstepped clock: offset {offset} s");
    promtool_accepts(&reply.text);
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}

/// Fails (never skips) when promtool is missing or unhappy.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool ({promtool}) must be installed: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics refused the exposition:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
