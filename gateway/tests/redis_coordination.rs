//! Contract §1: with `PARKME_REDIS_URL` set, rate limits are shared by the
//! nodes, and `/health/` reports Redis. Runs against the real Redis that
//! `scripts/test` starts (`PARKME_TEST_REDIS`), each test under its own key
//! prefix.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const ADMIN: &str = "redis-test-admin";
const SECRET: &str = "redis-test-secret";

fn redis_url() -> String {
    std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Node {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(redis: &str, prefix: &str, bookings_per_hour: &str) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_parkme"))
        .arg("serve")
        .env("PARKME_LISTEN", format!("127.0.0.1:{port}"))
        .env("PARKME_DATA_DIR", dir.path())
        .env("PARKME_ADMIN_TOKEN", ADMIN)
        .env("PARKME_JWT_SECRET", SECRET)
        .env("PARKME_REDIS_URL", redis)
        .env("PARKME_REDIS_PREFIX", prefix)
        .env("PARKME_RATE_BOOKINGS_PER_HOUR", bookings_per_hour)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("parkme starts");
    let node = Node {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client
            .get(format!("{}/health/", node.url))
            .send()
            .await
            .is_ok()
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("parkme did not start on {}", node.url);
}

fn user_token(sub: &str) -> String {
    encode(
        &Header::default(),
        &json!({ "sub": sub, "exp": parkme_gateway::auth::unix_now() + 3600 }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("parkme-test:{tag}:{nanos}:{}:", std::process::id())
}

async fn create_facility(client: &reqwest::Client, node: &Node) {
    let layout = json!({"zones": [{"id": "z1", "spots": (0..20).map(|i| json!({"id": format!("s{i}")})).collect::<Vec<_>>()}]});
    let status = client
        .put(format!("{}/v1/facilities/f1", node.url))
        .bearer_auth(ADMIN)
        .json(&layout)
        .send()
        .await
        .expect("put")
        .status();
    assert!(status.is_success(), "facility PUT gave {status}");
}

#[tokio::test]
async fn booking_rate_limits_are_shared_between_nodes_through_redis() {
    let prefix = unique_prefix("limits");
    let a = start(&redis_url(), &prefix, "3").await;
    let b = start(&redis_url(), &prefix, "3").await;
    let client = reqwest::Client::new();
    create_facility(&client, &a).await;
    create_facility(&client, &b).await;
    let token = user_token("shared-user");
    let mut statuses = Vec::new();
    for node in [&a, &b, &a, &b] {
        let response = client
            .post(format!("{}/v1/facilities/f1/bookings", node.url))
            .bearer_auth(&token)
            .json(&json!({"plate": "AB-1"}))
            .send()
            .await
            .expect("post");
        statuses.push((
            response.status().as_u16(),
            response.headers().contains_key("retry-after"),
        ));
    }
    assert_eq!(
        statuses,
        vec![(201, false), (201, false), (201, false), (429, true)],
        "three bookings per hour in total, whichever node takes them"
    );
}

#[tokio::test]
async fn health_reports_redis_and_is_unhealthy_when_redis_is_down() {
    let up = start(&redis_url(), &unique_prefix("health"), "100").await;
    let body: serde_json::Value = reqwest::get(format!("{}/health/", up.url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["redis"]["status"], "up");

    let unreachable = format!("redis://127.0.0.1:{}", free_port());
    let down = start(&unreachable, &unique_prefix("down"), "100").await;
    let response = reqwest::get(format!("{}/health/", down.url))
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["checks"]["redis"]["status"], "down");
}
