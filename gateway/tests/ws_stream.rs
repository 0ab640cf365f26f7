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
    for _ in 100..1000 {
        send_round(&mut sensor_ws).await;
        rss_peak = rss_peak.max(rss_kib(server.pid()));
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
    let booked = next_matching(&mut ws, |m| m["t"] == "booking").await;
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
    let reserved = next_matching(&mut ws, |m| {
        m["t"] == "delta" && m["spots"][0]["id"] == "A-1" && m["spots"][0]["state"] == "RESERVED"
    })
    .await;
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
