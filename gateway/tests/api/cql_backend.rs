//! Issue 4 through the real binary: `PARKME_STORAGE=scylla://…` against the
//! real CQL server that `scripts/test` starts (`PARKME_TEST_CQL`), each test
//! in its own keyspace.

use std::time::Duration;

use serde_json::json;

use crate::helpers::http::{Api, layout, spot_zone};
use crate::helpers::relay::Relay;
use crate::helpers::{TestServer, cql_server, poll_until, test_keyspace};

fn keyspace(tag: &str) -> String {
    test_keyspace(tag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bookings_survive_kill_9_and_a_new_node_with_an_empty_local_dir_finds_them() {
    let storage = format!("scylla://{}/{}", cql_server(), keyspace("kill"));
    let mut first = TestServer::start(&[
        ("PARKME_STORAGE", storage.as_str()),
        ("PARKME_RATE_BOOKINGS_PER_HOUR", "0"),
    ])
    .await;
    let api = Api::new(&first);
    api.put_facility(
        first.admin_token(),
        "f1",
        layout(vec![spot_zone("z1", "s", 40, "standard")]),
    )
    .await;
    let token = first.user_token("cql-driver");
    let mut tasks = Vec::new();
    for i in 0..30 {
        let api = Api::new(&first);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            api.book("f1", &token, json!({"plate": format!("CQL-{i}")}))
                .await
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        let reply = task.await.expect("task");
        let booking = reply.assert_status(201);
        acknowledged.push(booking["id"].as_str().expect("id").to_owned());
    }
    first.kill9();
    drop(first);

    // A new process, a new (empty) data dir, the same cluster.
    let second = TestServer::start(&[("PARKME_STORAGE", storage.as_str())]).await;
    let api = Api::new(&second);
    for id in &acknowledged {
        let reply = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
        let booking = reply.assert_status(200);
        assert_eq!(booking["status"], "CONFIRMED");
    }
    let reserved = api
        .spot_states("f1", "z1")
        .await
        .into_iter()
        .filter(|(_, state)| state == "RESERVED")
        .count();
    assert_eq!(reserved, acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cql_outage_answers_503_and_the_engine_recovers_by_itself() {
    let mut relay = Relay::start(&cql_server()).await;
    let storage = format!("scylla://127.0.0.1:{}/{}", relay.port, keyspace("outage"));
    let server = TestServer::start(&[
        ("PARKME_STORAGE", storage.as_str()),
        ("PARKME_RATE_BOOKINGS_PER_HOUR", "0"),
    ])
    .await;
    let api = Api::new(&server);
    api.put_facility(
        server.admin_token(),
        "f1",
        layout(vec![spot_zone("z1", "s", 20, "standard")]),
    )
    .await;
    let token = server.user_token("outage-driver");
    api.book("f1", &token, json!({"plate": "UP-1"}))
        .await
        .assert_status(201);

    relay.cut();
    poll_until(
        "health to report the outage",
        Duration::from_secs(30),
        || async { api.get("/health/", None).await.status == 503 },
    )
    .await;
    let refused = api.book("f1", &token, json!({"plate": "DOWN-1"})).await;
    refused.assert_error(503, "storage_unavailable");

    relay.listen().await;
    poll_until("health to recover", Duration::from_secs(60), || async {
        api.get("/health/", None).await.status == 200
    })
    .await;
    poll_until(
        "bookings to be accepted again",
        Duration::from_secs(60),
        || async {
            api.book("f1", &token, json!({"plate": "BACK-1"}))
                .await
                .status
                == 201
        },
    )
    .await;
}
