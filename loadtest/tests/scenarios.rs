//! Every scenario, 2–3 s each, against the real `parkme` binary: the
//! invariants hold and traffic flows.

mod common;

use common::{assert_clean, run, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_json() {
    let server = start_server();
    let report = run(
        &server,
        "steady",
        &["--encoding", "json", "--subscribers", "3"],
    )
    .await;
    assert_clean(&report);
    assert!(report.bookings_per_sec > 0.0, "{:?}", report.errors);
    assert!(report.deltas_received > 0);
    assert!(report.delivery_latency_ms.count > 0);
    assert!(report.connections.peak >= 4 + 12 * 2 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_bincode_in_batches() {
    let server = start_server();
    let report = run(
        &server,
        "steady",
        &["--encoding", "bincode", "--batch", "8", "--book-via", "ws"],
    )
    .await;
    assert_clean(&report);
    assert!(report.bookings_per_sec > 0.0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rush_hour() {
    let server = start_server();
    let report = run(&server, "rush-hour", &["--book-via", "http"]).await;
    assert_clean(&report);
    assert!(report.bookings_per_sec > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_spot() {
    let server = start_server();
    let report = run(&server, "last-spot", &["--apps", "60"]).await;
    assert_clean(&report);
    assert_eq!(report.bookable_per_facility, 4);
    assert!(report.bookings_per_sec > 0.0);
    assert!(
        report.no_spot_available > 0,
        "60 apps racing for 4 spots must be refused sometimes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers() {
    let server = start_server();
    let report = run(&server, "slow-consumers", &["--subscribers", "6"]).await;
    assert_clean(&report);
    assert_eq!(report.slow_consumers.stalled, 6);
    assert_eq!(
        report.slow_consumers.recovered, 6,
        "every stalled watcher catches up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm() {
    let server = start_server();
    let report = run(&server, "reconnect-storm", &["--subscribers", "3"]).await;
    assert_clean(&report);
    assert!(
        report.connections.sensor_reconnects >= 4,
        "every sensor reconnects at each storm: {}",
        report.connections.sensor_reconnects
    );
    assert!(report.connections.stream_reconnects >= 3);
}
