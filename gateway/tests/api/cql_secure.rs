//! Hardening item 11 through the real binary: the CQL backend logs in and
//! speaks TLS to the second Cassandra `scripts/test` starts (logins
//! required, TLS required, [`secure_cql`]); a wrong password or a server
//! certificate from another CA stops the start with an error naming which;
//! no password ever reaches the output. Each test has its own keyspace,
//! dropped at the end.

use std::time::Duration;

use parkme_storage::cql::{CqlCredentials, CqlStorage, CqlTls, CqlUri, Password};
use serde_json::json;

use crate::helpers::http::{Api, NO_LIMITS, layout, spot_zone};
use crate::helpers::{
    SecureCql, TestServer, percent_encode, refused_start, secure_cql, test_keyspace,
};

/// Drops a test keyspace on the secure server (best effort).
async fn drop_keyspace(secure: &SecureCql, keyspace: &str) {
    let mut target =
        CqlUri::parse(&format!("scylla://{}/{keyspace}", secure.addr)).expect("valid uri");
    target.security.credentials = Some(CqlCredentials {
        username: secure.user.clone(),
        password: Password::new(secure.password.clone()),
    });
    target.security.tls = Some(CqlTls {
        ca_file: Some(secure.ca.clone()),
        server_name: None,
    });
    match CqlStorage::connect_to(target).await {
        Ok(storage) => {
            let statement = format!("DROP KEYSPACE IF EXISTS {keyspace}");
            if let Err(e) = storage.session().query_unpaged(statement, ()).await {
                eprintln!("could not drop {keyspace}: {e}");
            }
        }
        Err(e) => eprintln!("could not drop {keyspace}: {e}"),
    }
}

/// No form of `password` (as given, percent-encoded) in `output`, and no
/// panic.
fn assert_no_secret(output: &str, password: &str) {
    assert!(!output.contains(password), "the password is in:\n{output}");
    assert!(
        !output.contains(&percent_encode(password)),
        "the encoded password is in:\n{output}"
    );
    assert!(!output.contains("panicked"), "a panic:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cql_backend_connects_with_a_password_over_tls_and_serves() {
    let secure = secure_cql();
    let keyspace = test_keyspace("secure");
    // First process: the login in the URI (percent-encoded), TLS and CA as
    // URI options.
    let in_uri = format!(
        "scylla://{}:{}@{}/{keyspace}?tls=true&ca={}",
        percent_encode(&secure.user),
        percent_encode(&secure.password),
        secure.addr,
        percent_encode(&secure.ca.to_string_lossy()),
    );
    let mut env = NO_LIMITS.to_vec();
    env.extend([("PARKME_STORAGE", in_uri.as_str()), ("RUST_LOG", "debug")]);
    let mut first = TestServer::start(&env).await;
    let api = Api::new(&first);
    api.put_facility(
        first.admin_token(),
        "f1",
        layout(vec![spot_zone("z1", "s", 4, "standard")]),
    )
    .await;
    let token = first.user_token("secure-driver");
    let booked = api.book("f1", &token, json!({"plate": "TLS-1"})).await;
    let id = booked.assert_status(201)["id"]
        .as_str()
        .expect("booking id")
        .to_owned();
    first.kill9();
    let first_output = first.output().join("\n");
    drop(first);

    // Restart, the login and TLS now from PARKME_CQL_* over a bare URI.
    let bare = format!("scylla://{}/{keyspace}", secure.addr);
    let ca = secure.ca.to_string_lossy().into_owned();
    let mut env = NO_LIMITS.to_vec();
    env.extend([
        ("PARKME_STORAGE", bare.as_str()),
        ("PARKME_CQL_USERNAME", secure.user.as_str()),
        ("PARKME_CQL_PASSWORD", secure.password.as_str()),
        ("PARKME_CQL_TLS", "true"),
        ("PARKME_CQL_CA_FILE", ca.as_str()),
        ("RUST_LOG", "debug"),
    ]);
    let second = TestServer::start(&env).await;
    let api = Api::new(&second);
    let reply = api.get(&format!("/v1/bookings/{id}"), Some(&token)).await;
    assert_eq!(reply.assert_status(200)["status"], "CONFIRMED");
    let reserved = api
        .spot_states("f1", "z1")
        .await
        .into_iter()
        .filter(|(_, state)| state == "RESERVED")
        .count();
    assert_eq!(reserved, 1);
    let output = format!("{first_output}\n{}", second.output().join("\n"));
    assert!(
        output.contains("connected to the CQL cluster"),
        "no connection logged:\n{output}"
    );
    assert_no_secret(&output, &secure.password);
    drop(second);
    drop_keyspace(&secure, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cql_password_fails_start_with_a_clear_error_and_no_secret_in_it() {
    let secure = secure_cql();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = secure.ca.to_string_lossy().into_owned();
    let wrong = "Wr0ng/Pa55@word";
    // In the environment.
    let bare = format!("scylla://{}/{}", secure.addr, test_keyspace("badpw"));
    let output = refused_start(
        dir.path(),
        &[
            ("PARKME_STORAGE", bare.as_str()),
            ("PARKME_CQL_USERNAME", secure.user.as_str()),
            ("PARKME_CQL_PASSWORD", wrong),
            ("PARKME_CQL_TLS", "1"),
            ("PARKME_CQL_CA_FILE", ca.as_str()),
            ("RUST_LOG", "debug"),
        ],
    );
    assert!(
        output.contains("CQL authentication failed"),
        "the error must name the login:\n{output}"
    );
    assert_no_secret(&output, wrong);
    // In the URI (percent-encoded): the same, and the URI is shown redacted.
    let in_uri = format!(
        "scylla://{}:{}@{}/{}?tls=true&ca={ca}",
        secure.user,
        percent_encode(wrong),
        secure.addr,
        test_keyspace("badpw")
    );
    let output = refused_start(
        dir.path(),
        &[("PARKME_STORAGE", in_uri.as_str()), ("RUST_LOG", "debug")],
    );
    assert!(output.contains("CQL authentication failed"), "{output}");
    assert!(output.contains("scylla://***@"), "{output}");
    assert_no_secret(&output, wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cql_server_certificate_from_another_ca_is_refused() {
    let secure = secure_cql();
    let dir = tempfile::tempdir().expect("temp dir");
    let bare = format!("scylla://{}/{}", secure.addr, test_keyspace("otherca"));
    let other = secure.other_ca.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let output = refused_start(
        dir.path(),
        &[
            ("PARKME_STORAGE", bare.as_str()),
            ("PARKME_CQL_USERNAME", secure.user.as_str()),
            ("PARKME_CQL_PASSWORD", secure.password.as_str()),
            ("PARKME_CQL_TLS", "true"),
            ("PARKME_CQL_CA_FILE", other.as_str()),
        ],
    );
    assert!(
        output.contains("CQL TLS could not be established"),
        "the error must name TLS:\n{output}"
    );
    assert!(output.contains("certificate"), "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused after {:?}",
        started.elapsed()
    );
    assert_no_secret(&output, &secure.password);
}
