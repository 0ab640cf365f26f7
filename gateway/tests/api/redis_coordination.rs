//! Contract §1: with `PARKME_REDIS_URL` set, rate limits are shared by the
//! nodes, and `/health/` reports Redis. Runs against the real Redis that
//! `scripts/test` starts (`PARKME_TEST_REDIS`), each test under its own key
//! prefix.

use serde_json::json;

use crate::helpers::{TestServer, free_port, redis_prefix};

fn redis_url() -> String {
    std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into())
}

/// The env of a node that shares Redis `redis` under `prefix`, allowing
/// `bookings_per_hour` bookings per user.
fn shared<'a>(
    redis: &'a str,
    prefix: &'a str,
    bookings_per_hour: &'a str,
) -> [(&'static str, &'a str); 3] {
    [
        ("PARKME_REDIS_URL", redis),
        ("PARKME_REDIS_PREFIX", prefix),
        ("PARKME_RATE_BOOKINGS_PER_HOUR", bookings_per_hour),
    ]
}

async fn create_facility(client: &reqwest::Client, node: &TestServer) {
    let layout = json!({"zones": [{"id": "z1", "spots": (0..20).map(|i| json!({"id": format!("s{i}")})).collect::<Vec<_>>()}]});
    let status = client
        .put(format!("{}/v1/facilities/f1", node.url()))
        .bearer_auth(node.admin_token())
        .json(&layout)
        .send()
        .await
        .expect("put")
        .status();
    assert!(status.is_success(), "facility PUT gave {status}");
}

#[tokio::test]
async fn booking_rate_limits_are_shared_between_nodes_through_redis() {
    let redis = redis_url();
    let prefix = redis_prefix("limits");
    let a = TestServer::start(&shared(&redis, &prefix, "3")).await;
    let b = TestServer::start(&shared(&redis, &prefix, "3")).await;
    let client = reqwest::Client::new();
    create_facility(&client, &a).await;
    create_facility(&client, &b).await;
    let token = a.user_token("shared-user");
    let mut statuses = Vec::new();
    for node in [&a, &b, &a, &b] {
        let response = client
            .post(format!("{}/v1/facilities/f1/bookings", node.url()))
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
    let redis = redis_url();
    let prefix = redis_prefix("health");
    let up = TestServer::start(&shared(&redis, &prefix, "100")).await;
    let body: serde_json::Value = reqwest::get(format!("{}/health/", up.url()))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["redis"]["status"], "up");

    let unreachable = format!("redis://127.0.0.1:{}", free_port());
    let prefix = redis_prefix("down");
    let down = TestServer::start_unhealthy(&shared(&unreachable, &prefix, "100")).await;
    let response = reqwest::get(format!("{}/health/", down.url()))
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["checks"]["redis"]["status"], "down");
}
