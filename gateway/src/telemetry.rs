//! Logs, spans and metrics: one `init_tracing` for the binary and tests,
//! and the Prometheus recorder whose text `/metrics` serves.
//!
//! Every family of contract §6 is registered at start (named once, in
//! [`crate::metrics`] and the crates below) so that a scrape shows it
//! before the first event. Spans carry structured fields: `request`
//! (method, route) from the router's trace layer, then `book`/`cancel`
//! (`facility`, `booking`), `facility` and `zone` on the actor paths.

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
            crate::metrics::describe_all();
            Ok(handle)
        })
        .clone()
}
