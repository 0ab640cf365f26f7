//! The one harness of the gateway's integration tests: start the real
//! `parkme` binary on a free port with a fresh data dir, talk to it over
//! sockets ([`http`]: the JSON client, [`ws`]: the websocket clients),
//! poll for what must eventually hold ([`poll_until`], [`eventually`]) and
//! name what tests share with other runs ([`unique_name`], [`cql_server`]).
//! Every run of the binary goes through [`parkme`] (a server through
//! [`parkme_serve`]). These helpers must never run
//! cargo or skip a test.
//!
//! `TestServer::start(env)` spawns `parkme serve` (port 0, the bound port
//! read from its "listening on" line), waits until `/health/` answers 200,
//! and kills the process on drop. `restart()` starts a new process on the
//! same data dir and port. `start_unhealthy` waits only for the listening
//! line (for servers whose Redis is down on purpose). Every line the
//! server prints is kept (`output()`); logs are shown only if `TEST_LOG`
//! is set.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header, encode};

pub mod http;
pub mod relay;
pub mod ws;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const JWT_SECRET: &str = "test-jwt-secret";

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct TestServer {
    child: Option<Child>,
    port: u16,
    env: Vec<(String, String)>,
    data_dir: tempfile::TempDir,
    /// Whether a start waits for `/health/` to answer 200.
    wait_healthy: bool,
    /// What the server printed (the last few thousand lines).
    output: Arc<Mutex<Vec<String>>>,
}

/// Lines of output kept per server.
const OUTPUT_LINES: usize = 4096;

impl TestServer {
    /// Starts `parkme serve` with `env` on top of the test defaults
    /// (embedded storage in a temp dir, known admin token and JWT secret).
    pub async fn start(env: &[(&str, &str)]) -> TestServer {
        Self::start_in(env, tempfile::tempdir().expect("a temp data dir"), true).await
    }

    /// Like [`TestServer::start`], but ready once it listens, healthy or
    /// not.
    pub async fn start_unhealthy(env: &[(&str, &str)]) -> TestServer {
        Self::start_in(env, tempfile::tempdir().expect("a temp data dir"), false).await
    }

    /// Like [`TestServer::start`], on a data dir prepared beforehand.
    pub async fn start_on(env: &[(&str, &str)], data_dir: tempfile::TempDir) -> TestServer {
        Self::start_in(env, data_dir, true).await
    }

    async fn start_in(
        env: &[(&str, &str)],
        data_dir: tempfile::TempDir,
        wait_healthy: bool,
    ) -> TestServer {
        let mut server = TestServer {
            child: None,
            port: 0,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            data_dir,
            wait_healthy,
            output: Arc::new(Mutex::new(Vec::new())),
        };
        server.spawn().await;
        server
    }

    /// Every line the server printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    async fn spawn(&mut self) {
        let verbose = std::env::var_os("TEST_LOG").is_some();
        let mut command = parkme_serve(self.data_dir.path());
        command
            .env("PARKME_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PARKME_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PARKME_JWT_SECRET", JWT_SECRET)
            .env("PARKME_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", if verbose { "info" } else { "warn" })
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(if verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("parkme starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let output = Arc::clone(&self.output);
        // Reads the bound port, then keeps draining stdout (logs) so the
        // server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
                    if output.len() >= OUTPUT_LINES {
                        output.remove(0);
                    }
                    output.push(line.clone());
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let port = rest
                        .trim_end_matches('/')
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
                if verbose {
                    println!("[parkme] {line}");
                }
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            match rx.try_recv() {
                Ok(Some(port)) => break port,
                Ok(None) => panic!("parkme printed an unreadable listening line"),
                Err(mpsc::TryRecvError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.try_wait().ok());
                    panic!("parkme exited before listening: {status:?}");
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(Instant::now() < deadline, "parkme did not start in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.port = port;
        if self.wait_healthy {
            self.wait_healthy(deadline).await;
        }
    }

    async fn wait_healthy(&mut self, deadline: Instant) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        loop {
            if let Ok(response) = client.get(format!("{}/health/", self.url())).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("parkme exited during start: {status}");
            }
            assert!(Instant::now() < deadline, "parkme never became healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    pub fn admin_token(&self) -> &str {
        self.env_value("PARKME_ADMIN_TOKEN").unwrap_or(ADMIN_TOKEN)
    }

    /// An HS256 user token `{"sub": sub, "exp": in an hour}` signed with
    /// the server's secret.
    pub fn user_token(&self, sub: &str) -> String {
        let secret = self.env_value("PARKME_JWT_SECRET").unwrap_or(JWT_SECRET);
        user_token_signed_with(secret, sub)
    }

    /// A user token with these claims (`exp`, `nbf`, …) signed with the
    /// server's secret.
    pub fn token_with_claims(&self, claims: &serde_json::Value) -> String {
        let secret = self.env_value("PARKME_JWT_SECRET").unwrap_or(JWT_SECRET);
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("a signed token")
    }

    /// SIGKILL: no flush, no snapshot, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The child process, to signal or wait on it directly.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Starts a new process on the same data dir and port (killing the
    /// current one first if it still runs).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Seconds since the Unix epoch (the unit of `exp` and `nbf`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A user token valid for an hour, signed with any secret (to test a
/// wrong one).
pub fn user_token_signed_with(secret: &str, sub: &str) -> String {
    encode(
        &Header::default(),
        &serde_json::json!({ "sub": sub, "exp": unix_now() + 3600 }),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a signed token")
}

/// The `parkme` binary with no `PARKME_*` setting inherited from the
/// test's environment and no stdin: the one way these tests run it (the
/// caller adds the subcommand, its env and how it reads the output).
pub fn parkme() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parkme"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PARKME_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// `parkme serve` on `data_dir` (see [`parkme`]): the one way these tests
/// start a server.
pub fn parkme_serve(data_dir: &Path) -> Command {
    let mut command = parkme();
    command.arg("serve").env("PARKME_DATA_DIR", data_dir);
    command
}

/// Runs `parkme serve` on `data_dir` expecting it to refuse to start;
/// returns what it printed (stdout then stderr).
pub fn refused_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let out = parkme_serve(data_dir)
        .env("PARKME_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("parkme runs");
    assert!(
        !out.status.success(),
        "parkme must refuse to start with {env:?}"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A name no other test or run uses: `{tag}_{pid}_{nanos}_{n}` (letters,
/// digits and `_` only, so it is also a valid CQL keyspace suffix).
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}_{}_{nanos}_{n}", std::process::id())
}

/// A keyspace no other test or run uses:
/// `parkme_test_<unix secs>_<tag>_<pid>_<n>`. The start time in the name
/// lets the storage suite sweep what runs older than an hour left behind
/// (storage/tests/conformance_cql.rs), whatever test made it.
pub fn test_keyspace(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag.chars().take(9).collect();
    let name = format!("parkme_test_{secs}_{tag}_{}_{n}", std::process::id());
    // CQL keyspace names are at most 48 characters.
    assert!(name.len() <= 48, "keyspace name too long: {name}");
    name
}

/// The CQL server the tests share (`PARKME_TEST_CQL`, set by
/// `scripts/test`).
pub fn cql_server() -> String {
    std::env::var("PARKME_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// A Redis key prefix no other test or run uses.
pub fn redis_prefix(tag: &str) -> String {
    format!("parkme-test:{}:", unique_name(tag))
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` until it holds or `wait` passes; whether it held.
pub async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds; fails the test naming `what` if it does
/// not within `wait`.
pub async fn poll_until<F, Fut>(what: &str, wait: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(wait, check).await,
        "timed out waiting for {what}"
    );
}

/// The CQL server with logins and TLS that `scripts/test` starts next to
/// the plain one (`PARKME_CQL_SECURE=1 scripts/cql-server start`): where it
/// is, the CA that signed its certificate, an unrelated CA, and the role
/// the script made. Test credentials, not secrets.
#[derive(Debug, Clone)]
pub struct SecureCql {
    /// `host:port` (`PARKME_TEST_CQL_SECURE`, default `127.0.0.1:9142`).
    pub addr: String,
    /// `PARKME_TEST_CQL_SECURE_CA`.
    pub ca: std::path::PathBuf,
    /// `PARKME_TEST_CQL_OTHER_CA`.
    pub other_ca: std::path::PathBuf,
    /// `PARKME_TEST_CQL_SECURE_USER`.
    pub user: String,
    /// `PARKME_TEST_CQL_SECURE_PASSWORD`.
    pub password: String,
}

/// The secure CQL server; fails the test, saying how to start it, when it
/// is not there (never skips).
pub fn secure_cql() -> SecureCql {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let tls_dir = std::path::PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/parkme-cql-secure/tls");
    let secure = SecureCql {
        addr: var("PARKME_TEST_CQL_SECURE").unwrap_or_else(|| "127.0.0.1:9142".into()),
        ca: var("PARKME_TEST_CQL_SECURE_CA")
            .map(Into::into)
            .unwrap_or_else(|| tls_dir.join("ca.pem")),
        other_ca: var("PARKME_TEST_CQL_OTHER_CA")
            .map(Into::into)
            .unwrap_or_else(|| tls_dir.join("other-ca.pem")),
        user: var("PARKME_TEST_CQL_SECURE_USER").unwrap_or_else(|| "parkme".into()),
        password: var("PARKME_TEST_CQL_SECURE_PASSWORD")
            .unwrap_or_else(|| "s3cret/p@ss:w0rd".into()),
    };
    let reachable = secure
        .addr
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable && secure.ca.is_file() && secure.other_ca.is_file(),
        "the CQL server with logins and TLS is required at {} with its CA at {} \
         (reachable: {reachable}); start it with: PARKME_CQL_SECURE=1 \
         PARKME_CQL_HOME=~/.cache/parkme-cql-secure PARKME_CQL_PORT=9142 \
         PARKME_CQL_STORAGE_PORT=7100 PARKME_CQL_JMX_PORT=7299 scripts/cql-server start \
         (scripts/test does)",
        secure.addr,
        secure.ca.display()
    );
    secure
}

/// `text` percent-encoded for the user or password part of a URI.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
