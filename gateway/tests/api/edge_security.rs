//! The edge's defences against a hostile client, against the real binary:
//! failed authentication limited per address (HTTP and both sockets),
//! sensor keys rotatable per facility (and kept across the upgrade from
//! records without key generations), websockets refused to foreign
//! browser origins, `X-Forwarded-For` believed only from trusted proxies,
//! short secrets warned about. One test per promise; several clients are
//! played from different loopback addresses (127.0.0.0/8).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::helpers::ws::*;
use crate::helpers::{ADMIN_TOKEN, JWT_SECRET, TestServer};
use parkme_engine::codec::encode_stored;
use parkme_engine::{
    FacilityId, FacilityLayout, Millis, SpotKind, SpotLayout, ZoneLayout, ZoneShape,
};
use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// An HTTP client whose requests come from `from` (a loopback address).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn tcp_from(server: &TestServer, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse().expect("an address"), 0))
        .expect("bind");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .expect("connect")
}

/// A websocket handshake from `from` with `headers`: the upgrade, or the
/// status of its refusal.
async fn handshake_from(
    server: &TestServer,
    from: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, u16> {
    let mut request = format!("{}{path}", server.ws_url())
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().expect("a header name");
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).expect("a header value"));
    }
    let stream = tcp_from(server, from).await;
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("handshake failed without an HTTP answer: {other}"),
    }
}

async fn status_and_retry(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

const FAILURES_3: &[(&str, &str)] = &[
    ("PARKME_RATE_AUTH_FAILURES_PER_HOUR", "3"),
    ("PARKME_RATE_ANON_PER_HOUR", "0"),
    ("PARKME_RATE_USER_PER_HOUR", "0"),
];

#[tokio::test]
async fn failed_authentication_on_gets_is_limited_per_address_with_429_and_retry_after() {
    let server = TestServer::start(FAILURES_3).await;
    let guesser = client_from("127.0.0.2");
    let url = format!("{}/v1/facilities", server.url());
    for attempt in 0..3 {
        let response = guesser
            .get(&url)
            .bearer_auth(format!("guess-{attempt}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let (status, retry, body) = status_and_retry(
        guesser
            .get(&url)
            .bearer_auth("guess-4")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        retry
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
    // Right or wrong, credentials from that address wait now...
    let admin = guesser
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        admin.status(),
        429,
        "a guesser learns nothing from a refusal"
    );
    // ...while it may still read anonymously, and others are not affected.
    assert_eq!(guesser.get(&url).send().await.expect("GET").status(), 200);
    let other = client_from("127.0.0.3");
    let response = other
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let user = server.user_token("honest");
    let response = other
        .get(&url)
        .bearer_auth(&user)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn failed_sensor_handshakes_are_limited_per_address() {
    let server = TestServer::start(FAILURES_3).await;
    let key = put_facility(&server, "f1", vec![spot_zone("A", 2)]).await;
    for attempt in 0..3 {
        let wrong = format!("sk_wrong{attempt}");
        let refused = handshake_from(
            &server,
            "127.0.0.2",
            "/v1/sensors/f1",
            &[("x-sensor-key", wrong.as_str())],
        )
        .await;
        assert_eq!(refused.err(), Some(401), "attempt {attempt}");
    }
    let refused = handshake_from(&server, "127.0.0.2", "/v1/sensors/f1?key=sk_more", &[]).await;
    assert_eq!(refused.err(), Some(429));
    let right = handshake_from(
        &server,
        "127.0.0.2",
        "/v1/sensors/f1",
        &[("x-sensor-key", key.as_str())],
    )
    .await;
    assert_eq!(right.err(), Some(429), "even the right key waits");
    let elsewhere = handshake_from(
        &server,
        "127.0.0.3",
        "/v1/sensors/f1",
        &[("x-sensor-key", key.as_str())],
    )
    .await;
    assert!(elsewhere.is_ok(), "another address is not affected");
    // A missing key is not a guess.
    let missing = handshake_from(&server, "127.0.0.4", "/v1/sensors/f1", &[]).await;
    assert_eq!(missing.err(), Some(401));
}

#[tokio::test]
async fn failed_app_socket_handshakes_are_limited_per_address() {
    let server = TestServer::start(FAILURES_3).await;
    for attempt in 0..3 {
        let path = format!("/v1/stream?token=bad-token-{attempt}");
        assert_eq!(
            handshake_from(&server, "127.0.0.2", &path, &[]).await.err(),
            Some(401)
        );
    }
    let path = "/v1/stream?token=bad-token-4";
    assert_eq!(
        handshake_from(&server, "127.0.0.2", path, &[]).await.err(),
        Some(429)
    );
    let bearer = format!("Bearer {}", server.user_token("u1"));
    let refused = handshake_from(
        &server,
        "127.0.0.2",
        "/v1/stream",
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(refused.err(), Some(429));
    assert!(
        handshake_from(&server, "127.0.0.2", "/v1/stream", &[])
            .await
            .is_ok(),
        "anonymous still reads"
    );
    assert!(
        handshake_from(
            &server,
            "127.0.0.3",
            "/v1/stream",
            &[("authorization", bearer.as_str())]
        )
        .await
        .is_ok()
    );
}

async fn rotate(server: &TestServer, fid: &str, token: Option<&str>) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().post(format!("{}/v1/facilities/{fid}/sensor-key", server.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST sensor-key")
}

#[tokio::test]
async fn a_rotated_sensor_key_is_returned_and_the_old_one_is_revoked_at_once() {
    let mut server = TestServer::start(NO_LIMITS).await;
    let old = put_facility(&server, "f1", vec![spot_zone("A", 3)]).await;
    let mut connected = sensor(&server, "f1", &old, JSON).await;

    let response = rotate(&server, "f1", Some(server.admin_token())).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["facility"], "f1");
    let new = body["sensor_key"].as_str().expect("sensor_key").to_owned();
    assert_ne!(new, old);

    // The socket that came with the old key is closed (policy).
    match next(&mut connected).await {
        Said::Closed(code) => assert_eq!(code, Some(1008)),
        other => panic!("expected a close, got {other:?}"),
    }
    let url = format!("{}/v1/sensors/f1", server.ws_url());
    assert_eq!(
        refused_status(open(&url, &[("x-sensor-key", old.as_str())]).await),
        401
    );
    let mut fresh = sensor(&server, "f1", &new, JSON).await;
    send_sensor(&mut fresh, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut fresh, 1).await.is_empty());

    // The layout PUT answers the current key.
    assert_eq!(
        put_facility(&server, "f1", vec![spot_zone("A", 4)]).await,
        new
    );
    // Only the admin rotates, only known facilities.
    assert_eq!(rotate(&server, "f1", None).await.status(), 401);
    let user = server.user_token("someone");
    assert_eq!(rotate(&server, "f1", Some(&user)).await.status(), 403);
    let unknown = rotate(&server, "nope", Some(server.admin_token())).await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unknown_facility");

    // It survives a crash; the old key stays revoked.
    drop(fresh);
    server.restart().await;
    assert!(open(&url, &[("x-sensor-key", new.as_str())]).await.is_ok());
    assert_eq!(
        refused_status(open(&url, &[("x-sensor-key", old.as_str())]).await),
        401
    );
}

/// The sensor key of generation 0 as the engine always derived it.
fn generation_zero_key(secret: &str, fid: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update((secret.len() as u64).to_le_bytes());
    hasher.update(secret.as_bytes());
    hasher.update(b"parkme-sensor-key:");
    hasher.update(fid.as_bytes());
    format!("sk_{}", hex::encode(&hasher.finalize()[..20]))
}

#[tokio::test]
async fn a_facility_stored_before_key_rotation_keeps_its_sensor_key_after_the_upgrade() {
    let dir = tempfile::tempdir().expect("data dir");
    let old_key = generation_zero_key(JWT_SECRET, "legacy");
    {
        let layout = FacilityLayout::new(
            FacilityId::parse("legacy").expect("id"),
            "Legacy".into(),
            "UTC".into(),
            None,
            vec![ZoneLayout {
                id: parkme_engine::ZoneId::parse("A").expect("id"),
                name: "A".into(),
                shape: ZoneShape::Spots(vec![SpotLayout {
                    id: parkme_engine::SpotId::parse("A-1").expect("id"),
                    kind: SpotKind::Standard,
                }]),
                reservable: 0,
            }],
        )
        .expect("layout");
        // The record as the previous version wrote it: layout, key hash,
        // seq base, created, updated; no key generation.
        let hash: [u8; 32] = Sha256::digest(old_key.as_bytes()).into();
        let bytes = encode_stored(&(layout, hash, 0u64, Millis(1), Millis(2)));
        let storage = EmbeddedStorage::open(dir.path()).expect("embedded storage");
        storage
            .put_facility(&FacilityId::parse("legacy").expect("id"), bytes, None)
            .await
            .expect("old record stored");
    }
    let server = TestServer::start_on(NO_LIMITS, dir).await;
    let mut ws = sensor(&server, "legacy", &old_key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-1", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    drop(ws);
    assert_eq!(
        put_facility(&server, "legacy", vec![spot_zone("A", 2)]).await,
        old_key,
        "the PUT still answers the key the sensors have"
    );
    let response = rotate(&server, "legacy", Some(server.admin_token())).await;
    assert_eq!(response.status(), 200);
    let url = format!("{}/v1/sensors/legacy", server.ws_url());
    assert_eq!(
        refused_status(open(&url, &[("x-sensor-key", old_key.as_str())]).await),
        401
    );
}

#[tokio::test]
async fn a_browser_websocket_from_a_foreign_origin_is_refused_403() {
    let server = TestServer::start(&[("PARKME_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let key = put_facility(&server, "f1", vec![spot_zone("A", 2)]).await;
    let own = format!("http://127.0.0.1:{}", server.port());
    for path in ["/v1/stream".to_owned(), format!("/v1/sensors/f1?key={key}")] {
        let url = format!("{}{path}", server.ws_url());
        let (status, body) = refused_body(open(&url, &[("origin", "https://evil.example")]).await);
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "origin_not_allowed");
        assert_eq!(refused_status(open(&url, &[("origin", "null")]).await), 403);
        assert!(
            open(&url, &[("origin", own.as_str())]).await.is_ok(),
            "{path}: same origin"
        );
        assert!(
            open(&url, &[("origin", "https://app.example.com")])
                .await
                .is_ok(),
            "{path}: listed"
        );
        assert!(
            open(&url, &[]).await.is_ok(),
            "{path}: no Origin, not a browser"
        );
    }
    // Plain HTTP is not concerned (CORS is the browser's business there).
    let response = reqwest::Client::new()
        .get(format!("{}/v1/facilities", server.url()))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
}

/// Three anonymous writes as `client` behind the proxy at 127.0.0.1.
async fn anonymous_writes(server: &TestServer, forwarded_for: &str) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/v1/facilities/f1/bookings", server.url()))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"plate": "AB-1"}))
            .send()
            .await
            .expect("POST");
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limits = [("PARKME_RATE_ANON_PER_HOUR", "2")];
    let untrusting = TestServer::start(&limits).await;
    assert_eq!(
        anonymous_writes(&untrusting, "203.0.113.1").await,
        vec![401, 401, 429]
    );
    // A forged header does not buy a fresh bucket.
    assert_eq!(
        anonymous_writes(&untrusting, "203.0.113.2").await,
        vec![429, 429, 429]
    );

    let behind_proxy = TestServer::start(&[
        ("PARKME_RATE_ANON_PER_HOUR", "2"),
        ("PARKME_TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    assert_eq!(
        anonymous_writes(&behind_proxy, "203.0.113.1").await,
        vec![401, 401, 429]
    );
    assert_eq!(
        anonymous_writes(&behind_proxy, "203.0.113.2").await,
        vec![401, 401, 429],
        "each client behind the proxy has its own bucket"
    );
    // What the client wrote left of the proxy's entry is not believed.
    assert_eq!(
        anonymous_writes(&behind_proxy, "198.51.100.7, 203.0.113.1").await,
        vec![429, 429, 429]
    );
}

#[tokio::test]
async fn a_short_secret_is_warned_about_at_start_without_its_value() {
    let server = TestServer::start(&[
        ("PARKME_ADMIN_TOKEN", "tiny-admin"),
        ("PARKME_JWT_SECRET", "a-jwt-secret-long-enough-for-hs256"),
        ("PARKME_SENSOR_KEY_SECRET", "shortkeys"),
    ])
    .await;
    let said = server.output().join("\n");
    assert!(
        said.contains("PARKME_ADMIN_TOKEN is shorter than 16 bytes"),
        "{said}"
    );
    assert!(
        said.contains("PARKME_SENSOR_KEY_SECRET is shorter than 16 bytes"),
        "{said}"
    );
    assert!(!said.contains("PARKME_JWT_SECRET is shorter"), "{said}");
    assert!(
        !said.contains("tiny-admin") && !said.contains("shortkeys"),
        "never the values: {said}"
    );
}
