//! Starts the real `parkme` binary on a free port with a temporary data
//! directory, and runs the harness against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use parkme_loadtest::{Cli, Report};

pub const ADMIN: &str = "lt-admin-token";
pub const SECRET: &str = "lt-jwt-secret";

/// The `parkme` binary: `PARKME_BIN` (scripts/test builds it once and
/// sets it), else the one `cargo test --workspace` built beside this
/// test (`target/<profile>/parkme`). Tests never run cargo themselves.
pub fn parkme_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("PARKME_BIN") {
            return PathBuf::from(path);
        }
        // This test runs from target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let bin = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>")
            .join("parkme");
        assert!(
            bin.exists(),
            "{} is missing: build it (cargo build -p parkme-gateway --bin parkme) or set PARKME_BIN",
            bin.display()
        );
        bin
    })
    .clone()
}

/// A running `parkme serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server() -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(parkme_bin())
        .arg("serve")
        .env("PARKME_LISTEN", "127.0.0.1:0")
        .env("PARKME_DATA_DIR", data.path())
        .env("PARKME_ADMIN_TOKEN", ADMIN)
        .env("PARKME_JWT_SECRET", SECRET)
        .env("PARKME_RATE_BOOKINGS_PER_HOUR", "0")
        .env("PARKME_RATE_USER_PER_HOUR", "0")
        .env("PARKME_RATE_ANON_PER_HOUR", "0")
        .env("PARKME_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting parkme");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().trim_end_matches('/').to_owned());
            }
        }
    });
    let started = Instant::now();
    let url = loop {
        if let Ok(url) = rx.recv_timeout(Duration::from_millis(100)) {
            break url;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("parkme exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "parkme did not start"
        );
    };
    Server {
        child,
        url,
        _data: data,
    }
}

/// The harness's flags for a small run against `server`.
pub fn cli(server: &Server, scenario: &str, extra: &[&str]) -> Cli {
    let mut args = vec![
        "parkme-loadtest",
        "--url",
        &server.url,
        "--admin-token",
        ADMIN,
        "--jwt-secret",
        SECRET,
        "--scenario",
        scenario,
        "--facilities",
        "2",
        "--spots",
        "60",
        "--sensors",
        "4",
        "--apps",
        "12",
        "--duration",
        "2500ms",
        // A run ends once everything is acknowledged: a long drain only
        // keeps a loaded machine from calling a slow ack a lost one.
        "--drain",
        "30s",
        "--hold",
        "3s",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).expect("valid flags")
}

pub async fn run(server: &Server, scenario: &str, extra: &[&str]) -> Report {
    let cli = cli(server, scenario, extra);
    let report = parkme_loadtest::run(&cli).await.expect("the run happens");
    eprintln!("{}", report.summary());
    report
}

/// The invariants every scenario must keep, and proof that traffic flowed.
pub fn assert_clean(report: &Report) {
    assert_eq!(report.double_bookings, 0, "{:?}", report.violations);
    assert_eq!(report.lost_bookings, 0, "{:?}", report.violations);
    assert_eq!(report.lost_acks, 0, "{:?}", report.violations);
    assert_eq!(report.seq_gaps, 0, "{:?}", report.violations);
    assert_eq!(report.bogus_acks, 0, "{:?}", report.violations);
    assert!(report.invariants_ok);
    assert!(
        report.sensor_events_per_sec > 0.0,
        "no sensor event acknowledged: {:?}",
        report.errors
    );
    assert!(report.final_spots_read > 0, "the final read saw no spot");
}
