//! The harness against a stand-in server that breaks one invariant at a
//! time: each break is reported, and a clean stand-in passes. (The real
//! server is exercised in `scenarios.rs`.)

mod mock;

use clap::Parser;
use mock::Faults;
use parkme_loadtest::{Cli, Report};

async fn run_against(faults: Faults, extra: &[&str]) -> Report {
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
        "2s",
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
    let report = run_against(
        Faults {
            ack_limit: Some(20),
            ..Faults::default()
        },
        &[],
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
