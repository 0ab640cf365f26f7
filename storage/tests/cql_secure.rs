//! The CQL backend against a real server that requires a login and TLS:
//! the second Cassandra `scripts/test` starts (`PARKME_CQL_SECURE=1
//! scripts/cql-server start`, see that script), at `PARKME_TEST_CQL_SECURE`
//! (default `127.0.0.1:9142`), its CA at `PARKME_TEST_CQL_SECURE_CA`, an
//! unrelated CA at `PARKME_TEST_CQL_OTHER_CA`, and the role the script
//! creates (`PARKME_TEST_CQL_SECURE_USER` / `_PASSWORD`; defaults: the
//! script's). Each test works in a keyspace of its own, dropped at the
//! end. Without that server these tests fail, saying so; they never skip.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parkme_engine::BookingId;
use parkme_storage::cql::{CqlCredentials, CqlStorage, CqlTls, CqlUri, Password};
use parkme_storage::{Storage, StorageError, Write};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn secure_home() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/parkme-cql-secure/tls")
}

fn server() -> String {
    env_or("PARKME_TEST_CQL_SECURE", "127.0.0.1:9142")
}

fn ca() -> PathBuf {
    std::env::var("PARKME_TEST_CQL_SECURE_CA")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| secure_home().join("ca.pem"))
}

fn other_ca() -> PathBuf {
    std::env::var("PARKME_TEST_CQL_OTHER_CA")
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| secure_home().join("other-ca.pem"))
}

fn user() -> String {
    env_or("PARKME_TEST_CQL_SECURE_USER", "parkme")
}

fn password() -> String {
    env_or("PARKME_TEST_CQL_SECURE_PASSWORD", "s3cret/p@ss:w0rd")
}

/// Fails the test, clearly, when the secure server or its CA is missing.
fn require_server() {
    let addr = server();
    let reachable = addr
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable && ca().is_file() && other_ca().is_file(),
        "the CQL server with logins and TLS is required at {addr} with its CA at {} \
         (reachable: {reachable}); start it with: PARKME_CQL_SECURE=1 \
         PARKME_CQL_HOME=~/.cache/parkme-cql-secure PARKME_CQL_PORT=9142 \
         PARKME_CQL_STORAGE_PORT=7100 PARKME_CQL_JMX_PORT=7299 scripts/cql-server start \
         (scripts/test does)",
        ca().display()
    );
}

fn keyspace() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "parkme_test_{}_s{}_{}",
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos()
    )
}

/// The secure server, logged in as the test role, TLS against its CA.
fn target(keyspace: &str) -> CqlUri {
    let mut target =
        CqlUri::parse(&format!("scylla://{}/{keyspace}", server())).expect("valid uri");
    target.security.credentials = Some(CqlCredentials {
        username: user(),
        password: Password::new(password()),
    });
    target.security.tls = Some(CqlTls {
        ca_file: Some(ca()),
        server_name: None,
    });
    target.options.connect_timeout = Duration::from_secs(5);
    target
}

async fn drop_keyspace(storage: &CqlStorage) {
    let mut drop = scylla::statement::Statement::new(format!(
        "DROP KEYSPACE IF EXISTS {}",
        storage.keyspace()
    ));
    drop.set_request_timeout(Some(Duration::from_secs(60)));
    if let Err(e) = storage.session().query_unpaged(drop, ()).await {
        eprintln!("could not drop {}: {e}", storage.keyspace());
    }
}

/// Connecting must fail: the error, for the test to check.
async fn refused(target: CqlUri) -> StorageError {
    match CqlStorage::connect_to(target).await {
        Ok(storage) => {
            drop_keyspace(&storage).await;
            panic!("the connection should have been refused");
        }
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_over_tls_verified_against_the_ca_creates_the_schema_and_commits() {
    require_server();
    let storage = CqlStorage::connect_to(target(&keyspace()))
        .await
        .unwrap_or_else(|e| panic!("connecting to the secure server {}: {e}", server()));
    let id = BookingId::parse("b-secure-1").expect("id");
    storage
        .commit(&[Write::Booking {
            id: id.clone(),
            bytes: b"CONFIRMED".to_vec(),
            forget_after: None,
        }])
        .await
        .expect("commit over TLS");
    assert_eq!(
        storage.booking(&id).await.expect("read back"),
        Some(b"CONFIRMED".to_vec())
    );
    storage.ping().await.expect("ping");
    drop_keyspace(&storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cql_password_is_refused_as_an_authentication_failure_without_the_password() {
    require_server();
    let wrong = "Wr0ng-Pa55word-zq";
    let mut target = target(&keyspace());
    target.security.credentials = Some(CqlCredentials {
        username: user(),
        password: Password::new(wrong),
    });
    let e = refused(target).await;
    let text = e.to_string();
    assert!(
        matches!(e, StorageError::Refused(_)) && !e.is_retryable(),
        "{e:?}"
    );
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        !text.contains(wrong) && !format!("{e:?}").contains(wrong),
        "{text}"
    );
    assert!(!text.contains(&password()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_against_a_server_that_requires_one_is_refused_naming_the_settings() {
    require_server();
    let mut target = target(&keyspace());
    target.security.credentials = None;
    let text = refused(target).await.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("PARKME_CQL_USERNAME"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cql_server_certificate_from_another_ca_is_refused() {
    require_server();
    let mut target = target(&keyspace());
    target.security.tls = Some(CqlTls {
        ca_file: Some(other_ca()),
        server_name: None,
    });
    let e = refused(target).await;
    let text = e.to_string();
    assert!(matches!(e, StorageError::Refused(_)), "{e:?}");
    assert!(text.contains("TLS could not be established"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains(&password()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_tls_server_name_is_checked_instead_of_the_node_address() {
    require_server();
    let named = |name: &str| {
        let mut target = target(&keyspace());
        target.security.tls = Some(CqlTls {
            ca_file: Some(ca()),
            server_name: Some(name.to_owned()),
        });
        target
    };
    // The node's certificate names cql.parkme.test (scripts/cql-server).
    let storage = CqlStorage::connect_to(named("cql.parkme.test"))
        .await
        .unwrap_or_else(|e| panic!("the certificate names cql.parkme.test: {e}"));
    storage.ping().await.expect("ping");
    drop_keyspace(&storage).await;
    let text = refused(named("db.example.org")).await.to_string();
    assert!(text.contains("TLS could not be established"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_against_a_server_that_requires_tls_fails_with_a_hint_to_turn_it_on() {
    require_server();
    let mut target = target(&keyspace());
    target.security.tls = None;
    let text = refused(target).await.to_string();
    assert!(text.contains("PARKME_CQL_TLS=true"), "{text}");
    assert!(!text.contains(&password()), "{text}");
}
