//! Contract §3, errors: every failure is `{"error":{"code","message"}}`
//! with a fitting status, and no input, however odd, gets a 500.

use crate::helpers::http::{Api, Body, NO_LIMITS, layout, spot_zone};
use crate::helpers::{self, http};
use crate::helpers::{TestServer, user_token_signed_with};
use reqwest::Method;
use serde_json::{Value, json};

/// A server with facility `f1`: zone `A` (spots A-001..A-003, standard),
/// zone `C` (a counter zone of 2).
async fn server_with_facility(env: &[(&str, &str)]) -> (TestServer, Api) {
    let server = TestServer::start(env).await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![
            spot_zone("A", "A-", 3, "standard"),
            json!({"id": "C", "capacity": 2}),
        ]),
    )
    .await;
    (server, api)
}

async fn post_raw(api: &Api, path: &str, token: Option<&str>, bytes: &[u8]) -> http::Reply {
    api.send(Method::POST, path, token, Body::Raw(bytes.to_vec()), &[])
        .await
}

#[tokio::test]
async fn malformed_json_bad_plate_bad_hold_seconds_and_bad_kind_are_400() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    let path = "/v1/facilities/f1/bookings";

    for raw in [
        &b"{"[..],
        b"",
        b"not json",
        b"[1,2,3]",
        b"{\"plate\": 12}",
        b"{\"zone\": \"A\"}",
        b"\xff\xfe\x00",
    ] {
        let reply = post_raw(&api, path, Some(&user), raw).await;
        assert_eq!(reply.status, 400, "{raw:?}: {reply:?}");
        reply.assert_error_shape();
    }

    for plate in ["", "AB 123", "ÄB123", "ABCDEFGHIJKLMNOPQ", "AB_123", "AB/1"] {
        api.book("f1", &user, json!({"plate": plate}))
            .await
            .assert_error(400, "invalid_plate");
    }
    for hold in [json!(0), json!(-5), json!(86_401), json!(1e12)] {
        let reply = api
            .book("f1", &user, json!({"plate": "AB123", "hold_seconds": hold}))
            .await;
        assert_eq!(reply.status, 400, "hold {hold}: {reply:?}");
        reply.assert_error_shape();
    }
    api.book(
        "f1",
        &user,
        json!({"plate": "AB123", "hold_seconds": 86_401}),
    )
    .await
    .assert_error(400, "invalid_hold_seconds");
    for kind in ["truck", "EV", ""] {
        api.book("f1", &user, json!({"plate": "AB123", "kind": kind}))
            .await
            .assert_error(400, "invalid_kind");
    }
    // Bad layouts are 400 as well.
    let admin = server.admin_token();
    for bad in [
        json!({"zones": [{"id": "Z", "spots": [{"id": "s1", "kind": "truck"}]}]}),
        json!({"zones": [{"id": "Z"}]}),
        json!({"zones": [{"id": "Z", "capacity": -1}]}),
        json!({"zones": [{"id": "bad id", "capacity": 1}]}),
        json!({"zones": "nope"}),
        json!({"zones": [{"id": "Z", "capacity": 1}, {"id": "Z", "capacity": 2}]}),
        json!({"zones": [{"id": "Y", "spots": [{"id": "s"}]}, {"id": "Z", "spots": [{"id": "s"}]}]}),
        json!({"zones": [{"id": "Z", "capacity": 1, "spots": []}]}),
        json!({"location": {"lat": 91, "lon": 0}, "zones": []}),
    ] {
        let reply = api.put("/v1/facilities/f2", Some(admin), bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        reply.assert_error_shape();
    }
    // Plates are upper-cased, and 1 and 86400 are valid holds.
    for hold in [1, 86_400] {
        let reply = api
            .book("f1", &user, json!({"plate": "ab-12", "hold_seconds": hold}))
            .await;
        assert_eq!(reply.assert_status(201)["plate"], "AB-12");
    }
}

#[tokio::test]
async fn missing_or_bad_credentials_are_401() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let booking = api
        .book("f1", &server.user_token("alice"), json!({"plate": "AB1"}))
        .await;
    let id = booking.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let foreign = user_token_signed_with("another-secret", "alice");
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(helpers::JWT_SECRET.as_bytes()),
        )
        .expect("token")
    };
    let expired = sign(json!({"sub": "alice", "exp": 1_000_000}));
    let reserved = sign(json!({"sub": "admin"}));
    let no_sub = sign(json!({"name": "alice"}));
    let numeric_sub = sign(json!({"sub": 42}));
    // {"alg":"none"}.{"sub":"alice"}. — unsigned.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.";
    let bookings = "/v1/facilities/f1/bookings";

    for token in [
        None,
        Some("garbage"),
        Some(foreign.as_str()),
        Some(""),
        Some(expired.as_str()),
        Some(reserved.as_str()),
        Some(no_sub.as_str()),
        Some(numeric_sub.as_str()),
        Some(unsigned),
    ] {
        let body = json!({"plate": "AB1"});
        let reply = api.post(bookings, token, body.clone()).await;
        reply.assert_error(401, "unauthorized");
        let reply = api
            .put("/v1/facilities/f1", token, json!({"zones": []}))
            .await;
        reply.assert_error(401, "unauthorized");
        let reply = api.get(&format!("/v1/bookings/{id}"), token).await;
        reply.assert_error(401, "unauthorized");
        let reply = api.delete(&format!("/v1/bookings/{id}"), token).await;
        reply.assert_error(401, "unauthorized");
    }
    for header in ["Basic YWxpY2U6cHc=", "Bearer", "Token abc"] {
        let reply = api
            .send(
                Method::POST,
                bookings,
                None,
                Body::Json(json!({"plate": "AB1"})),
                &[("authorization", header)],
            )
            .await;
        reply.assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn a_user_token_without_exp_is_401() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let forever = server.token_with_claims(&json!({"sub": "alice"}));
    let reply = api.book("f1", &forever, json!({"plate": "AB1"})).await;
    reply.assert_error(401, "unauthorized");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exp")),
        "{reply:?}"
    );
    let reply = api.get("/v1/bookings/whatever", Some(&forever)).await;
    reply.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_user_token_is_401_before_its_nbf_and_after_its_exp() {
    let mut env = NO_LIMITS.to_vec();
    env.push(("PARKME_JWT_LEEWAY_SECS", "0"));
    let (server, api) = server_with_facility(&env).await;
    let now = helpers::unix_now();
    let (nbf, exp) = (now + 2, now + 4);
    let token = server.token_with_claims(&json!({"sub": "alice", "nbf": nbf, "exp": exp}));
    let early = api.book("f1", &token, json!({"plate": "AB1"})).await;
    early.assert_error(401, "unauthorized");
    assert!(
        early.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nbf")),
        "{early:?}"
    );
    while helpers::unix_now() < nbf {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let booked = api.book("f1", &token, json!({"plate": "AB1"})).await;
    let id = booked.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    while helpers::unix_now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let late = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
    late.assert_error(401, "unauthorized");
    assert!(
        late.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{late:?}"
    );
    let late = api
        .delete(&format!("/v1/bookings/{id}"), Some(&token))
        .await;
    late.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn someone_elses_booking_and_non_admin_writes_are_403() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let alice = server.user_token("alice");
    let bob = server.user_token("bob");
    let booking = api.book("f1", &alice, json!({"plate": "AB1"})).await;
    let id = booking.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let path = format!("/v1/bookings/{id}");
    api.get(&path, Some(&bob))
        .await
        .assert_error(403, "forbidden");
    api.delete(&path, Some(&bob))
        .await
        .assert_error(403, "forbidden");
    api.put(
        "/v1/facilities/f1",
        Some(&bob),
        layout(vec![spot_zone("A", "A-", 1, "standard")]),
    )
    .await
    .assert_error(403, "forbidden");
    api.put(
        "/v1/facilities/f1/spots/A-001/service",
        Some(&bob),
        json!({"out_of_service": true}),
    )
    .await
    .assert_error(403, "forbidden");

    // Nothing changed: still alice's, still confirmed, layout intact.
    let reply = api.get(&path, Some(&alice)).await;
    assert_eq!(reply.assert_status(200)["status"], "CONFIRMED");
    assert_eq!(api.spot_states("f1", "A").await.len(), 3);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    let admin = server.admin_token();
    let weird = [
        "nope",
        "%FF",
        "%C3%A9t%C3%A9",
        "%E2%9C%93",
        "a%20b",
        "%00",
        // ("..", "%2E%2E" are resolved by the client's URL parser.)
        "...",
        "x%2Fy",
        "%25",
        &"x".repeat(65),
        &"y".repeat(5000),
        "bk_00000000000abcdefghijkl",
        "-",
        "'%20OR%201=1--",
    ];
    for id in weird {
        api.get(&format!("/v1/bookings/{id}"), Some(&user))
            .await
            .assert_error(404, "unknown_booking");
        api.delete(&format!("/v1/bookings/{id}"), Some(admin))
            .await
            .assert_error(404, "unknown_booking");
        api.get(&format!("/v1/facilities/{id}"), None)
            .await
            .assert_error(404, "unknown_facility");
        api.get(&format!("/v1/facilities/{id}/zones/A/spots"), None)
            .await
            .assert_error(404, "unknown_facility");
        api.get(&format!("/v1/facilities/f1/zones/{id}/spots"), None)
            .await
            .assert_error(404, "unknown_zone");
        api.put(
            &format!("/v1/facilities/f1/spots/{id}/service"),
            Some(admin),
            json!({"out_of_service": true}),
        )
        .await
        .assert_error(404, "unknown_spot");
        api.book(id, &user, json!({"plate": "AB1"}))
            .await
            .assert_error(404, "unknown_facility");
    }
    for (body, code) in [
        (json!({"plate": "AB1", "zone": "nope"}), "unknown_zone"),
        (json!({"plate": "AB1", "zone": "a b"}), "unknown_zone"),
        (json!({"plate": "AB1", "spot": "nope"}), "unknown_spot"),
        (json!({"plate": "AB1", "spot": "ünï"}), "unknown_spot"),
        // A spot that exists, in another zone than the one named.
        (
            json!({"plate": "AB1", "zone": "C", "spot": "A-001"}),
            "unknown_spot",
        ),
    ] {
        api.book("f1", &user, body).await.assert_error(404, code);
    }
    // Unknown routes use the same shape.
    for path in ["/nope", "/v1", "/v1/facilities/f1/zones", "/v1/bookings"] {
        let reply = api.get(path, None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        reply.assert_error_shape();
    }
}

#[tokio::test]
async fn a_full_facility_is_409_no_spot_available() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    // Zone A has 3 spots, zone C 2 units: 5 bookings fit, the sixth not.
    for i in 0..5 {
        let reply = api
            .book("f1", &user, json!({"plate": format!("P{i}")}))
            .await;
        reply.assert_status(201);
    }
    api.book("f1", &user, json!({"plate": "P9"}))
        .await
        .assert_error(409, "no_spot_available");
    api.book("f1", &user, json!({"plate": "P9", "zone": "C"}))
        .await
        .assert_error(409, "no_spot_available");
    api.book("f1", &user, json!({"plate": "P9", "kind": "ev"}))
        .await
        .assert_error(409, "no_spot_available");
    // Naming a spot that is already held is a conflict too.
    let reply = api
        .book("f1", &user, json!({"plate": "P9", "spot": "A-001"}))
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    reply.assert_error_shape();
}

#[tokio::test]
async fn a_layout_that_drops_a_booked_spot_is_409_and_changes_nothing() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    let admin = server.admin_token();
    let booking = api
        .book("f1", &user, json!({"plate": "AB1", "spot": "A-003"}))
        .await;
    let id = booking.assert_status(201)["id"].clone();
    let before = api.get("/v1/facilities/f1", None).await;
    let spots_before = api.spot_states("f1", "A").await;

    let reply = api
        .put(
            "/v1/facilities/f1",
            Some(admin),
            layout(vec![
                spot_zone("A", "A-", 2, "standard"),
                json!({"id": "D", "capacity": 9}),
            ]),
        )
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    reply.assert_error_shape();

    let after = api.get("/v1/facilities/f1", None).await;
    assert_eq!(after.json["zones"], before.json["zones"]);
    assert_eq!(after.json["totals"], before.json["totals"]);
    assert_eq!(api.spot_states("f1", "A").await, spots_before);
    let reply = api
        .get(
            &format!("/v1/bookings/{}", id.as_str().expect("id")),
            Some(&user),
        )
        .await;
    assert_eq!(reply.assert_status(200)["status"], "CONFIRMED");
}

#[tokio::test]
async fn cancelling_a_booking_that_is_not_confirmed_is_409() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    let booking = api.book("f1", &user, json!({"plate": "AB1"})).await;
    let id = booking.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/bookings/{id}");
    let cancelled = api.delete(&path, Some(&user)).await;
    assert_eq!(cancelled.assert_status(200)["status"], "CANCELLED");
    let again = api.delete(&path, Some(&user)).await;
    assert_eq!(again.status, 409, "{again:?}");
    again.assert_error_shape();
    let again = api.delete(&path, Some(server.admin_token())).await;
    assert_eq!(again.status, 409, "{again:?}");

    // Expired holds are not CONFIRMED either.
    let short = api
        .book("f1", &user, json!({"plate": "AB2", "hold_seconds": 1}))
        .await;
    let id = short.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/bookings/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = api.get(&path, Some(&user)).await;
        if reply.assert_status(200)["status"] == "EXPIRED" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a 1 s hold never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reply = api.delete(&path, Some(&user)).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    reply.assert_error_shape();
}

#[tokio::test]
async fn bodies_over_one_mib_are_413() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let user = server.user_token("alice");
    let padding = "x".repeat((1 << 20) + 1);
    let big = json!({"plate": "AB1", "padding": padding});
    api.book("f1", &user, big.clone())
        .await
        .assert_error(413, "payload_too_large");
    let reply = api
        .put(
            "/v1/facilities/f1",
            Some(server.admin_token()),
            json!({"zones": [], "padding": padding}),
        )
        .await;
    reply.assert_error(413, "payload_too_large");
    // Just under the limit is read (and then judged on its content).
    let fits = json!({"plate": "AB1", "padding": "x".repeat((1 << 20) - 64)});
    let reply = api.book("f1", &user, fits).await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

#[tokio::test]
async fn the_booking_limit_gives_429_with_retry_after() {
    let (server, api) = server_with_facility(&[("PARKME_RATE_BOOKINGS_PER_HOUR", "3")]).await;
    let alice = server.user_token("alice");
    for i in 0..3 {
        let reply = api
            .book("f1", &alice, json!({"plate": format!("P{i}")}))
            .await;
        reply.assert_status(201);
    }
    let limited = api.book("f1", &alice, json!({"plate": "P4"})).await;
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    // Another user has their own quota.
    let bob = server.user_token("bob");
    api.book("f1", &bob, json!({"plate": "B1"}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn the_user_request_limit_gives_429_with_retry_after() {
    let (server, api) = server_with_facility(&[("PARKME_RATE_USER_PER_HOUR", "3")]).await;
    let alice = server.user_token("alice");
    for _ in 0..3 {
        api.get("/v1/facilities/f1", Some(&alice))
            .await
            .assert_status(200);
    }
    let limited = api.get("/v1/facilities/f1", Some(&alice)).await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"), "{limited:?}");
    api.book("f1", &alice, json!({"plate": "AB1"}))
        .await
        .assert_error(429, "rate_limited");
    // Anonymous reads and other users are not affected.
    api.get("/v1/facilities/f1", None).await.assert_status(200);
    api.book("f1", &server.user_token("bob"), json!({"plate": "AB1"}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn the_anonymous_write_limit_gives_429_with_retry_after() {
    let (server, api) = server_with_facility(&[("PARKME_RATE_ANON_PER_HOUR", "3")]).await;
    let path = "/v1/facilities/f1/bookings";
    for _ in 0..3 {
        let reply = api.post(path, None, json!({"plate": "AB1"})).await;
        reply.assert_error(401, "unauthorized");
    }
    let limited = api.post(path, None, json!({"plate": "AB1"})).await;
    limited.assert_error(429, "rate_limited");
    let retry_after = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a numeric Retry-After");
    assert!(retry_after >= 1);
    // Bad credentials count as anonymous too.
    let reply = api.post(path, Some("guess"), json!({"plate": "AB1"})).await;
    reply.assert_error(429, "rate_limited");
    // Reads stay open, and signed-in users are not affected.
    api.get("/v1/facilities/f1", None).await.assert_status(200);
    api.book("f1", &server.user_token("alice"), json!({"plate": "AB1"}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_wrong_method_is_405() {
    let (server, api) = server_with_facility(NO_LIMITS).await;
    let admin = Some(server.admin_token());
    for (method, path) in [
        (Method::POST, "/v1/facilities/f1"),
        (Method::DELETE, "/v1/facilities/f1"),
        (Method::PATCH, "/v1/facilities/f1"),
        (Method::POST, "/v1/facilities"),
        (Method::GET, "/v1/facilities/f1/bookings"),
        (Method::PUT, "/v1/bookings/bk_1"),
        (Method::POST, "/health/"),
        (Method::DELETE, "/metrics"),
        (Method::GET, "/v1/facilities/f1/spots/A-001/service"),
        (Method::POST, "/v1/facilities/f1/zones/A/spots"),
    ] {
        let reply = api.send(method.clone(), path, admin, Body::None, &[]).await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        reply.assert_error(405, "method_not_allowed");
    }
}
