//! The CQL backend when the cluster is not there: it answers
//! `Unavailable` (retryable) quickly instead of hanging, and comes back
//! when the cluster does.
//!
//! "The cluster goes away" is a TCP proxy in front of the real server
//! (`PARKME_TEST_CQL`, default `127.0.0.1:9042`) that the test shuts down;
//! the driver addresses the node through the proxy's port. Like the
//! conformance tests, these fail (never skip) without a server.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parkme_engine::{Seq, ZoneId};
use parkme_storage::conformance::unique_facility;
use parkme_storage::cql::{CqlConnectError, CqlStorage, CqlUri};
use parkme_storage::{Storage, StorageError, Write, ZoneKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How fast a dead cluster must be reported.
const QUICKLY: Duration = Duration::from_secs(5);

fn server() -> String {
    std::env::var("PARKME_TEST_CQL")
        .unwrap_or_else(|_| "127.0.0.1:9042".into())
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A keyspace for one test: `parkme_test_<secs>_<pid>_<nanos>`.
fn keyspace() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "parkme_test_{}_{}_{}",
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos()
    )
}

fn target(hosts: &str, keyspace: &str) -> CqlUri {
    let mut target = CqlUri::parse(&format!("scylla://{hosts}/{keyspace}")).expect("valid uri");
    target.options.connect_timeout = Duration::from_secs(1);
    target.options.request_timeout = Duration::from_secs(2);
    target.options.ping_timeout = Duration::from_secs(1);
    target
}

/// Forwards TCP connections from a local port to the CQL server until
/// stopped; stopping closes the listener and every forwarded connection.
struct Proxy {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(listen: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stop = CancellationToken::new();
        let token = stop.clone();
        let upstream = server();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let token = token.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy { addr, stop, task }
    }

    async fn stop(self) -> SocketAddr {
        self.stop.cancel();
        self.task.await.expect("proxy task");
        self.addr
    }
}

fn zone() -> ZoneKey {
    ZoneKey::new(unique_facility("fault"), ZoneId::parse("a").expect("id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_fails_quickly_with_unavailable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let started = Instant::now();
    let outcome = CqlStorage::connect_to(target(&closed.to_string(), &keyspace())).await;
    let elapsed = started.elapsed();
    match outcome {
        Err(e @ StorageError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(elapsed < QUICKLY, "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_uri_is_refused_without_connecting() {
    let outcome = CqlStorage::connect("scylla://127.0.0.1:9042").await;
    match outcome {
        Err(e @ CqlConnectError::Uri(_)) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("keyspace"), "{e}");
        }
        other => panic!("expected a URI error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_commit_fail_with_unavailable_when_the_cluster_goes_away_then_recover() {
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr")).await;
    let storage = CqlStorage::connect_to(target(&proxy.addr.to_string(), &keyspace()))
        .await
        .unwrap_or_else(|e| panic!("the CQL server at {} is required: {e}", server()));
    storage.ping().await.expect("ping through the proxy");
    let z = zone();
    let epoch = storage.claim_zone(&z).await.expect("claim");
    let event = |seq: u64| Write::Event {
        zone: z.clone(),
        epoch,
        seq: Seq(seq),
        bytes: vec![7; 16],
    };
    storage.commit(&[event(1)]).await.expect("commit");

    let addr = proxy.stop().await;
    let started = Instant::now();
    match storage.ping().await {
        Err(e @ StorageError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("ping must fail with Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < QUICKLY,
        "ping took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    match storage.commit(&[event(2)]).await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("commit must fail with Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < QUICKLY,
        "commit took {:?}",
        started.elapsed()
    );

    // The cluster is back on the same address: the driver reconnects.
    let proxy = Proxy::start(addr).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while storage.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no reconnect within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    storage
        .commit(&[event(2)])
        .await
        .expect("commit after recovery");
    let events = storage.read_events(&z, Seq::ZERO).await.expect("read");
    assert_eq!(events.len(), 2);
    // Schema changes wait for agreement: give the drop more than the
    // short request timeout the rest of this test runs with.
    let mut drop = scylla::statement::unprepared::Statement::new(format!(
        "DROP KEYSPACE IF EXISTS {}",
        storage.keyspace()
    ));
    drop.set_request_timeout(Some(Duration::from_secs(60)));
    storage
        .session()
        .query_unpaged(drop, ())
        .await
        .expect("drop the test keyspace");
    proxy.stop().await;
}
