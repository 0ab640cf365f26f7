//! Contract §2.1, sensor liveness, against the real binary: a spot not
//! heard of for `PARKME_SENSOR_STALE_SECS` turns `UNKNOWN`, is counted as
//! such, is never booked, and its next reading or heartbeat brings it
//! back; a restart starts every clock afresh. Staleness is 2 s here.

use std::time::{Duration, Instant};

use parkme_protocol::sensor::SensorMessage;
use serde_json::{Value, json};

use crate::helpers::http::{Api, NO_LIMITS, layout, server_with_facility, spot_zone};
use crate::helpers::ws::{JSON, await_ack, send_sensor, sensor, spot};
use crate::helpers::{TestServer, poll_until};

const STALE_SECS: &str = "2";

async fn stale_server() -> (TestServer, Api, String) {
    server_with_facility(
        &[("PARKME_SENSOR_STALE_SECS", STALE_SECS)],
        vec![spot_zone("A", "A-", 3, "standard")],
    )
    .await
}

async fn state(api: &Api, spot: &str) -> String {
    api.spot_states("f1", "A")
        .await
        .into_iter()
        .find(|(id, _)| id == spot)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

async fn zone_counts(api: &Api) -> Value {
    let facility = api.get("/v1/facilities/f1", None).await;
    facility.assert_status(200)["zones"][0].clone()
}

fn sum_of_states(counts: &Value) -> u64 {
    [
        "available",
        "reserved",
        "occupied",
        "out_of_service",
        "unknown",
    ]
    .iter()
    .map(|k| {
        counts[*k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {counts}"))
    })
    .sum()
}

#[tokio::test]
async fn a_silent_spot_turns_unknown_is_counted_as_unknown_and_its_next_reading_restores_it() {
    let (server, api, key) = stale_server().await;
    poll_until(
        "every silent spot turns UNKNOWN",
        Duration::from_secs(15),
        || async {
            api.spot_states("f1", "A")
                .await
                .iter()
                .all(|(_, s)| s == "UNKNOWN")
        },
    )
    .await;
    let counts = zone_counts(&api).await;
    assert_eq!(counts["unknown"], 3, "{counts}");
    assert_eq!(counts["total"], 3);
    assert_eq!(sum_of_states(&counts), 3, "total is the sum: {counts}");
    assert_eq!(counts["by_kind"]["standard"]["unknown"], 3, "{counts}");

    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-001", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    assert_eq!(state(&api, "A-001").await, "OCCUPIED");
    let counts = zone_counts(&api).await;
    assert_eq!(
        (counts["unknown"].as_u64(), counts["occupied"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(sum_of_states(&counts), 3, "{counts}");
}

#[tokio::test]
async fn a_heartbeat_naming_a_spot_keeps_it_known() {
    let (server, api, key) = stale_server().await;
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    let started = Instant::now();
    let mut seq = 0;
    // Heartbeats for A-001 only, for twice the staleness period.
    while started.elapsed() < Duration::from_secs(5) {
        seq += 1;
        send_sensor(
            &mut ws,
            JSON,
            &[SensorMessage::Heartbeat {
                seq,
                sensor: "A-001".into(),
            }],
        )
        .await;
        assert!(await_ack(&mut ws, seq).await.is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(state(&api, "A-001").await, "AVAILABLE");
    assert_eq!(state(&api, "A-002").await, "UNKNOWN");
}

#[tokio::test]
async fn an_unknown_spot_is_never_given_to_a_booking() {
    let (server, api, _key) = stale_server().await;
    poll_until(
        "the spots turn UNKNOWN",
        Duration::from_secs(15),
        || async { zone_counts(&api).await["unknown"] == 3 },
    )
    .await;
    let token = server.user_token("driver");
    api.book("f1", &token, json!({"plate": "AB1"}))
        .await
        .assert_error(409, "no_spot_available");
    api.book("f1", &token, json!({"plate": "AB1", "spot": "A-002"}))
        .await
        .assert_error(409, "spot_not_available");
    assert_eq!(zone_counts(&api).await["reserved"], 0);
}

#[tokio::test]
async fn a_restart_starts_every_spots_clock_afresh() {
    let mut env = NO_LIMITS.to_vec();
    env.push(("PARKME_SENSOR_STALE_SECS", "5"));
    let mut server = TestServer::start(&env).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 3, "standard")]),
    )
    .await;
    let heard = Instant::now();
    // 3.5 s into its 5 s, the process dies and comes back.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    server.restart().await;
    let api = Api::new(&server);
    // Its old clock would have run out 5 s after `heard`; the new one runs
    // from the restart, at least 3.5 s later.
    let old_deadline = heard + Duration::from_millis(5500);
    if let Some(wait) = old_deadline.checked_duration_since(Instant::now()) {
        tokio::time::sleep(wait).await;
    }
    let states = api.spot_states("f1", "A").await;
    assert!(
        states.iter().all(|(_, s)| s == "AVAILABLE"),
        "no spot turns UNKNOWN on its old clock: {states:?}"
    );
}
