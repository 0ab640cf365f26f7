//! Contract §5, the app socket, against the real binary over real
//! sockets: one test per promise.

mod common;
#[path = "ws_common/mod.rs"]
mod ws_common;

use std::time::Duration;

use common::TestServer;
use parkme_gateway::ws::protocol::SensorMessage;
use serde_json::{Value, json};
use ws_common::*;

async fn server_with_facility(zones: Vec<Value>) -> (TestServer, String) {
    let server = TestServer::start(NO_LIMITS).await;
    let key = put_facility(&server, "f1", zones).await;
    (server, key)
}

#[tokio::test]
async fn two_sensors_and_several_subscribers_get_a_snapshot_then_gap_free_deltas() {
    let (server, key) = server_with_facility(vec![spot_zone("A", 50), spot_zone("B", 50)]).await;
    let mut subscribers = Vec::new();
    for detail in ["spots", "spots", "zones", "spots"] {
        let mut ws = app(&server, None).await;
        subscribe(&mut ws, "f1", detail, None).await;
        let snapshot = next_json(&mut ws).await;
        assert_eq!(snapshot["t"], "snapshot", "{snapshot}");
        assert_eq!(snapshot["facility"], "f1");
        assert_eq!(snapshot["zones"].as_array().map(Vec::len), Some(2));
        assert_eq!(snapshot["zones"][0]["total"], 50);
        assert!(snapshot["zones"][0]["by_kind"].is_object());
        if detail == "spots" {
            assert_eq!(snapshot["spots"].as_array().map(Vec::len), Some(100));
            assert_eq!(snapshot["spots"][0]["state"], "AVAILABLE");
        } else {
            assert!(snapshot.get("spots").is_none(), "zones detail: {snapshot}");
        }
        let mut follower = Follower::default();
        follower.apply(&snapshot);
        subscribers.push((ws, follower, detail));
    }
    // Two sensors at once, one per zone, 200 changes each.
    let mut tasks = Vec::new();
    for zone in ["A", "B"] {
        let mut ws = sensor(
            &server,
            "f1",
            &key,
            if zone == "A" { JSON } else { BINCODE },
        )
        .await;
        let protocol = if zone == "A" { JSON } else { BINCODE };
        tasks.push(tokio::spawn(async move {
            for seq in 1..=200u64 {
                let spot_id = format!("{zone}-{}", seq % 50 + 1);
                send_sensor(
                    &mut ws,
                    protocol,
                    &[spot(seq, &spot_id, !seq.is_multiple_of(3))],
                )
                .await;
            }
            await_ack(&mut ws, 200).await
        }));
    }
    for task in tasks {
        assert!(task.await.expect("sensor task").is_empty());
    }
    let seq = facility_seq(&server, "f1").await;
    let truth_a = spot_states(&server, "f1", "A").await;
    let truth_b = spot_states(&server, "f1", "B").await;
    for (ws, follower, detail) in &mut subscribers {
        follow_until(ws, follower, seq, WAIT).await;
        assert_eq!(follower.seq, Some(seq));
        assert_eq!(
            follower.zones["A"]["occupied"],
            truth_a.iter().filter(|(_, s)| s == "OCCUPIED").count()
        );
        if *detail == "spots" {
            for (id, state) in truth_a.iter().chain(truth_b.iter()) {
                assert_eq!(follower.spots.get(id), Some(state), "spot {id}");
            }
        } else {
            assert!(follower.spots.is_empty());
        }
    }
}

#[tokio::test]
async fn since_resumes_from_history_without_a_snapshot_or_sends_a_fresh_one() {
    let (server, key) = server_with_facility(vec![spot_zone("A", 10)]).await;
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    for seq in 1..=5 {
        send_sensor(
            &mut sensor_ws,
            JSON,
            &[spot(seq, &format!("A-{seq}"), true)],
        )
        .await;
        assert!(await_ack(&mut sensor_ws, seq).await.is_empty());
    }
    let now = facility_seq(&server, "f1").await;
    let since = now - 3;
    let mut ws = app(&server, None).await;
    subscribe(&mut ws, "f1", "spots", Some(since)).await;
    let mut follower = Follower {
        seq: Some(since),
        ..Follower::default()
    };
    follow_until(&mut ws, &mut follower, now, WAIT).await;
    assert_eq!(follower.snapshots, 0, "resumed without a snapshot");
    assert_eq!(follower.deltas, 3);
    assert_eq!(
        follower.spots.get("A-5").map(String::as_str),
        Some("OCCUPIED")
    );
    // Live deltas follow the resumed ones.
    send_sensor(&mut sensor_ws, JSON, &[spot(6, "A-6", true)]).await;
    follow_until(&mut ws, &mut follower, now + 1, WAIT).await;

    // A `since` the server cannot resume from: a fresh snapshot.
    let mut fresh = app(&server, None).await;
    subscribe(&mut fresh, "f1", "zones", Some(now + 1000)).await;
    let first = next_json(&mut fresh).await;
    assert_eq!(first["t"], "snapshot", "{first}");
    assert_eq!(first["seq"], now + 1);
}

#[tokio::test]
async fn a_client_that_does_not_read_gets_conflated_deltas_and_server_memory_stays_bounded() {
    // 100 zones of 5 spots: a batch touching every zone publishes one
    // delta per zone, so 1,000 batches make 100,000 deltas.
    let zones: Vec<Value> = (0..100).map(|z| spot_zone(&format!("Z{z}"), 5)).collect();
    let (server, key) = server_with_facility(zones).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        let mut ws = app(&server, None).await;
        subscribe(&mut ws, "f1", "spots", None).await;
        idle.push(ws);
    }
    let mut sensor_ws = sensor(&server, "f1", &key, BINCODE).await;
    let mut seq = 0u64;
    let mut round = 0u64;
    let mut send_round = async |sensor_ws: &mut Ws| {
        round += 1;
        let msgs: Vec<SensorMessage> = (0..100)
            .map(|z| {
                seq += 1;
                let spot_id = format!("Z{z}-{}", (round + z) % 5 + 1);
                spot(seq, &spot_id, (round / 5).is_multiple_of(2))
            })
            .collect();
        send_sensor(sensor_ws, BINCODE, &msgs).await;
        assert!(await_ack(sensor_ws, seq).await.is_empty());
    };
    // Warm-up: the first rounds allocate what any server would (history,
    // buffers), then RSS is watched while the rest flow.
    for _ in 0..100 {
        send_round(&mut sensor_ws).await;
    }
    let rss_before = rss_kib(server.pid());
    let mut rss_peak = rss_before;
    for round in 100..1000 {
        send_round(&mut sensor_ws).await;
        rss_peak = rss_peak.max(rss_kib(server.pid()));
        if round % 50 == 0 {
            keep_alive(&mut idle).await;
        }
    }
    let growth = rss_peak.saturating_sub(rss_before);
    println!("RSS after warm-up {rss_before} KiB, peak {rss_peak} KiB, growth {growth} KiB");
    assert!(
        growth < 32 * 1024,
        "server RSS grew by {growth} KiB while 90,000 deltas went to clients that do not read"
    );
    // Now they read: gap-free, conflated, and the final state is right.
    let now = facility_seq(&server, "f1").await;
    assert!(now >= 95_000, "seq {now}: about 100,000 deltas");
    let mut truth = Vec::new();
    for z in 0..100 {
        truth.extend(spot_states(&server, "f1", &format!("Z{z}")).await);
    }
    for ws in &mut idle {
        let mut follower = Follower::default();
        follow_until(ws, &mut follower, now, Duration::from_secs(30)).await;
        assert!(
            follower.merged > 0,
            "a slow reader gets merged deltas: {:?}",
            (follower.snapshots, follower.deltas, follower.merged)
        );
        assert!(
            follower.deltas < 20_000,
            "conflated: {} deltas",
            follower.deltas
        );
        for (id, state) in &truth {
            assert_eq!(follower.spots.get(id), Some(state), "spot {id}");
        }
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let conflations: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("parkme_ws_conflations_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default();
    assert!(conflations > 0.0, "conflations are counted");
}

#[tokio::test]
async fn booking_over_the_socket_needs_a_token_and_echoes_req() {
    let (server, _key) = server_with_facility(vec![spot_zone("A", 3)]).await;
    let mut anonymous = app(&server, None).await;
    send_json(
        &mut anonymous,
        &json!({"op": "book", "req": "r0", "facility": "f1", "plate": "AB1"}),
    )
    .await;
    let refused = next_json(&mut anonymous).await;
    assert_eq!(
        (&refused["t"], &refused["req"], &refused["code"]),
        (&json!("error"), &json!("r0"), &json!("unauthorized"))
    );
    let bad = format!("{}/v1/stream?token=not-a-jwt", server.ws_url());
    assert_eq!(refused_status(open(&bad, &[]).await), 401);

    let token = server.user_token("bob");
    let url = format!("{}/v1/stream?token={token}", server.ws_url());
    let mut ws = open(&url, &[]).await.expect("a user connects with ?token=");
    send_json(
        &mut ws,
        &json!({"op": "book", "req": "r1", "facility": "f1", "zone": "A", "plate": "ab-1"}),
    )
    .await;
    let booked = next_json(&mut ws).await;
    assert_eq!(booked["t"], "booking", "{booked}");
    assert_eq!(booked["req"], "r1");
    assert_eq!(booked["booking"]["status"], "CONFIRMED");
    assert_eq!(booked["booking"]["plate"], "AB-1");
    let id = booked["booking"]["id"].as_str().expect("id").to_owned();
    // The HTTP validation applies: a bad plate is refused with its code.
    send_json(
        &mut ws,
        &json!({"op": "book", "req": 2, "facility": "f1", "plate": "no spaces"}),
    )
    .await;
    let invalid = next_json(&mut ws).await;
    assert_eq!(
        (&invalid["req"], &invalid["code"]),
        (&json!(2), &json!("invalid_plate"))
    );
    send_json(
        &mut ws,
        &json!({"op": "book", "req": "r3", "facility": "nope", "plate": "X1"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "unknown_facility");
    // Someone else cannot cancel it; the owner can.
    let mut eve = app(&server, Some(&server.user_token("eve"))).await;
    send_json(
        &mut eve,
        &json!({"op": "cancel", "req": "c0", "booking": id}),
    )
    .await;
    assert_eq!(next_json(&mut eve).await["code"], "forbidden");
    send_json(
        &mut ws,
        &json!({"op": "cancel", "req": "c1", "booking": id}),
    )
    .await;
    let cancelled = next_json(&mut ws).await;
    assert_eq!(cancelled["req"], "c1");
    assert_eq!(cancelled["booking"]["status"], "CANCELLED");
    // Garbage is answered, and the socket keeps working.
    send_text(&mut ws, "{not json").await;
    assert_eq!(next_json(&mut ws).await["code"], "malformed_message");
    send_json(&mut ws, &json!({"op": "launch", "req": "x"})).await;
    let unknown_op = next_json(&mut ws).await;
    assert_eq!(
        (&unknown_op["code"], &unknown_op["req"]),
        (&json!("malformed_message"), &json!("x"))
    );
    subscribe(&mut ws, "f1", "zones", None).await;
    assert_eq!(next_json(&mut ws).await["t"], "snapshot");
}

#[tokio::test]
async fn a_booking_goes_confirmed_active_completed_and_another_expires_seen_live() {
    let (server, key) = server_with_facility(vec![spot_zone("A", 2)]).await;
    let token = server.user_token("carol");
    let mut ws = app(&server, Some(&token)).await;
    subscribe(&mut ws, "f1", "spots", None).await;
    let mut follower = Follower::default();
    follower.apply(&next_json(&mut ws).await);

    send_json(
        &mut ws,
        &json!({"op": "book", "req": "b1", "facility": "f1", "spot": "A-1", "plate": "CAR1"}),
    )
    .await;
    // The booking reply and the delta of its spot race: take both in
    // whichever order they come.
    let (mut booked, mut reserved) = (None, None);
    while booked.is_none() || reserved.is_none() {
        let message = next_json(&mut ws).await;
        if message["t"] == "booking" {
            booked = Some(message);
        } else if message["t"] == "delta"
            && message["spots"][0]["id"] == "A-1"
            && message["spots"][0]["state"] == "RESERVED"
        {
            reserved = Some(message);
        }
    }
    let (booked, reserved) = (booked.unwrap_or_default(), reserved.unwrap_or_default());
    let id = booked["booking"]["id"].as_str().expect("id").to_owned();
    let status = |server: &TestServer, id: String, token: String| {
        let server_url = server.url();
        async move {
            let body: Value = reqwest::Client::new()
                .get(format!("{server_url}/v1/bookings/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("GET booking")
                .json()
                .await
                .expect("JSON");
            body["status"].as_str().unwrap_or_default().to_owned()
        }
    };
    assert_eq!(reserved["spots"][0]["booking"], id.as_str());

    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut sensor_ws, 1).await.is_empty());
    assert_eq!(status(&server, id.clone(), token.clone()).await, "ACTIVE");
    next_matching(&mut ws, |m| {
        m["t"] == "delta" && m["spots"][0]["state"] == "OCCUPIED"
    })
    .await;
    send_sensor(&mut sensor_ws, JSON, &[spot(2, "A-1", false)]).await;
    assert!(await_ack(&mut sensor_ws, 2).await.is_empty());
    assert_eq!(
        status(&server, id.clone(), token.clone()).await,
        "COMPLETED"
    );
    next_matching(&mut ws, |m| {
        m["t"] == "delta" && m["spots"][0]["state"] == "AVAILABLE"
    })
    .await;

    // A one-second hold nobody claims expires, and the spot comes back.
    send_json(
        &mut ws,
        &json!({"op": "book", "req": "b2", "facility": "f1", "spot": "A-2", "plate": "CAR2", "hold_seconds": 1}),
    )
    .await;
    let held = next_matching(&mut ws, |m| m["t"] == "booking").await;
    let held_id = held["booking"]["id"].as_str().expect("id").to_owned();
    next_matching(&mut ws, |m| {
        m["t"] == "delta" && m["spots"][0]["id"] == "A-2" && m["spots"][0]["state"] == "AVAILABLE"
    })
    .await;
    assert_eq!(status(&server, held_id, token).await, "EXPIRED");
}

#[tokio::test]
async fn several_facilities_share_one_connection_and_unsubscribe_stops_one() {
    let server = TestServer::start(NO_LIMITS).await;
    let key1 = put_facility(&server, "f1", vec![spot_zone("A", 3)]).await;
    let key2 = put_facility(&server, "f2", vec![spot_zone("B", 3)]).await;
    let mut ws = app(&server, None).await;
    subscribe(&mut ws, "f1", "spots", None).await;
    subscribe(&mut ws, "f2", "spots", None).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let snapshot = next_json(&mut ws).await;
        assert_eq!(snapshot["t"], "snapshot");
        seen.push(snapshot["facility"].as_str().unwrap_or_default().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["f1", "f2"]);
    let mut s1 = sensor(&server, "f1", &key1, JSON).await;
    let mut s2 = sensor(&server, "f2", &key2, JSON).await;
    send_sensor(&mut s2, JSON, &[spot(1, "B-1", true)]).await;
    let delta = next_json(&mut ws).await;
    assert_eq!(
        (&delta["t"], &delta["facility"]),
        (&json!("delta"), &json!("f2"))
    );
    send_json(&mut ws, &json!({"op": "unsubscribe", "facility": "f2"})).await;
    // Once f1 changes after f2 again, only f1 shows up.
    send_sensor(&mut s2, JSON, &[spot(2, "B-2", true)]).await;
    assert!(await_ack(&mut s2, 2).await.is_empty());
    send_sensor(&mut s1, JSON, &[spot(1, "A-1", true)]).await;
    let next_delta = next_json(&mut ws).await;
    assert_eq!(next_delta["facility"], "f1", "{next_delta}");
    assert!(
        next_within(&mut ws, Duration::from_millis(300))
            .await
            .is_none()
    );
    // Unknown facilities are refused.
    subscribe(&mut ws, "nope", "zones", None).await;
    let refused = next_json(&mut ws).await;
    assert_eq!(
        (&refused["t"], &refused["code"]),
        (&json!("error"), &json!("unknown_facility"))
    );
}

#[tokio::test]
async fn a_layout_change_sends_a_fresh_snapshot() {
    let (server, key) = server_with_facility(vec![spot_zone("A", 2)]).await;
    let mut ws = app(&server, None).await;
    subscribe(&mut ws, "f1", "spots", None).await;
    let mut follower = Follower::default();
    follower.apply(&next_json(&mut ws).await);
    put_facility(&server, "f1", vec![spot_zone("A", 2), spot_zone("B", 4)]).await;
    let snapshot = next_matching(&mut ws, |m| m["t"] == "snapshot").await;
    assert_eq!(snapshot["zones"].as_array().map(Vec::len), Some(2));
    assert_eq!(snapshot["spots"].as_array().map(Vec::len), Some(6));
    follower.apply(&snapshot);
    // And deltas continue from it.
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "B-4", true)]).await;
    let delta = next_matching(&mut ws, |m| m["t"] == "delta").await;
    follower.apply(&delta);
    assert_eq!(
        follower.spots.get("B-4").map(String::as_str),
        Some("OCCUPIED")
    );
}

// ---------------------------------------------------------------------
// Limits of the anonymous socket (ops, sockets per IP, slow readers)
// ---------------------------------------------------------------------

const SECOND_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// NO_LIMITS plus these.
fn limits(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = NO_LIMITS.to_vec();
    env.extend_from_slice(extra);
    env
}

/// Reads replies until `n` snapshots or errors have come; returns
/// (snapshots, errors).
async fn answers(ws: &mut Ws, n: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut snapshots, mut errors) = (Vec::new(), Vec::new());
    while snapshots.len() + errors.len() < n {
        let message = next_json(ws).await;
        match message["t"].as_str() {
            Some("snapshot") => snapshots.push(message),
            Some("error") => errors.push(message),
            _ => {}
        }
    }
    (snapshots, errors)
}

#[tokio::test]
async fn a_flood_of_subscribes_gets_rate_limited_errors_echoing_req() {
    // 2 ops/s per socket: a burst of 10, then one per 500 ms.
    let env = limits(&[
        ("PARKME_WS_OPS_PER_SEC", "2"),
        ("PARKME_WS_OPS_PER_IP_PER_SEC", "0"),
    ]);
    let server = TestServer::start(&env).await;
    put_facility(&server, "f1", vec![spot_zone("A", 100)]).await;
    let mut ws = app(&server, None).await;
    for i in 0..15 {
        send_json(
            &mut ws,
            &json!({"op": "subscribe", "facility": "f1", "detail": "spots", "req": i}),
        )
        .await;
    }
    let (snapshots, errors) = answers(&mut ws, 15).await;
    assert!(
        (10..=11).contains(&snapshots.len()),
        "the burst is served: {} snapshots",
        snapshots.len()
    );
    assert_eq!(snapshots.len() + errors.len(), 15);
    for error in &errors {
        assert_eq!(error["code"], "rate_limited", "{error}");
        assert!(error["req"].is_u64(), "req is echoed: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Once the client slows down, ops go through again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    subscribe(&mut ws, "f1", "zones", None).await;
    let again = next_json(&mut ws).await;
    assert_eq!(again["t"], "snapshot", "{again}");
}

#[tokio::test]
async fn a_flood_past_the_op_rate_closes_the_socket_with_1008() {
    let env = limits(&[
        ("PARKME_WS_OPS_PER_SEC", "1"),
        ("PARKME_WS_OPS_PER_IP_PER_SEC", "0"),
    ]);
    let server = TestServer::start(&env).await;
    put_facility(&server, "f1", vec![spot_zone("A", 3)]).await;
    let mut ws = app(&server, None).await;
    for _ in 0..200 {
        // The server may close before every op is sent.
        let op = json!({"op": "subscribe", "facility": "f1"}).to_string();
        if futures_util::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::text(op))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut limited = 0;
    let code = loop {
        match next(&mut ws).await {
            Said::Closed(code) => break code,
            Said::Text(text) => limited += usize::from(text.contains("rate_limited")),
            Said::Binary(_) => {}
        }
    };
    assert_eq!(code, Some(1008));
    assert!(limited > 0, "told to slow down before being closed");
}

#[tokio::test]
async fn the_ops_of_every_socket_of_one_ip_share_one_budget() {
    // 1 op/s per IP (a burst of 5), no per-socket limit.
    let env = limits(&[
        ("PARKME_WS_OPS_PER_SEC", "0"),
        ("PARKME_WS_OPS_PER_IP_PER_SEC", "1"),
    ]);
    let server = TestServer::start(&env).await;
    put_facility(&server, "f1", vec![spot_zone("A", 3)]).await;
    let mut first = app(&server, None).await;
    let mut second = app(&server, None).await;
    for _ in 0..5 {
        subscribe(&mut first, "f1", "zones", None).await;
    }
    let (snapshots, errors) = answers(&mut first, 5).await;
    assert_eq!((snapshots.len(), errors.len()), (5, 0));
    subscribe(&mut second, "f1", "zones", None).await;
    let refused = next_json(&mut second).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("address")),
        "{refused}"
    );
    // Another address has its own budget.
    let mut elsewhere = app_from(&server, SECOND_IP, None, None)
        .await
        .expect("another IP connects");
    subscribe(&mut elsewhere, "f1", "zones", None).await;
    assert_eq!(next_json(&mut elsewhere).await["t"], "snapshot");
}

#[tokio::test]
async fn app_sockets_per_ip_are_capped_and_one_more_is_refused_with_429() {
    let env = limits(&[("PARKME_WS_SOCKETS_PER_IP", "3")]);
    let server = TestServer::start(&env).await;
    put_facility(&server, "f1", vec![spot_zone("A", 3)]).await;
    let mut open_sockets = Vec::new();
    for _ in 0..3 {
        open_sockets.push(app(&server, None).await);
    }
    let url = format!("{}/v1/stream", server.ws_url());
    match open(&url, &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
        }
        Err(other) => panic!("expected a 429, got {other}"),
        Ok(_) => panic!("a fourth socket from one IP was accepted"),
    }
    // The cap is per IP: another address still connects.
    let mut elsewhere = app_from(&server, SECOND_IP, None, None)
        .await
        .expect("another IP connects");
    subscribe(&mut elsewhere, "f1", "zones", None).await;
    assert_eq!(next_json(&mut elsewhere).await["t"], "snapshot");
    // Closing one gives its slot back.
    let mut closing = open_sockets.pop().expect("a socket");
    closing.close(None).await.expect("close");
    drop(closing);
    assert!(
        eventually(WAIT, || async { open(&url, &[]).await.is_ok() }).await,
        "a slot came back after a close"
    );
    // Sockets still open keep working.
    subscribe(&mut open_sockets[0], "f1", "zones", None).await;
    assert_eq!(next_json(&mut open_sockets[0]).await["t"], "snapshot");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_gets_a_fresh_snapshot_not_a_merge_of_everything() {
    const MERGE_MAX: usize = 256;
    let env = limits(&[("PARKME_WS_MERGE_MAX", "256")]);
    let server = TestServer::start(&env).await;
    let zones: Vec<Value> = (0..4).map(|z| spot_zone(&format!("Z{z}"), 500)).collect();
    let key = put_facility(&server, "f1", zones).await;
    let mut sensor_ws = sensor(&server, "f1", &key, BINCODE).await;
    let mut seq = 0u64;
    // One round: 500 changes spread over the four zones; every spot
    // flips once per four rounds.
    let mut send_round = async |sensor_ws: &mut Ws, round: u64| {
        let batch: Vec<SensorMessage> = (0..500u64)
            .map(|i| {
                seq += 1;
                let n = (round % 4) * 500 + i;
                let spot_id = format!("Z{}-{}", n % 4, n / 4 + 1);
                spot(seq, &spot_id, (round / 4).is_multiple_of(2))
            })
            .collect();
        send_sensor(sensor_ws, BINCODE, &batch).await;
        assert!(await_ack(sensor_ws, seq).await.is_empty());
        seq
    };
    // Warm-up: fill the facility's delta history and the allocator's
    // pools, so RSS then shows only what the subscriber costs.
    for round in 0..300 {
        send_round(&mut sensor_ws, round).await;
    }
    // A reader with a 4 KiB receive buffer: once it stops reading, the
    // server's socket fills once its send buffer (autotuned up to 4 MiB)
    // is full.
    let mut slow = app_from(&server, std::net::Ipv4Addr::LOCALHOST, None, Some(4096))
        .await
        .expect("connects");
    subscribe(&mut slow, "f1", "spots", None).await;
    let mut follower = Follower::default();
    follower.apply(&next_matching(&mut slow, |m| m["t"] == "snapshot").await);
    let dropped_before = metric(&server, "parkme_ws_merges_dropped_total").await;
    let rss_before = rss_kib(server.pid());

    // 100,000 changes (about 7 MB of deltas) while it does not read.
    let mut last = 0;
    for round in 300..500 {
        last = send_round(&mut sensor_ws, round).await;
        if round % 25 == 0 {
            keep_alive(std::slice::from_mut(&mut slow)).await;
        }
    }
    let rss_after = rss_kib(server.pid());
    println!("server RSS {rss_before} KiB before, {rss_after} KiB after 100,000 changes");
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    let dropped = metric(&server, "parkme_ws_merges_dropped_total").await - dropped_before;
    assert!(
        dropped >= 1.0,
        "the merge outgrew its bound and was dropped"
    );

    // Now it reads: what was in flight, then a fresh snapshot instead of
    // one delta merging thousands of spots, then live deltas, gap-free.
    let now = facility_seq(&server, "f1").await;
    let mut largest_delta = 0;
    while follower.seq.is_none_or(|s| s < now) {
        let message = next_json(&mut slow).await;
        if !matches!(message["t"].as_str(), Some("snapshot" | "delta")) {
            continue;
        }
        if message["t"] == "delta" {
            let spots = message["spots"].as_array().map_or(0, Vec::len);
            largest_delta = largest_delta.max(spots);
        }
        follower.apply(&message);
    }
    assert!(
        follower.snapshots >= 2,
        "a fresh snapshot came: {follower:?}"
    );
    assert!(
        largest_delta <= MERGE_MAX,
        "no delta merges more than the bound: {largest_delta} spots"
    );
    let mut truth = Vec::new();
    for z in 0..4 {
        truth.extend(spot_states(&server, "f1", &format!("Z{z}")).await);
    }
    assert_eq!(truth.len(), 2000);
    for (id, state) in &truth {
        assert_eq!(follower.spots.get(id), Some(state), "spot {id}");
    }
    // And the stream goes on from there.
    let flipped = follower.spots.get("Z0-1").map(String::as_str) != Some("OCCUPIED");
    send_sensor(&mut sensor_ws, BINCODE, &[spot(last + 1, "Z0-1", flipped)]).await;
    follow_until(&mut slow, &mut follower, now + 1, WAIT).await;
    let want = if flipped { "OCCUPIED" } else { "AVAILABLE" };
    assert_eq!(follower.spots.get("Z0-1").map(String::as_str), Some(want));
}

// ---------------------------------------------------------------------
// Token lifetime on the socket
// ---------------------------------------------------------------------

#[tokio::test]
async fn booking_ops_after_the_token_expires_get_token_expired_and_reading_goes_on() {
    let env = limits(&[("PARKME_JWT_LEEWAY_SECS", "0")]);
    let server = TestServer::start(&env).await;
    let key = put_facility(&server, "f1", vec![spot_zone("A", 5)]).await;
    let exp = common::unix_now() + 3;
    let token = server.token_with_claims(&json!({"sub": "dora", "exp": exp}));
    let mut ws = app(&server, Some(&token)).await;
    subscribe(&mut ws, "f1", "spots", None).await;
    next_matching(&mut ws, |m| m["t"] == "snapshot").await;
    send_json(
        &mut ws,
        &json!({"op": "book", "req": "before", "facility": "f1", "plate": "DORA1"}),
    )
    .await;
    let booked = next_matching(&mut ws, |m| m["req"] == "before").await;
    assert_eq!(booked["t"], "booking", "{booked}");
    let id = booked["booking"]["id"].as_str().expect("id").to_owned();

    // Past exp (no leeway configured): booking ops are refused.
    while common::unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send_json(
        &mut ws,
        &json!({"op": "book", "req": "after", "facility": "f1", "plate": "DORA2"}),
    )
    .await;
    let refused = next_matching(&mut ws, |m| m["req"] == "after").await;
    assert_eq!(
        (&refused["t"], &refused["code"]),
        (&json!("error"), &json!("token_expired")),
        "{refused}"
    );
    send_json(
        &mut ws,
        &json!({"op": "cancel", "req": "cancel", "booking": id}),
    )
    .await;
    let refused = next_matching(&mut ws, |m| m["req"] == "cancel").await;
    assert_eq!(refused["code"], "token_expired", "{refused}");
    // Nothing was booked or cancelled after expiry ...
    let spots = spot_states(&server, "f1", "A").await;
    assert_eq!(spots.iter().filter(|(_, s)| s == "RESERVED").count(), 1);
    // ... and the socket still streams.
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "A-5", true)]).await;
    assert!(await_ack(&mut sensor_ws, 1).await.is_empty());
    next_matching(&mut ws, |m| {
        m["t"] == "delta" && m["spots"][0]["id"] == "A-5" && m["spots"][0]["state"] == "OCCUPIED"
    })
    .await;
}

#[tokio::test]
async fn the_handshake_refuses_expired_not_yet_valid_and_exp_less_tokens_with_401() {
    let server = TestServer::start(NO_LIMITS).await;
    let now = common::unix_now();
    let url = format!("{}/v1/stream", server.ws_url());
    for claims in [
        json!({"sub": "erin", "exp": now - 3600}),
        json!({"sub": "erin", "exp": now + 3600, "nbf": now + 600}),
        json!({"sub": "erin"}),
    ] {
        let token = server.token_with_claims(&claims);
        let (status, body) = refused_body(open(&format!("{url}?token={token}"), &[]).await);
        assert_eq!(status, 401, "{claims}");
        assert_eq!(body["error"]["code"], "unauthorized", "{claims}: {body}");
    }
    let good = server.token_with_claims(&json!({"sub": "erin", "exp": now + 3600, "nbf": now - 5}));
    assert!(open(&format!("{url}?token={good}"), &[]).await.is_ok());
}
