//! Contract §3, the happy paths over real sockets: JSON shapes, layouts,
//! spot states, bookings, idempotency.

use crate::helpers::TestServer;
use crate::helpers::http;
use crate::helpers::http::{Api, Body, NO_LIMITS, layout, spot_zone};
use reqwest::Method;
use serde_json::{Value, json};

/// Facility `f1`: zone `A` (2 standard, 1 ev, 1 accessible), zone `C`
/// (a counter zone of 2).
fn mixed_layout() -> Value {
    layout(vec![
        json!({"id": "A", "name": "Level A", "spots": [
            {"id": "A-1", "kind": "standard"},
            {"id": "A-2"},
            {"id": "A-EV", "kind": "ev"},
            {"id": "A-ACC", "kind": "accessible"},
        ]}),
        json!({"id": "C", "name": "Roof", "capacity": 2}),
    ])
}

const COUNT_FIELDS: [&str; 5] = [
    "total",
    "available",
    "reserved",
    "occupied",
    "out_of_service",
];

#[track_caller]
fn assert_counts(counts: &Value, expected: [u64; 5]) {
    for (field, want) in COUNT_FIELDS.iter().zip(expected) {
        assert_eq!(counts[field], want, "{field} of {counts}");
    }
}

#[track_caller]
fn assert_rfc3339_utc(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value.as_str().expect("a time string");
    assert!(text.ends_with('Z'), "UTC time: {text}");
    chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339")
}

#[tokio::test]
async fn a_facility_put_is_201_then_200_and_includes_the_sensor_key() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    let admin = Some(server.admin_token());
    let created = api.put("/v1/facilities/f1", admin, mixed_layout()).await;
    let body = created.assert_status(201);
    let key = body["sensor_key"].as_str().expect("sensor_key").to_owned();
    assert!(!key.is_empty());
    assert_eq!(body["id"], "f1");
    assert_eq!(body["name"], "Test Garage");

    let replaced = api.put("/v1/facilities/f1", admin, mixed_layout()).await;
    assert_eq!(replaced.assert_status(200)["sensor_key"], key.as_str());
    // Public reads never show the key.
    let read = api.get("/v1/facilities/f1", None).await;
    assert!(read.assert_status(200).get("sensor_key").is_none());
    let list = api.get("/v1/facilities", None).await;
    assert!(!list.text.contains(&key));
}

#[tokio::test]
async fn a_facility_has_counts_overall_per_zone_and_per_kind() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let user = server.user_token("alice");
    api.book("f1", &user, json!({"plate": "AB1", "spot": "A-EV"}))
        .await
        .assert_status(201);
    api.put(
        "/v1/facilities/f1/spots/A-2/service",
        Some(server.admin_token()),
        json!({"out_of_service": true}),
    )
    .await
    .assert_status(200);

    let reply = api.get("/v1/facilities/f1", None).await;
    let facility = reply.assert_status(200);
    for field in [
        "id", "name", "timezone", "location", "seq", "totals", "zones",
    ] {
        assert!(facility.get(field).is_some(), "{field} in {facility}");
    }
    assert_eq!(facility["timezone"], "Europe/Paris");
    assert_eq!(facility["location"], json!({"lat": 48.8566, "lon": 2.3522}));
    assert!(facility["seq"].as_u64().is_some(), "seq is a number");
    // 4 spots + 2 units; A-EV reserved, A-2 out of service.
    assert_counts(&facility["totals"], [6, 4, 1, 0, 1]);
    assert_counts(&facility["totals"]["by_kind"]["ev"], [1, 0, 1, 0, 0]);

    let zones = facility["zones"].as_array().expect("zones");
    assert_eq!(zones.len(), 2);
    let a = &zones[0];
    assert_eq!((&a["id"], &a["name"]), (&json!("A"), &json!("Level A")));
    assert!(a.get("capacity").is_none());
    assert_counts(a, [4, 2, 1, 0, 1]);
    assert_counts(&a["by_kind"]["standard"], [2, 1, 0, 0, 1]);
    assert_counts(&a["by_kind"]["ev"], [1, 0, 1, 0, 0]);
    assert_counts(&a["by_kind"]["accessible"], [1, 1, 0, 0, 0]);
    let c = &zones[1];
    assert_eq!(c["capacity"], 2);
    assert_counts(c, [2, 2, 0, 0, 0]);
    assert_counts(&c["by_kind"]["standard"], [2, 2, 0, 0, 0]);

    let list = api.get("/v1/facilities", None).await;
    let listed = list.assert_status(200)["facilities"]
        .as_array()
        .expect("facilities")
        .clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "f1");
    assert_eq!(listed[0]["zones"], facility["zones"]);
}

#[tokio::test]
async fn spots_list_every_spot_with_its_state_and_booking() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let user = server.user_token("alice");
    let booking = api
        .book("f1", &user, json!({"plate": "AB1", "spot": "A-1"}))
        .await;
    let id = booking.assert_status(201)["id"].clone();

    let reply = api.get("/v1/facilities/f1/zones/A/spots", None).await;
    let spots = reply.assert_status(200)["spots"]
        .as_array()
        .expect("spots")
        .clone();
    let ids: Vec<&str> = spots.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["A-1", "A-2", "A-EV", "A-ACC"]);
    for spot in &spots {
        assert_eq!(spot["zone"], "A");
        let expected_kind = match spot["id"].as_str() {
            Some("A-EV") => "ev",
            Some("A-ACC") => "accessible",
            _ => "standard",
        };
        assert_eq!(spot["kind"], expected_kind);
    }
    assert_eq!(spots[0]["state"], "RESERVED");
    assert_eq!(spots[0]["booking"], id);
    assert_eq!(spots[1]["state"], "AVAILABLE");
    assert!(spots[1].get("booking").is_none_or(Value::is_null));

    // A counter zone has no spots to list.
    let reply = api.get("/v1/facilities/f1/zones/C/spots", None).await;
    assert_eq!(reply.assert_status(200)["spots"], json!([]));
}

#[tokio::test]
async fn a_booking_has_the_contract_shape_with_rfc3339_utc_times() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let user = server.user_token("alice");
    let reply = api
        .book(
            "f1",
            &user,
            json!({"plate": "ab-123", "zone": "A", "hold_seconds": 600}),
        )
        .await;
    let booking = reply.assert_status(201).clone();
    for field in [
        "id",
        "facility",
        "zone",
        "spot",
        "plate",
        "status",
        "created_at",
        "expires_at",
    ] {
        assert!(booking.get(field).is_some(), "{field} in {booking}");
    }
    assert!(booking["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(booking["facility"], "f1");
    assert_eq!(booking["zone"], "A");
    // A booking that names no kind gets a standard spot first.
    assert!(matches!(booking["spot"].as_str(), Some("A-1" | "A-2")));
    assert_eq!(booking["plate"], "AB-123");
    assert_eq!(booking["status"], "CONFIRMED");
    let created = assert_rfc3339_utc(&booking["created_at"]);
    let expires = assert_rfc3339_utc(&booking["expires_at"]);
    assert_eq!((expires - created).num_seconds(), 600);
    let drift = (chrono::Utc::now().fixed_offset() - created)
        .num_seconds()
        .abs();
    assert!(drift < 60, "created_at is now: {created}");

    let id = booking["id"].as_str().expect("id");
    let read = api.get(&format!("/v1/bookings/{id}"), Some(&user)).await;
    assert_eq!(read.assert_status(200)["id"], booking["id"]);
    assert_eq!(read.json["created_at"], booking["created_at"]);
    assert_eq!(read.json["expires_at"], booking["expires_at"]);

    // The default hold is 900 s.
    let reply = api.book("f1", &user, json!({"plate": "AB-124"})).await;
    let b = reply.assert_status(201);
    let held = assert_rfc3339_utc(&b["expires_at"]) - assert_rfc3339_utc(&b["created_at"]);
    assert_eq!(held.num_seconds(), 900);
}

#[tokio::test]
async fn a_layout_replace_keeps_spot_states() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    let admin = server.admin_token();
    api.put_facility(admin, "f1", mixed_layout()).await;
    let user = server.user_token("alice");
    let booking = api
        .book("f1", &user, json!({"plate": "AB1", "spot": "A-1"}))
        .await;
    let id = booking.assert_status(201)["id"].clone();
    api.put(
        "/v1/facilities/f1/spots/A-ACC/service",
        Some(admin),
        json!({"out_of_service": true}),
    )
    .await
    .assert_status(200);

    // Same spots plus a new one and a new zone; A-2 (free) is dropped.
    let bigger = layout(vec![
        json!({"id": "A", "name": "Level A", "spots": [
            {"id": "A-1"}, {"id": "A-EV", "kind": "ev"},
            {"id": "A-ACC", "kind": "accessible"}, {"id": "A-9", "kind": "compact"},
        ]}),
        json!({"id": "C", "name": "Roof", "capacity": 3}),
        spot_zone("B", "B-", 2, "motorcycle"),
    ]);
    let reply = api.put("/v1/facilities/f1", Some(admin), bigger).await;
    reply.assert_status(200);

    let states = api.spot_states("f1", "A").await;
    let expected = [
        ("A-1", "RESERVED"),
        ("A-EV", "AVAILABLE"),
        ("A-ACC", "OUT_OF_SERVICE"),
        ("A-9", "AVAILABLE"),
    ];
    assert_eq!(
        states,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    let spots = api.get("/v1/facilities/f1/zones/A/spots", None).await;
    assert_eq!(spots.json["spots"][0]["booking"], id);
    let facility = api.get("/v1/facilities/f1", None).await;
    let zones = facility.assert_status(200)["zones"].clone();
    let ids: Vec<&str> = zones
        .as_array()
        .expect("zones")
        .iter()
        .filter_map(|z| z["id"].as_str())
        .collect();
    assert_eq!(ids, ["A", "C", "B"]);
    assert_eq!(zones[1]["capacity"], 3);
    let read = api
        .get(
            &format!("/v1/bookings/{}", id.as_str().expect("id")),
            Some(&user),
        )
        .await;
    assert_eq!(read.assert_status(200)["status"], "CONFIRMED");
}

#[tokio::test]
async fn a_counter_zone_booking_has_no_spot() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![
            json!({"id": "C", "capacity": 2, "kind": "ev"}),
            spot_zone("A", "A-", 1, "standard"),
        ]),
    )
    .await;
    let user = server.user_token("alice");
    for plate in ["C1", "C2"] {
        let reply = api
            .book("f1", &user, json!({"plate": plate, "zone": "C"}))
            .await;
        let booking = reply.assert_status(201);
        assert_eq!(booking["zone"], "C");
        assert!(booking["spot"].is_null(), "spot of {booking}");
        assert_eq!(booking["status"], "CONFIRMED");
    }
    api.book("f1", &user, json!({"plate": "C3", "zone": "C"}))
        .await
        .assert_error(409, "no_spot_available");
    let facility = api.get("/v1/facilities/f1", None).await;
    let c = &facility.assert_status(200)["zones"][0];
    assert_counts(c, [2, 0, 2, 0, 0]);
    assert_counts(&c["by_kind"]["ev"], [2, 0, 2, 0, 0]);
}

#[tokio::test]
async fn a_kind_filter_books_only_that_kind() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let user = server.user_token("alice");
    let ev = api
        .book("f1", &user, json!({"plate": "EV1", "kind": "ev"}))
        .await;
    assert_eq!(ev.assert_status(201)["spot"], "A-EV");
    api.book("f1", &user, json!({"plate": "EV2", "kind": "ev"}))
        .await
        .assert_error(409, "no_spot_available");
    let acc = api
        .book(
            "f1",
            &user,
            json!({"plate": "AC1", "kind": "accessible", "zone": "A"}),
        )
        .await;
    assert_eq!(acc.assert_status(201)["spot"], "A-ACC");
    // Counter zone C is standard: a standard booking may land there once
    // the standard spots are gone, never on another kind.
    let mut zones = Vec::new();
    for i in 0..4 {
        let reply = api
            .book(
                "f1",
                &user,
                json!({"plate": format!("S{i}"), "kind": "standard"}),
            )
            .await;
        let booking = reply.assert_status(201);
        zones.push(booking["zone"].as_str().expect("zone").to_owned());
        if let Some(spot) = booking["spot"].as_str() {
            assert!(matches!(spot, "A-1" | "A-2"), "standard spot: {spot}");
        }
    }
    zones.sort();
    assert_eq!(zones, ["A", "A", "C", "C"]);
    api.book("f1", &user, json!({"plate": "S9", "kind": "standard"}))
        .await
        .assert_error(409, "no_spot_available");
    api.book("f1", &user, json!({"plate": "M1", "kind": "motorcycle"}))
        .await
        .assert_error(409, "no_spot_available");
}

#[tokio::test]
async fn an_out_of_service_spot_is_never_booked() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    let admin = Some(server.admin_token());
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("A", "A-", 3, "standard")]),
    )
    .await;
    let reply = api
        .put(
            "/v1/facilities/f1/spots/A-002/service",
            admin,
            json!({"out_of_service": true}),
        )
        .await;
    let spot = reply.assert_status(200);
    assert_eq!(spot["state"], "OUT_OF_SERVICE");
    assert_eq!(spot["id"], "A-002");
    let user = server.user_token("alice");
    api.book("f1", &user, json!({"plate": "X1", "spot": "A-002"}))
        .await
        .assert_status(409);
    let mut got = Vec::new();
    for i in 0..2 {
        let reply = api
            .book("f1", &user, json!({"plate": format!("X{i}")}))
            .await;
        got.push(reply.assert_status(201)["spot"].clone());
    }
    assert!(!got.contains(&json!("A-002")), "{got:?}");
    api.book("f1", &user, json!({"plate": "X9"}))
        .await
        .assert_error(409, "no_spot_available");
    // Back in service, it is bookable again.
    api.put(
        "/v1/facilities/f1/spots/A-002/service",
        admin,
        json!({"out_of_service": false}),
    )
    .await
    .assert_status(200);
    let reply = api.book("f1", &user, json!({"plate": "X9"})).await;
    assert_eq!(reply.assert_status(201)["spot"], "A-002");
}

#[tokio::test]
async fn the_admin_can_read_and_cancel_anyones_booking() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let alice = server.user_token("alice");
    let reply = api
        .book("f1", &alice, json!({"plate": "AB1", "spot": "A-1"}))
        .await;
    let id = reply.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/bookings/{id}");
    let admin = Some(server.admin_token());
    assert_eq!(api.get(&path, admin).await.assert_status(200)["id"], id);
    let cancelled = api.delete(&path, admin).await;
    assert_eq!(cancelled.assert_status(200)["status"], "CANCELLED");
    assert_eq!(
        api.get(&path, Some(&alice)).await.assert_status(200)["status"],
        "CANCELLED"
    );
    let states = api.spot_states("f1", "A").await;
    assert_eq!(states[0], ("A-1".to_owned(), "AVAILABLE".to_owned()));
    // And the owner can cancel their own.
    let reply = api.book("f1", &alice, json!({"plate": "AB2"})).await;
    let id = reply.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reply = api
        .delete(&format!("/v1/bookings/{id}"), Some(&alice))
        .await;
    assert_eq!(reply.assert_status(200)["status"], "CANCELLED");
}

async fn book_with_key(api: &Api, token: &str, key: &str, plate: &str) -> http::Reply {
    api.send(
        Method::POST,
        "/v1/facilities/f1/bookings",
        Some(token),
        Body::Json(json!({"plate": plate})),
        &[("Idempotency-Key", key)],
    )
    .await
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_same_booking_with_200() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let alice = server.user_token("alice");
    let first = book_with_key(&api, &alice, "key-1", "AB1").await;
    let booking = first.assert_status(201).clone();
    for _ in 0..3 {
        let retry = book_with_key(&api, &alice, "key-1", "AB1").await;
        assert_eq!(retry.assert_status(200), &booking);
    }
    // Concurrent retries of a new key create exactly one booking.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, alice) = (api.clone(), alice.clone());
            tokio::spawn(async move { book_with_key(&api, &alice, "key-2", "AB2").await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        assert!(matches!(reply.status.as_u16(), 200 | 201), "{reply:?}");
        created += usize::from(reply.status == 201);
        ids.push(reply.json["id"].clone());
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let facility = api.get("/v1/facilities/f1", None).await;
    assert_eq!(facility.assert_status(200)["totals"]["reserved"], 2);
}

#[tokio::test]
async fn another_user_with_the_same_idempotency_key_gets_a_new_booking() {
    let server = TestServer::start(NO_LIMITS).await;
    let api = Api::new(&server);
    api.put_facility(server.admin_token(), "f1", mixed_layout())
        .await;
    let alice = book_with_key(&api, &server.user_token("alice"), "same", "AB1").await;
    let bob = book_with_key(&api, &server.user_token("bob"), "same", "AB1").await;
    let (a, b) = (alice.assert_status(201), bob.assert_status(201));
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["spot"], b["spot"]);
}
