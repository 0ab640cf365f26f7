//! Logs, spans and metrics: one `init_tracing` for the binary and tests,
//! and the Prometheus recorder whose text `/metrics` serves.
//!
//! Every family of contract §6 is registered at start so that a scrape
//! shows it before the first event.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Tests stay quiet unless `TEST_LOG` is set.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn init_metrics() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            register_families();
            Ok(handle)
        })
        .clone()
}

fn register_families() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("parkme_sensor_events_total", "Sensor messages received.");
    describe_counter!("parkme_bookings_total", "Booking requests by outcome.");
    describe_histogram!(
        "parkme_booking_latency_seconds",
        Unit::Seconds,
        "Time to answer a booking request."
    );
    describe_gauge!(
        "parkme_ws_connections",
        "Open websocket connections by kind."
    );
    describe_histogram!(
        "parkme_journal_write_seconds",
        Unit::Seconds,
        "Time of one durable group commit."
    );
    describe_histogram!(
        "parkme_snapshot_seconds",
        Unit::Seconds,
        "Time to write one zone snapshot."
    );
    describe_gauge!(
        "parkme_actor_mailbox_len",
        "Messages waiting in actor mailboxes."
    );
    describe_gauge!("parkme_spots", "Spots by state.");
    describe_counter!("parkme_zone_events_total", "Events applied by zone actors.");
    describe_counter!(
        "parkme_journal_writes_total",
        "Writes made durable by group commits."
    );
    describe_counter!("parkme_journal_commits_total", "Durable group commits.");
    describe_gauge!(
        "parkme_commit_queue_len",
        "Write batches waiting for the group committer."
    );
    describe_histogram!(
        "parkme_checkpoint_seconds",
        Unit::Seconds,
        "Time to checkpoint the embedded store's write-ahead log."
    );
    describe_counter!(
        "parkme_actor_failures_total",
        "Actors that failed (panic or error)."
    );
    describe_counter!(
        "parkme_actor_restarts_total",
        "Actors restarted by their supervisor."
    );
    describe_counter!(
        "parkme_rate_limited_total",
        "Requests refused by a rate limit."
    );
    describe_counter!(
        "parkme_handler_panics_total",
        "HTTP handlers that panicked (bugs)."
    );
    describe_counter!(
        "parkme_bookings_expired_total",
        "Holds that expired unclaimed."
    );
    describe_counter!(
        "parkme_fenced_writes_total",
        "Commits refused because a newer writer owns the zone."
    );
    describe_counter!(
        "parkme_storage_purged_total",
        "Records the store's upkeep forgot, by kind (expired idempotency keys, ended bookings past their retention)."
    );
    describe_counter!(
        "parkme_auth_failures_total",
        "Requests with credentials answered 401, counted per client address."
    );
    describe_counter!(
        "parkme_connections_refused_total",
        "TCP connections refused at a connection cap, by cap."
    );
    describe_counter!(
        "parkme_connections_timed_out_total",
        "Connections cut by a timeout (header, body, idle)."
    );
    describe_gauge!(
        "parkme_redis_up",
        "1 while the Redis connection is up (only with PARKME_REDIS_URL)."
    );
    metrics::counter!("parkme_auth_failures_total").increment(0);
    for reason in ["per_ip", "overall"] {
        metrics::counter!("parkme_connections_refused_total", "reason" => reason).increment(0);
    }
    for phase in ["header", "body", "idle"] {
        metrics::counter!("parkme_connections_timed_out_total", "phase" => phase).increment(0);
    }
    metrics::counter!("parkme_sensor_events_total").increment(0);
    for outcome in [
        "created",
        "replayed",
        "no_spot_available",
        "rejected",
        "unavailable",
    ] {
        metrics::counter!("parkme_bookings_total", "outcome" => outcome).increment(0);
    }
    for kind in ["sensor", "app"] {
        metrics::gauge!("parkme_ws_connections", "kind" => kind).increment(0.0);
    }
    metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").increment(0.0);
    for state in parkme_engine::SpotState::ALL {
        metrics::gauge!("parkme_spots", "state" => state.as_str()).increment(0.0);
    }
    // Histograms appear once they have a sample; register them empty.
    let _ = metrics::histogram!("parkme_booking_latency_seconds");
    let _ = metrics::histogram!("parkme_journal_write_seconds", "backend" => "embedded");
    let _ = metrics::histogram!("parkme_snapshot_seconds");
}
