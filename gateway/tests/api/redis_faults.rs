//! Redis trouble and Redis security, against the real binary and real
//! Redis servers this test starts itself (Debian's `redis-server`, on free
//! ports, so they can be paused, password-protected or put behind TLS
//! without touching the shared one): a hung or paused Redis never makes a
//! request wait longer than its own timeout, nor behind another request;
//! the limits fall back to the node's own and `/health/` says Redis is
//! down, until it is back; AUTH and `rediss://` work; a bad URL stops the
//! start with a clear message that never shows the password.
//!
//! Times are measured and printed; the only bound asserted is a generous
//! one on "not one behind the other".

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{self, TestServer, free_port, redis_prefix};
use serde_json::{Value, json};

/// The request timeout the servers under test get.
const TIMEOUT_MS: u64 = 500;
/// Concurrent signed-in requests per wave.
const WAVE: usize = 12;

/// A `redis-server` of this test's own, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` with `args` (after the defaults: no
    /// persistence, loopback only) and waits until `ready` answers.
    fn start(port: u16, args: &[&str], url: &str) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (Debian's redis-server package)");
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {url}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn plain(args: &[&str]) -> RedisServer {
        let port = free_port();
        let port_arg = port.to_string();
        let mut all = vec!["--port", port_arg.as_str()];
        all.extend_from_slice(args);
        Self::start(port, &all, &format!("redis://127.0.0.1:{port}"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_facility(server: &TestServer) {
    let layout = json!({"zones": [{"id": "z1", "spots": (0..40).map(|i| json!({"id": format!("s{i}")})).collect::<Vec<_>>()}]});
    let status = reqwest::Client::new()
        .put(format!("{}/v1/facilities/f1", server.url()))
        .bearer_auth(server.admin_token())
        .json(&layout)
        .send()
        .await
        .expect("PUT")
        .status();
    assert!(status.is_success(), "facility PUT: {status}");
}

/// `WAVE` concurrent signed-in GETs (each its own user): every answer
/// status and the slowest time.
async fn signed_in_wave(server: &TestServer, tag: &str) -> (Vec<u16>, Duration, Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let requests = (0..WAVE).map(|i| {
        let client = client.clone();
        let url = format!("{}/v1/facilities/f1", server.url());
        let token = server.user_token(&format!("{tag}-{i}"));
        async move {
            let started = Instant::now();
            let status = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (status, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let statuses = answers.iter().map(|(s, _)| *s).collect();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    let fastest = answers.iter().map(|(_, t)| *t).min().unwrap_or_default();
    (statuses, fastest, slowest)
}

async fn health(server: &TestServer) -> (u16, Value) {
    let response = reqwest::get(format!("{}/health/", server.url()))
        .await
        .expect("GET /health/");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `/health/` until Redis shows `want` ("up"/"down"), at most 10 s.
async fn until_redis(server: &TestServer, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (_, body) = health(server).await;
        if body["checks"]["redis"]["status"] == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis never showed {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn book(server: &TestServer, user: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/facilities/f1/bookings", server.url()))
        .bearer_auth(server.user_token(user))
        .json(&json!({"plate": "AB-1", "hold_seconds": 60}))
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

fn redis_count(url: &str, key: &str) -> Option<i64> {
    let client = redis::Client::open(url).ok()?;
    let mut connection = client.get_connection().ok()?;
    redis::cmd("GET").arg(key).query(&mut connection).ok()
}

fn no_limits_but_bookings(redis_url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PARKME_REDIS_URL", redis_url.to_owned()),
        ("PARKME_REDIS_PREFIX", prefix.to_owned()),
        ("PARKME_REDIS_TIMEOUT_MS", TIMEOUT_MS.to_string()),
        ("PARKME_RATE_BOOKINGS_PER_HOUR", "2".to_owned()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_hung_redis_never_makes_signed_in_requests_wait_behind_each_other() {
    // Accepts every connection and never says a word.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = hung.local_addr().expect("addr").port();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            held.push(stream);
        }
    });
    let url = format!("redis://127.0.0.1:{port}");
    let env = no_limits_but_bookings(&url, &redis_prefix("hung"));
    let server = TestServer::start_unhealthy(&env_refs(&env)).await;
    create_facility(&server).await;

    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    for wave in 0..2 {
        let (statuses, fastest, slowest) = signed_in_wave(&server, &format!("hung{wave}")).await;
        println!(
            "hung redis, wave {wave}: {WAVE} concurrent signed-in GETs took {fastest:?} to {slowest:?} (timeout {TIMEOUT_MS} ms)"
        );
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert!(
            slowest < Duration::from_millis(TIMEOUT_MS * WAVE as u64 / 2),
            "requests queued behind each other: slowest {slowest:?}"
        );
    }
    // The node's own limiter stands in: two bookings an hour, then 429.
    assert_eq!(book(&server, "hung-booker").await, 201);
    assert_eq!(book(&server, "hung-booker").await, 201);
    assert_eq!(book(&server, "hung-booker").await, 429);
    accepting.abort();
}

#[tokio::test]
async fn a_paused_redis_is_reported_down_answers_fall_back_and_it_is_used_again_once_resumed() {
    let redis = RedisServer::plain(&[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let prefix = redis_prefix("paused");
    let env = no_limits_but_bookings(&url, &prefix);
    let server = TestServer::start(&env_refs(&env)).await;
    create_facility(&server).await;
    let (statuses, _, slowest) = signed_in_wave(&server, "before").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    println!("redis up: {WAVE} concurrent signed-in GETs, slowest {slowest:?}");
    assert_eq!(
        redis_count(&url, &format!("{prefix}rl:user:before-0")),
        Some(1),
        "counted in redis while it is up"
    );

    redis.signal("STOP");
    for wave in 0..2 {
        let (statuses, fastest, slowest) = signed_in_wave(&server, &format!("paused{wave}")).await;
        println!(
            "paused redis, wave {wave}: {WAVE} concurrent signed-in GETs took {fastest:?} to {slowest:?} (timeout {TIMEOUT_MS} ms)"
        );
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert!(
            slowest < Duration::from_millis(TIMEOUT_MS * WAVE as u64 / 2),
            "requests queued behind each other: slowest {slowest:?}"
        );
    }
    let (status, body) = health(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(book(&server, "paused-booker").await, 201);
    assert_eq!(book(&server, "paused-booker").await, 201);
    assert_eq!(
        book(&server, "paused-booker").await,
        429,
        "the local limit stands in"
    );

    redis.signal("CONT");
    let back = until_redis(&server, "up").await;
    println!("redis resumed: reported up again after {back:?}");
    let (status, _) = health(&server).await;
    assert_eq!(status, 200);
    let (statuses, _, _) = signed_in_wave(&server, "after").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        redis_count(&url, &format!("{prefix}rl:user:after-0")),
        Some(1),
        "counted in redis again"
    );
}

#[tokio::test]
async fn redis_auth_from_the_url_is_used_and_a_wrong_password_is_reported_down() {
    let redis = RedisServer::plain(&["--requirepass", "s3cret-redis-pass"]);
    let prefix = redis_prefix("auth");
    for url in [
        format!("redis://:s3cret-redis-pass@127.0.0.1:{}", redis.port),
        format!("redis://default:s3cret-redis-pass@127.0.0.1:{}", redis.port),
    ] {
        let env = no_limits_but_bookings(&url, &prefix);
        let server = TestServer::start(&env_refs(&env)).await;
        let (status, body) = health(&server).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["checks"]["redis"]["status"], "up");
        create_facility(&server).await;
        assert_eq!(book(&server, "auth-booker").await, 201);
    }
    // Both nodes counted the one user's bookings in the same Redis.
    assert_eq!(
        redis_count(
            &format!("redis://:s3cret-redis-pass@127.0.0.1:{}", redis.port),
            &format!("{prefix}rl:bookings:auth-booker")
        ),
        Some(2)
    );

    let wrong = format!("redis://:not-the-password@127.0.0.1:{}", redis.port);
    let env = no_limits_but_bookings(&wrong, &prefix);
    let server = TestServer::start_unhealthy(&env_refs(&env)).await;
    until_redis(&server, "down").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let said = loop {
        let said = server.output().join("\n");
        if said.contains("redis unreachable") || Instant::now() > deadline {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        said.to_ascii_lowercase().contains("pass"),
        "the log says why (a password problem): {said}"
    );
    assert!(
        !said.contains("not-the-password"),
        "the password is never logged"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=parkme-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test]
async fn rediss_with_the_servers_ca_is_used_and_an_untrusted_certificate_is_reported_down() {
    let certs = tempfile::tempdir().expect("temp dir");
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let port = free_port();
    let port_arg = port.to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _redis = RedisServer::start(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_arg,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
        &format!("rediss://127.0.0.1:{port}"),
    );
    let url = format!("rediss://127.0.0.1:{port}");
    let prefix = redis_prefix("tls");
    let mut env = no_limits_but_bookings(&url, &prefix);
    env.push(("PARKME_REDIS_CA_FILE", ca.clone()));
    let server = TestServer::start(&env_refs(&env)).await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "up");
    create_facility(&server).await;
    assert_eq!(book(&server, "tls-booker").await, 201);
    drop(server);

    // Without the CA, the certificate is not trusted: down, and said why.
    let env = no_limits_but_bookings(&url, &prefix);
    let server = TestServer::start_unhealthy(&env_refs(&env)).await;
    until_redis(&server, "down").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let said = loop {
        let said = server.output().join("\n");
        if said.contains("redis unreachable") || Instant::now() > deadline {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        said.to_ascii_lowercase().contains("certificate"),
        "the log says why: {said}"
    );
}

/// Runs `parkme serve` on a fresh data dir expecting it to refuse to
/// start; returns what it said.
fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    helpers::refused_start(dir.path(), env)
}

#[test]
fn a_bad_redis_url_or_ca_stops_the_start_with_a_clear_message_without_the_password() {
    let said = refused_start(&[(
        "PARKME_REDIS_URL",
        "http://:hunter2-password@127.0.0.1:6379",
    )]);
    assert!(said.contains("PARKME_REDIS_URL"), "{said}");
    assert!(!said.contains("hunter2"), "never the password: {said}");

    let said = refused_start(&[
        (
            "PARKME_REDIS_URL",
            "redis://:hunter2-password@127.0.0.1:6379",
        ),
        ("PARKME_REDIS_CA_FILE", "/nonexistent/ca.pem"),
    ]);
    assert!(said.contains("/nonexistent/ca.pem"), "{said}");
    assert!(!said.contains("hunter2"), "never the password: {said}");

    let ca = tempfile::NamedTempFile::new().expect("temp file");
    let ca_path = ca.path().display().to_string();
    let said = refused_start(&[
        (
            "PARKME_REDIS_URL",
            "redis://:hunter2-password@127.0.0.1:6379",
        ),
        ("PARKME_REDIS_CA_FILE", ca_path.as_str()),
    ]);
    assert!(said.contains("rediss://"), "a CA needs TLS: {said}");
    assert!(!said.contains("hunter2"), "never the password: {said}");
}
