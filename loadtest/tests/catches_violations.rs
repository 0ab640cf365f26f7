//! The harness against a stand-in server that breaks one invariant at a
//! time: each break is reported, and a clean stand-in passes. (The real
//! server is exercised in `scenarios.rs`.)

mod mock;

use clap::Parser;
use mock::Faults;
use parkme_loadtest::{Cli, Report};

/// How long sensors may wait for their last acks after the traffic. A
/// run ends as soon as everything is acknowledged, so this is long: a
/// loaded CI machine must not turn a slow ack into a "lost" one.
const DRAIN: &str = "30s";

async fn run_against(faults: Faults, extra: &[&str]) -> Report {
    run_with_drain(faults, extra, DRAIN).await
}

async fn run_with_drain(faults: Faults, extra: &[&str], drain: &str) -> Report {
    let url = mock::start(faults).await;
    let mut args = vec![
        "parkme-loadtest",
        "--url",
        &url,
        "--admin-token",
        "a",
        "--jwt-secret",
        "s",
        "--facilities",
        "2",
        "--spots",
        "30",
        "--sensors",
        "2",
        "--apps",
        "8",
        "--subscribers",
        "2",
        "--duration",
        "1500ms",
        "--drain",
        drain,
        "--hold",
        "3s",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("flags");
    let report = parkme_loadtest::run(&cli).await.expect("run");
    eprintln!("{}", report.summary());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_server_passes() {
    let report = run_against(Faults::default(), &[]).await;
    assert!(report.invariants_ok, "{:?}", report.violations);
    assert!(report.sensor_events_per_sec > 0.0);
    assert!(report.bookings_created > 0);
    assert!(report.delivery_latency_ms.count > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bincode_batches_and_storms_pass_too() {
    let report = run_against(
        Faults::default(),
        &[
            "--encoding",
            "bincode",
            "--batch",
            "5",
            "--scenario",
            "reconnect-storm",
        ],
    )
    .await;
    assert!(report.invariants_ok, "{:?}", report.violations);
    assert!(report.connections.sensor_reconnects >= 2);
    assert!(report.sensor_events_acked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_never_acked_are_lost_acks() {
    // The stand-in never acks past message 20: any drain ends with them
    // lost, so a short one keeps the test short.
    let report = run_with_drain(
        Faults {
            ack_limit: Some(20),
            ..Faults::default()
        },
        &[],
        "2s",
    )
    .await;
    assert!(report.lost_acks > 0);
    assert!(!report.invariants_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_delta_is_a_seq_gap() {
    let report = run_against(
        Faults {
            skip_delta: Some(5),
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert!(report.seq_gaps > 0);
    assert!(!report.invariants_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_double_books_is_caught() {
    let report = run_against(
        Faults {
            double_book: true,
            ..Faults::default()
        },
        &["--scenario", "last-spot", "--book-via", "http"],
    )
    .await;
    assert!(report.double_bookings > 0, "{:?}", report.violations);
    assert!(!report.invariants_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_catch_up() {
    let report = run_against(
        Faults::default(),
        &["--scenario", "slow-consumers", "--subscribers", "3"],
    )
    .await;
    assert!(report.invariants_ok, "{:?}", report.violations);
    assert_eq!(report.slow_consumers.stalled, 3);
    assert_eq!(report.slow_consumers.recovered, 3);
}
