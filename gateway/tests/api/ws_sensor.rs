//! Contract §4, the sensor socket, against the real binary over real
//! sockets: one test per promise.

use crate::helpers::TestServer;
use crate::helpers::ws::*;
use futures_util::SinkExt;
use parkme_protocol::sensor::{SensorMessage, SensorReply};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn server_with_facility(env: &[(&str, &str)]) -> (TestServer, String) {
    let server = TestServer::start(env).await;
    let key = put_facility(
        &server,
        "f1",
        vec![spot_zone("A", 20), json!({"id": "C", "capacity": 5})],
    )
    .await;
    (server, key)
}

fn state_of(states: &[(String, String)], spot: &str) -> String {
    states
        .iter()
        .find(|(id, _)| id == spot)
        .map(|(_, state)| state.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_handshake_refuses_missing_wrong_and_foreign_keys_and_unknown_facilities() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let other_key = put_facility(&server, "f2", vec![spot_zone("B", 2)]).await;
    let url = format!("{}/v1/sensors/f1", server.ws_url());

    let (status, body) = refused_body(open(&url, &[]).await);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert_eq!(
        refused_status(open(&url, &[("authorization", "Bearer sk_nope")]).await),
        401
    );
    let foreign = format!("Bearer {other_key}");
    let (status, body) = refused_body(open(&url, &[("authorization", foreign.as_str())]).await);
    assert_eq!(status, 403, "another facility's key: {body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let unknown = format!("{}/v1/sensors/nope?key={key}", server.ws_url());
    let (status, body) = refused_body(open(&unknown, &[]).await);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_facility");

    // The right key, three ways.
    let bearer = format!("Bearer {key}");
    assert!(
        open(&url, &[("authorization", bearer.as_str())])
            .await
            .is_ok()
    );
    assert!(open(&url, &[("x-sensor-key", key.as_str())]).await.is_ok());
    assert!(open(&format!("{url}?key={key}"), &[]).await.is_ok());
}

#[tokio::test]
async fn json_messages_single_and_batched_change_spots_and_are_acked() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    send_sensor(
        &mut ws,
        JSON,
        &[
            spot(2, "A-2", true),
            SensorMessage::Count {
                seq: 3,
                zone: "C".into(),
                delta: 2,
            },
            SensorMessage::Heartbeat {
                seq: 4,
                sensor: "gw-1".into(),
            },
        ],
    )
    .await;
    assert!(await_ack(&mut ws, 4).await.is_empty());
    let states = spot_states(&server, "f1", "A").await;
    assert_eq!(state_of(&states, "A-1"), "OCCUPIED");
    assert_eq!(state_of(&states, "A-2"), "OCCUPIED");
    let facility = get_json(&server, "/v1/facilities/f1", None).await;
    assert_eq!(facility["zones"][1]["occupied"], 2, "{facility}");
}

#[tokio::test]
async fn bincode_messages_single_and_batched_change_spots_and_are_acked_in_bincode() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, BINCODE).await;
    send_sensor(&mut ws, BINCODE, &[spot(1, "A-3", true)]).await;
    // The reply is a binary frame in bincode.
    match next(&mut ws).await {
        Said::Binary(bytes) => assert_eq!(
            parkme_engine::codec::decode_wire::<SensorReply>(&bytes),
            Ok(SensorReply::Ack { seq: 1 })
        ),
        other => panic!("expected a bincode ack, got {other:?}"),
    }
    let batch: Vec<SensorMessage> = (2..=11).map(|i| spot(i, &format!("A-{i}"), true)).collect();
    send_sensor(&mut ws, BINCODE, &batch).await;
    assert!(await_ack(&mut ws, 11).await.is_empty());
    let states = spot_states(&server, "f1", "A").await;
    for i in 2..=11 {
        assert_eq!(state_of(&states, &format!("A-{i}")), "OCCUPIED");
    }
}

/// The longest batch of spot messages (seqs from 1, spots of `zone`
/// in turn) whose bincode encoding fits one 64 KiB frame.
fn largest_bincode_batch(zone: &str, spots: u64) -> Vec<SensorMessage> {
    let message = |seq: u64| {
        spot(
            seq,
            &format!("{zone}-{}", seq % spots + 1),
            !seq.is_multiple_of(3),
        )
    };
    let mut batch = Vec::new();
    loop {
        batch.push(message(batch.len() as u64 + 1));
        if parkme_engine::codec::encode_wire(&batch).len() > 64 * 1024 {
            batch.pop();
            return batch;
        }
    }
}

#[tokio::test]
async fn the_largest_bincode_batch_that_fits_64_kib_decodes_and_every_message_is_acked() {
    let (server, _) = server_with_facility(NO_LIMITS).await;
    let key = put_facility(&server, "big", vec![spot_zone("B", 500)]).await;
    let batch = largest_bincode_batch("B", 500);
    let frame = parkme_engine::codec::encode_wire(&batch);
    assert!(frame.len() > 64 * 1024 - 16, "{} bytes", frame.len());
    assert!(batch.len() > 5_000, "{} messages in one frame", batch.len());
    let last = batch.len() as u64;

    let mut ws = sensor(&server, "big", &key, BINCODE).await;
    send_sensor(&mut ws, BINCODE, &batch).await;
    let errors = await_ack(&mut ws, last).await;
    assert!(errors.is_empty(), "{errors:?}");

    // Every message was applied: each spot shows its last reading.
    let mut want = std::collections::BTreeMap::new();
    for message in &batch {
        if let SensorMessage::Spot { spot, occupied, .. } = message {
            want.insert(
                spot.clone(),
                if *occupied { "OCCUPIED" } else { "AVAILABLE" },
            );
        }
    }
    let states = spot_states(&server, "big", "B").await;
    assert_eq!(states.len(), 500);
    for (id, state) in &states {
        assert_eq!(Some(&state.as_str()), want.get(id), "spot {id}");
    }
    // The same batch in JSON takes several frames; bincode's one frame
    // moved exactly as many events.
    let facility = get_json(&server, "/v1/facilities/big", None).await;
    let occupied = want.values().filter(|s| **s == "OCCUPIED").count();
    assert_eq!(facility["zones"][0]["occupied"], occupied, "{facility}");
}

#[tokio::test]
async fn a_bincode_frame_claiming_a_huge_batch_is_a_clear_error_and_the_connection_stays_open() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, BINCODE).await;
    // A varint length of 2^63 - 1, then a few bytes: a hostile prefix.
    let mut hostile = vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    hostile.extend([0, 1, 1, b'a', 1, 0]);
    ws.send(Message::binary(hostile)).await.expect("send");
    match sensor_reply(&mut ws).await {
        SensorReply::Error { seq, code, message } => {
            assert_eq!((seq, code.as_str()), (None, "malformed_message"));
            assert!(message.contains("claims"), "a clear message: {message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // A length the frame could hold but does not: refused too.
    let mut short = vec![0xfb, 0xff, 0xff];
    short.extend(std::iter::repeat_n(0u8, 60_000));
    ws.send(Message::binary(short)).await.expect("send");
    assert!(matches!(
        sensor_reply(&mut ws).await,
        SensorReply::Error { seq: None, .. }
    ));
    send_sensor(
        &mut ws,
        BINCODE,
        &[spot(1, "A-1", true), spot(2, "A-2", true)],
    )
    .await;
    assert!(await_ack(&mut ws, 2).await.is_empty());
}

#[tokio::test]
async fn garbage_gets_an_error_frame_and_the_connection_stays_open() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_text(&mut ws, "this is not json").await;
    match sensor_reply(&mut ws).await {
        SensorReply::Error { seq, code, .. } => {
            assert_eq!((seq, code.as_str()), (None, "malformed_message"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    send_text(&mut ws, r#"{"t":"spot","seq":7,"spot":"A-1"}"#).await;
    let errors = await_ack(&mut ws, 7).await;
    assert!(
        matches!(&errors[..], [SensorReply::Error { seq: Some(7), code, .. }] if code == "malformed_message"),
        "{errors:?}"
    );
    // Binary garbage on a bincode socket, too.
    let mut bin = sensor(&server, "f1", &key, BINCODE).await;
    bin.send(Message::binary(vec![0xff, 0xfe, 0xfd]))
        .await
        .expect("send");
    assert!(matches!(
        sensor_reply(&mut bin).await,
        SensorReply::Error { seq: None, .. }
    ));
    // Both still work.
    send_sensor(&mut ws, JSON, &[spot(8, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 8).await.is_empty());
    send_sensor(&mut bin, BINCODE, &[spot(1, "A-2", true)]).await;
    assert!(await_ack(&mut bin, 1).await.is_empty());
}

#[tokio::test]
async fn unknown_spots_and_zones_get_an_error_with_their_seq_and_the_ack_covers_them() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(
        &mut ws,
        JSON,
        &[
            spot(1, "A-1", true),
            spot(2, "Z-404", true),
            SensorMessage::Count {
                seq: 3,
                zone: "nope".into(),
                delta: 1,
            },
            spot(4, "A-4", true),
        ],
    )
    .await;
    let errors = await_ack(&mut ws, 4).await;
    let codes: Vec<(Option<u64>, String)> = errors
        .into_iter()
        .map(|e| match e {
            SensorReply::Error { seq, code, .. } => (seq, code),
            SensorReply::Ack { .. } => unreachable!(),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (Some(2), "unknown_spot".to_owned()),
            (Some(3), "unknown_zone".to_owned())
        ]
    );
    let states = spot_states(&server, "f1", "A").await;
    assert_eq!(state_of(&states, "A-4"), "OCCUPIED");
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_with_1009() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    // A frame of exactly 64 KiB is fine (a batch padded with spaces).
    let mut fits = serde_json::to_string(&[spot(1, "A-1", true)]).expect("JSON");
    fits.push_str(&" ".repeat(64 * 1024 - fits.len()));
    send_text(&mut ws, &fits).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    let too_big = format!("[{}]", " ".repeat(64 * 1024));
    let _ = ws.send(Message::text(too_big)).await;
    match next(&mut ws).await {
        Said::Closed(code) => assert_eq!(code, Some(1009)),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flood_past_the_rate_limit_closes_with_1008() {
    let env = [("PARKME_RATE_SENSOR_PER_SEC", "50")];
    let (server, key) = server_with_facility(&env).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    let flood: Vec<SensorMessage> = (2..=400)
        .map(|i| spot(i, "A-2", i.is_multiple_of(2)))
        .collect();
    send_sensor(&mut ws, JSON, &flood).await;
    loop {
        match next(&mut ws).await {
            Said::Closed(code) => {
                assert_eq!(code, Some(1008));
                break;
            }
            Said::Text(_) | Said::Binary(_) => continue,
        }
    }
}

#[tokio::test]
async fn out_of_order_and_repeated_seqs_never_drop_a_message() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(10, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 10).await.is_empty());
    // A lower seq and then the same seq again: both still apply.
    send_sensor(&mut ws, JSON, &[spot(3, "A-2", true)]).await;
    send_sensor(&mut ws, JSON, &[spot(10, "A-1", false)]).await;
    send_sensor(&mut ws, JSON, &[spot(11, "A-3", true)]).await;
    assert!(await_ack(&mut ws, 11).await.is_empty());
    let states = spot_states(&server, "f1", "A").await;
    assert_eq!(state_of(&states, "A-1"), "AVAILABLE");
    assert_eq!(state_of(&states, "A-2"), "OCCUPIED");
    assert_eq!(state_of(&states, "A-3"), "OCCUPIED");
    // A new connection may start again at 1.
    let mut again = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut again, JSON, &[spot(1, "A-4", true)]).await;
    assert!(await_ack(&mut again, 1).await.is_empty());
}

#[tokio::test]
async fn pipelined_acks_come_in_order_and_every_acked_message_survives_kill_9() {
    let (mut server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, BINCODE).await;
    // 200 frames sent without waiting: the server keeps reading while
    // earlier ones commit; acks never go back.
    let mut seq = 0;
    for round in 0..200u64 {
        let batch: Vec<SensorMessage> = (1..=20)
            .map(|i| {
                seq += 1;
                spot(seq, &format!("A-{i}"), round.is_multiple_of(2))
            })
            .collect();
        send_sensor(&mut ws, BINCODE, &batch).await;
    }
    let mut last = 0;
    while last < seq {
        match sensor_reply(&mut ws).await {
            SensorReply::Ack { seq: acked } => {
                assert!(acked >= last, "acks in order: {acked} after {last}");
                last = acked;
            }
            error => panic!("unexpected {error:?}"),
        }
    }
    // Round 199 was odd: every spot ends AVAILABLE, except that the last
    // frame leaves them so only if it was durable before the ack.
    send_sensor(&mut ws, BINCODE, &[spot(seq + 1, "A-7", true)]).await;
    assert!(await_ack(&mut ws, seq + 1).await.is_empty());
    server.kill9();
    server.restart().await;
    let states = spot_states(&server, "f1", "A").await;
    for i in 1..=20 {
        let want = if i == 7 { "OCCUPIED" } else { "AVAILABLE" };
        assert_eq!(
            state_of(&states, &format!("A-{i}")),
            want,
            "A-{i} after kill -9"
        );
    }
}

#[tokio::test]
async fn sigterm_closes_sensor_and_app_sockets_with_1001() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    let mut app_ws = app(&server, None).await;
    subscribe(&mut app_ws, "f1", "zones", None).await;
    assert_eq!(next_json(&mut app_ws).await["t"], "snapshot");
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut sensor_ws, 1).await.is_empty());
    sigterm(server.pid());
    for ws in [&mut sensor_ws, &mut app_ws] {
        let code = loop {
            match next(ws).await {
                Said::Closed(code) => break code,
                Said::Text(_) | Said::Binary(_) => continue,
            }
        };
        assert_eq!(code, Some(1001));
    }
}

#[tokio::test]
async fn a_plate_read_in_matching_a_confirmed_booking_makes_it_active() {
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let token = server.user_token("alice");
    let mut app_ws = app(&server, Some(&token)).await;
    send_json(
        &mut app_ws,
        &json!({"op": "book", "req": "b1", "facility": "f1", "zone": "C", "plate": "ab123cd"}),
    )
    .await;
    let reply = next_matching(&mut app_ws, |m| m["t"] == "booking" || m["t"] == "error").await;
    assert_eq!(reply["booking"]["status"], "CONFIRMED", "{reply}");
    let id = reply["booking"]["id"].as_str().expect("id").to_owned();
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(
        &mut ws,
        JSON,
        &[SensorMessage::Plate {
            seq: 1,
            gate: "north".into(),
            plate: "AB123CD".into(),
            dir: parkme_protocol::sensor::Direction::In,
        }],
    )
    .await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    let booking = get_json(&server, &format!("/v1/bookings/{id}"), Some(&token)).await;
    assert_eq!(booking["status"], "ACTIVE", "{booking}");
}

#[tokio::test]
async fn an_idle_connection_is_pinged() {
    use futures_util::StreamExt;
    let (server, key) = server_with_facility(NO_LIMITS).await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    // The server pings after 20 s of silence (and drops a peer silent for
    // 50 s); the client's automatic pong keeps it alive.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(35), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(ping.ok(), Some(true), "a ping within 35 s");
    send_sensor(&mut ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
}
