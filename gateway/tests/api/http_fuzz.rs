//! Contract §3, "never a 500 for bad input; never a panic": a few hundred
//! random and hostile bodies, paths and headers against a real server,
//! which must answer each with a non-5xx (errors in the contract's shape)
//! and stay healthy.

use crate::helpers::TestServer;
use crate::helpers::http::{Api, Body, NO_LIMITS, layout, spot_zone};
use reqwest::Method;
use serde_json::{Value, json};

/// A tiny deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn garbage_body(rng: &mut Rng, i: usize) -> Vec<u8> {
    let nasty_values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!("ünïcødé 🚗"),
        json!("\u{0000}"),
        json!([]),
        json!({}),
        json!("A".repeat(300)),
    ];
    let pick = |rng: &mut Rng| nasty_values[rng.below(nasty_values.len())].clone();
    match i % 8 {
        0 => {
            let n = rng.below(512);
            rng.bytes(n)
        }
        1 => {
            let depth = 64 + rng.below(4000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        2 => {
            let depth = 64 + rng.below(4000);
            let mut s = "{\"a\":".repeat(depth);
            s.push('1');
            s.push_str(&"}".repeat(depth));
            s.into_bytes()
        }
        3 => format!(
            "{{\"plate\":\"AB1\",\"hold_seconds\":{}{}}}",
            "9".repeat(1 + rng.below(400)),
            if rng.below(2) == 0 { "e999" } else { "" }
        )
        .into_bytes(),
        4 => {
            let mut body = serde_json::Map::new();
            for key in ["plate", "zone", "kind", "spot", "hold_seconds"] {
                if rng.below(2) == 0 {
                    body.insert(key.into(), pick(rng));
                }
            }
            Value::Object(body).to_string().into_bytes()
        }
        5 => {
            let mut layout = json!({"zones": [{"id": pick(rng), "capacity": pick(rng)},
                {"id": "Z", "spots": [{"id": pick(rng), "kind": pick(rng)}]}]});
            if rng.below(2) == 0 {
                layout["location"] = json!({"lat": pick(rng), "lon": pick(rng)});
            }
            layout.to_string().into_bytes()
        }
        6 => json!({"out_of_service": pick(rng)})
            .to_string()
            .into_bytes(),
        _ => {
            let mut text = json!({"plate": "AB1", "zone": "A"})
                .to_string()
                .into_bytes();
            let at = rng.below(text.len());
            text.truncate(at);
            text
        }
    }
}

fn garbage_path(rng: &mut Rng) -> String {
    let segments = [
        "v1",
        "facilities",
        "f1",
        "zones",
        "A",
        "spots",
        "bookings",
        "service",
        "health",
        "metrics",
        "%FF%FE",
        "%C0%AF",
        "%ED%A0%80",
        "%00",
        "%0D%0A",
        "ü",
        "%F0%9F%9A%97",
        "..",
        ".",
        "",
        "A-001",
        "%2F",
        "stream",
        "sensors",
    ];
    let routes = [
        "/v1/facilities/{}",
        "/v1/facilities/{}/zones/{}/spots",
        "/v1/facilities/{}/spots/{}/service",
        "/v1/facilities/{}/bookings",
        "/v1/bookings/{}",
    ];
    let mut path = String::new();
    if rng.below(2) == 0 {
        // A real route with odd ids in its slots.
        let route = routes[rng.below(routes.len())];
        for (i, part) in route.split("{}").enumerate() {
            if i > 0 {
                path.push_str(segments[rng.below(segments.len())]);
            }
            path.push_str(part);
        }
    } else {
        for _ in 0..1 + rng.below(6) {
            path.push('/');
            path.push_str(segments[rng.below(segments.len())]);
        }
    }
    if rng.below(4) == 0 {
        path.push_str("?key=%ZZ&token=&since=-1");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_and_paths_never_give_a_500_or_kill_the_process() {
    let server = TestServer::start(NO_LIMITS).await;
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
    let user = server.user_token("fuzz");
    let admin = server.admin_token().to_owned();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let targets = [
        (
            Method::POST,
            "/v1/facilities/f1/bookings",
            Some(user.as_str()),
        ),
        (Method::PUT, "/v1/facilities/fz", Some(admin.as_str())),
        (
            Method::PUT,
            "/v1/facilities/f1/spots/A-001/service",
            Some(admin.as_str()),
        ),
        (Method::POST, "/v1/facilities/f1/bookings", None),
    ];
    for i in 0..240 {
        let (method, path, token) = &targets[i % targets.len()];
        let body = garbage_body(&mut rng, i);
        let reply = api
            .send(method.clone(), path, *token, Body::Raw(body.clone()), &[])
            .await;
        assert!(
            reply.status.as_u16() < 500,
            "{method} {path} with {:?}: {reply:?}",
            String::from_utf8_lossy(&body)
        );
        if !reply.status.is_success() {
            reply.assert_error_shape();
        }
    }
    let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
    for i in 0..160 {
        let path = garbage_path(&mut rng);
        let method = methods[i % methods.len()].clone();
        let token = [None, Some(user.as_str()), Some(admin.as_str())][i % 3];
        let reply = api
            .send(method.clone(), &path, token, Body::Raw(b"{}".to_vec()), &[])
            .await;
        assert!(reply.status.as_u16() < 500, "{method} {path}: {reply:?}");
        let is_page = path == "/" || path.starts_with("/metrics");
        if !reply.status.is_success() && !is_page {
            reply.assert_error_shape();
        }
    }
    // Weird headers too.
    for (name, value) in [
        ("Idempotency-Key", "x".repeat(300)),
        ("Idempotency-Key", " ".to_owned()),
        ("content-type", "text/plain".to_owned()),
        ("authorization", format!("Bearer {}", "A".repeat(8000))),
    ] {
        let reply = api
            .send(
                Method::POST,
                "/v1/facilities/f1/bookings",
                Some(&user),
                Body::Json(json!({"plate": "AB1"})),
                &[(name, value.as_str())],
            )
            .await;
        assert!(reply.status.as_u16() < 500, "{name}: {reply:?}");
    }
    // Still alive, still healthy, no panic caught on the way.
    api.get("/health/", None).await.assert_status(200);
    let metrics = api.get("/metrics", None).await;
    assert!(
        !metrics
            .text
            .lines()
            .any(|l| l.starts_with("parkme_handler_panics_total") && !l.ends_with(" 0")),
        "a handler panicked"
    );
}
