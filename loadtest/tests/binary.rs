//! The `parkme-loadtest` binary as an operator runs it: flags, progress,
//! summary, JSON and HTML reports, exit code.

mod common;

use std::process::Command;

use common::{ADMIN, SECRET, start_server};

#[test]
fn a_run_writes_both_reports_and_exits_zero() {
    let server = start_server();
    let out = tempfile::tempdir().expect("temp dir");
    let json = out.path().join("report.json");
    let html = out.path().join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_parkme-loadtest"))
        .args(["--url", &server.url])
        .args(["--admin-token", ADMIN, "--jwt-secret", SECRET])
        .args(["--facilities", "2", "--spots", "40", "--sensors", "2"])
        .args([
            "--apps",
            "6",
            "--duration",
            "2s",
            "--drain",
            "4s",
            "--seed",
            "7",
        ])
        .args(["--bind", "127.0.0.1"])
        .arg("--report")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("running parkme-loadtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("invariants"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report.json written"))
            .expect("report.json is JSON");
    for key in [
        "sensor_events_per_sec",
        "bookings_per_sec",
        "booking_latency_ms",
        "delivery_latency_ms",
        "double_bookings",
        "lost_acks",
        "seq_gaps",
        "errors",
    ] {
        assert!(report.get(key).is_some(), "report.json lacks {key}");
    }
    for key in ["p50", "p99", "p999"] {
        assert!(report["booking_latency_ms"].get(key).is_some());
    }
    assert!(report["delivery_latency_ms"].get("p99").is_some());
    assert_eq!(report["seed"], 7);

    let page = std::fs::read_to_string(&html).expect("report.html written");
    assert!(page.contains("<svg"));
    assert!(!page.contains("<script"));
}

#[test]
fn bad_flags_exit_one_without_touching_the_network() {
    let output = Command::new(env!("CARGO_BIN_EXE_parkme-loadtest"))
        .args(["--url", "https://example.invalid", "--admin-token", "a"])
        .args(["--jwt-secret", "s"])
        .output()
        .expect("running parkme-loadtest");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("http://"));
}
