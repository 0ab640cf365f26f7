//! Issue 4 through the real binary: `PARKME_STORAGE=scylla://…` against the
//! real CQL server that `scripts/test` starts (`PARKME_TEST_CQL`), each test
//! in its own keyspace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::http::{Api, layout, spot_zone};
use crate::helpers::{TestServer, cql_server, poll_until, unique_name};

fn keyspace(tag: &str) -> String {
    format!("pm_gw_{}", unique_name(tag))
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

/// A TCP relay in front of the CQL server that the test can cut and restore.
struct Relay {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let mut relay = Relay {
            port: 0,
            target: target.to_owned(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.listen().await;
        relay
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(format!("127.0.0.1:{}", self.port).parse().expect("addr"))
            .expect("bind relay");
        let listener = socket.listen(64).expect("listen");
        self.port = listener.local_addr().expect("addr").port();
        let target = self.target.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("lock").push(pipe);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// Drops the listener and every relayed connection.
    fn cut(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }
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
