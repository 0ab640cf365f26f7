//! Contract §2.2 (advance reservations) and §2.3 (stay windows, overstay,
//! `PATCH /v1/bookings/{id}`) against the real binary over HTTP and the
//! app socket. Lead times and the grace period are shortened through
//! their env knobs; the clock is the real one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::http::{
    Api, in_secs, layout, millis, secs_after, server_with_facility, spot_zone,
};
use crate::helpers::ws::{self, JSON, await_ack, send_sensor, sensor, spot};
use crate::helpers::{TestServer, poll_until};

const HOUR: i64 = 3600;

/// A server with `extra` settings and facility `f1`: zone `A` of 3 spots
/// with `reservable` 1, and zone `B` of 2 spots with `reservable` 1.
async fn server_with(extra: &[(&str, &str)]) -> (TestServer, Api, String) {
    let mut a = spot_zone("A", "A-", 3, "standard");
    a["reservable"] = json!(1);
    let mut b = spot_zone("B", "B-", 2, "standard");
    b["reservable"] = json!(1);
    server_with_facility(extra, vec![a, b]).await
}

fn window(zone: Option<&str>, from: i64, to: i64) -> Value {
    let now = chrono::Utc::now();
    let mut body = json!({"plate": "RES-1", "starts_at": secs_after(now, from), "ends_at": secs_after(now, to)});
    if let Some(zone) = zone {
        body["zone"] = json!(zone);
    }
    body
}

async fn booking(api: &Api, token: &str, id: &str) -> Value {
    api.get(&format!("/v1/bookings/{id}"), Some(token))
        .await
        .assert_status(200)
        .clone()
}

#[tokio::test]
async fn a_reservation_is_scheduled_without_a_spot_and_its_zone_shows_the_quota() {
    let (server, api, _) = server_with(&[]).await;
    let token = server.user_token("planner");
    let reply = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let made = reply.assert_status(201);
    assert_eq!(made["status"], "SCHEDULED", "{made}");
    assert_eq!(made["spot"], Value::Null);
    assert_eq!(made["zone"], "A");
    assert!(millis(&made["ends_at"]) - millis(&made["starts_at"]) == HOUR * 1000);
    assert_eq!(made["overstay"], false);
    let facility = api.get("/v1/facilities/f1", None).await;
    let zone = &facility.assert_status(200)["zones"][0];
    assert_eq!(zone["reservable"], 1, "{zone}");
    // A reservation holds no spot until its lead time.
    assert_eq!(zone["available"], 3, "{zone}");
}

#[tokio::test]
async fn overlapping_reservations_beyond_the_quota_get_409_no_capacity_and_disjoint_windows_never_compete()
 {
    let (server, api, _) = server_with(&[]).await;
    let token = server.user_token("planner");
    let first = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let ends = first.assert_status(201)["ends_at"].clone();
    api.book("f1", &token, window(Some("A"), HOUR + 1800, 3 * HOUR))
        .await
        .assert_error(409, "no_capacity");
    // Half-open windows: one that starts where the other ends is free.
    let after =
        json!({"plate": "RES-2", "zone": "A", "starts_at": ends, "ends_at": in_secs(4 * HOUR)});
    api.book("f1", &token, after).await.assert_status(201);
    // With no zone named, every fitting zone is tried: B still has room,
    // then nothing has.
    let any = api.book("f1", &token, window(None, HOUR, 2 * HOUR)).await;
    assert_eq!(any.assert_status(201)["zone"], "B");
    api.book("f1", &token, window(None, HOUR, 2 * HOUR))
        .await
        .assert_error(409, "no_capacity");
}

#[tokio::test]
async fn cancelling_a_scheduled_reservation_frees_its_share_of_the_quota_at_once() {
    let (server, api, _) = server_with(&[]).await;
    let token = server.user_token("planner");
    let made = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let id = made.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    api.book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await
        .assert_error(409, "no_capacity");
    let cancelled = api
        .delete(&format!("/v1/bookings/{id}"), Some(&token))
        .await;
    assert_eq!(cancelled.assert_status(200)["status"], "CANCELLED");
    api.book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn at_its_lead_time_a_reservation_takes_a_concrete_spot_and_is_confirmed() {
    let (server, api, _) = server_with(&[("PARKME_RESERVATION_LEAD_SECS", "2")]).await;
    let token = server.user_token("planner");
    let made = api
        .book("f1", &token, {
            let mut body = window(Some("A"), 4, HOUR);
            body["hold_seconds"] = json!(600);
            body
        })
        .await;
    let made = made.assert_status(201).clone();
    let id = made["id"].as_str().expect("id").to_owned();
    assert_eq!(made["status"], "SCHEDULED");
    poll_until(
        "the reservation is confirmed",
        Duration::from_secs(15),
        || async { booking(&api, &token, &id).await["status"] == "CONFIRMED" },
    )
    .await;
    let confirmed = booking(&api, &token, &id).await;
    let spot = confirmed["spot"]
        .as_str()
        .expect("a concrete spot")
        .to_owned();
    assert_eq!(
        millis(&confirmed["expires_at"]),
        millis(&made["starts_at"]) + 600_000,
        "the no-show deadline is starts_at + hold_seconds: {confirmed}"
    );
    let states = api.spot_states("f1", "A").await;
    assert!(
        states.contains(&(spot.clone(), "RESERVED".to_owned())),
        "{spot} in {states:?}"
    );
}

#[tokio::test]
async fn a_reservation_survives_kill_9_and_a_lead_time_passed_while_down_is_honoured_at_once() {
    let (mut server, api, _) = server_with(&[("PARKME_RESERVATION_LEAD_SECS", "2")]).await;
    let token = server.user_token("planner");
    let later = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let later = later.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Its lead time comes 2 s from now, while the process is down.
    let soon = api.book("f1", &token, window(Some("B"), 4, HOUR)).await;
    let soon = soon.assert_status(201).clone();
    assert_eq!(soon["status"], "SCHEDULED");
    let soon = soon["id"].as_str().expect("id").to_owned();
    server.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart().await;
    let api = Api::new(&server);
    assert_eq!(booking(&api, &token, &later).await["status"], "SCHEDULED");
    api.book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await
        .assert_error(409, "no_capacity");
    poll_until(
        "the passed lead time is honoured",
        Duration::from_secs(5),
        || async { booking(&api, &token, &soon).await["status"] == "CONFIRMED" },
    )
    .await;
}

#[tokio::test]
async fn a_stay_still_active_the_grace_period_after_its_end_overstays_once() {
    let (server, api, key) = server_with(&[("PARKME_GRACE_SECS", "1")]).await;
    let token = server.user_token("driver");
    let made = api
        .book(
            "f1",
            &token,
            json!({"plate": "STAY-1", "spot": "A-002", "ends_at": in_secs(2)}),
        )
        .await;
    let made = made.assert_status(201).clone();
    assert_eq!(made["status"], "CONFIRMED");
    assert!(made["ends_at"].is_string(), "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "A-002", true)]).await;
    assert!(await_ack(&mut sensor_ws, 1).await.is_empty());
    assert_eq!(booking(&api, &token, &id).await["status"], "ACTIVE");
    poll_until("the stay overstays", Duration::from_secs(15), || async {
        booking(&api, &token, &id).await["overstay"] == true
    })
    .await;
    let spots = api.get("/v1/facilities/f1/zones/A/spots", None).await;
    let held = spots.assert_status(200)["spots"]
        .as_array()
        .expect("spots")
        .iter()
        .find(|s| s["id"] == "A-002")
        .cloned()
        .expect("A-002");
    assert_eq!(held["overstay"], true, "{held}");
    // Counted once, however long it goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ws::metric(&server, "parkme_overstays_total").await, 1.0);
}

#[tokio::test]
async fn patch_moves_the_end_of_a_live_booking_and_rechecks_the_quota() {
    let (server, api, _) = server_with(&[]).await;
    let token = server.user_token("planner");
    let first = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let first = first.assert_status(201).clone();
    let id = first["id"].as_str().expect("id").to_owned();
    let next = json!({"plate": "RES-2", "zone": "A", "starts_at": first["ends_at"], "ends_at": in_secs(3 * HOUR)});
    api.book("f1", &token, next).await.assert_status(201);
    let path = format!("/v1/bookings/{id}");
    // Longer would overlap the next reservation: over the quota.
    api.patch(
        &path,
        Some(&token),
        json!({"ends_at": in_secs(2 * HOUR + 600)}),
    )
    .await
    .assert_error(409, "no_capacity");
    let shorter = in_secs(HOUR + 1800);
    let moved = api
        .patch(&path, Some(&token), json!({"ends_at": shorter}))
        .await;
    let moved = moved.assert_status(200);
    assert_eq!(
        millis(&moved["ends_at"]) / 1000,
        millis(&json!(shorter)) / 1000
    );
    assert_eq!(moved["status"], "SCHEDULED");
    let stranger = server.user_token("stranger");
    api.patch(
        &path,
        Some(&stranger),
        json!({"ends_at": in_secs(HOUR + 900)}),
    )
    .await
    .assert_error(403, "forbidden");
    // An immediate booking's end moves too; a cancelled one's cannot.
    let now = api.book("f1", &token, json!({"plate": "NOW-1"})).await;
    let now_id = now.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let now_path = format!("/v1/bookings/{now_id}");
    let with_end = api
        .patch(&now_path, Some(&token), json!({"ends_at": in_secs(HOUR)}))
        .await;
    assert!(with_end.assert_status(200)["ends_at"].is_string());
    api.delete(&now_path, Some(&token)).await.assert_status(200);
    api.patch(
        &now_path,
        Some(&token),
        json!({"ends_at": in_secs(2 * HOUR)}),
    )
    .await
    .assert_error(409, "not_live");
}

#[tokio::test]
async fn bad_windows_quotas_and_ends_get_their_contract_error_and_change_nothing() {
    let (server, api, _) = server_with(&[]).await;
    let token = server.user_token("planner");
    for (body, status, code) in [
        (window(Some("A"), -60, HOUR), 400, "invalid_window"),
        (
            window(Some("A"), 31 * 24 * HOUR, 31 * 24 * HOUR + 60),
            400,
            "invalid_window",
        ),
        (window(Some("A"), 2 * HOUR, HOUR), 400, "invalid_window"),
        (
            window(Some("A"), HOUR, HOUR + 8 * 24 * HOUR),
            400,
            "invalid_window",
        ),
        (
            json!({"plate": "X1", "starts_at": in_secs(HOUR)}),
            400,
            "invalid_window",
        ),
        (
            json!({"plate": "X1", "starts_at": "tomorrow", "ends_at": in_secs(HOUR)}),
            400,
            "invalid_time",
        ),
        (
            json!({"plate": "X1", "ends_at": in_secs(-5)}),
            400,
            "invalid_window",
        ),
        (
            json!({"plate": "X1", "spot": "A-001", "starts_at": in_secs(HOUR), "ends_at": in_secs(2 * HOUR)}),
            400,
            "reservation_names_spot",
        ),
    ] {
        let reply = api.book("f1", &token, body.clone()).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        reply.assert_error(status, code);
    }
    for quota in [json!(-1), json!(4), json!(1_u64 << 40)] {
        let mut zone = spot_zone("A", "A-", 3, "standard");
        zone["reservable"] = quota.clone();
        let reply = api
            .put(
                "/v1/facilities/f1",
                Some(server.admin_token()),
                layout(vec![zone]),
            )
            .await;
        reply.assert_error(400, "invalid_layout");
    }
    let made = api
        .book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await;
    let id = made.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/bookings/{id}");
    api.patch(&path, Some(&token), json!({"ends_at": in_secs(-10)}))
        .await
        .assert_error(400, "invalid_window");
    api.patch(&path, Some(&token), json!({"ends_at": in_secs(HOUR - 10)}))
        .await
        .assert_error(400, "invalid_window");
    api.patch(&path, Some(&token), json!({"ends": 3}))
        .await
        .assert_error_shape();
    // Nothing changed: the quota still holds one reservation, in zone A.
    let facility = api.get("/v1/facilities/f1", None).await;
    assert_eq!(facility.assert_status(200)["zones"][0]["reservable"], 1);
    api.book("f1", &token, window(Some("A"), HOUR, 2 * HOUR))
        .await
        .assert_error(409, "no_capacity");
}

#[tokio::test]
async fn a_reservation_booked_on_the_app_socket_carries_its_window() {
    let (server, _api, _) = server_with(&[]).await;
    let token = server.user_token("app-user");
    let mut app = ws::app(&server, Some(&token)).await;
    let mut op = window(Some("B"), HOUR, 2 * HOUR);
    op["op"] = json!("book");
    op["req"] = json!("r1");
    op["facility"] = json!("f1");
    ws::send_json(&mut app, &op).await;
    let answer = ws::next_matching(&mut app, |m| m["t"] == "booking" || m["t"] == "error").await;
    assert_eq!(answer["t"], "booking", "{answer}");
    assert_eq!(answer["req"], "r1");
    let booked = &answer["booking"];
    assert_eq!(booked["status"], "SCHEDULED", "{booked}");
    assert_eq!(booked["spot"], Value::Null);
    assert!(booked["starts_at"].is_string() && booked["ends_at"].is_string());
}
