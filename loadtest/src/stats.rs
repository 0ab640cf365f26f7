//! Live measurements shared by every task: atomic counters for the
//! progress line and the timeline, errors by code, and the histograms each
//! task fills locally and hands back at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to one minute.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("1 µs .. 60 s at 3 digits is valid")
}

/// Records a duration, clamping it into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, histogram.high()));
}

/// Adds `from` into `into`; both come from [`latency_histogram`].
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        // Same bounds on both sides, so this does not happen; keep counts.
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Counters every task bumps as it goes.
#[derive(Debug, Default)]
pub struct Live {
    pub sensor_sent: AtomicU64,
    pub sensor_acked: AtomicU64,
    pub booking_attempts: AtomicU64,
    pub bookings_created: AtomicU64,
    pub deltas_received: AtomicU64,
    pub connections: AtomicI64,
    pub connections_peak: AtomicI64,
    pub error_count: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Live {
    /// A websocket opened; keeps the peak.
    pub fn connection_opened(&self) {
        let now = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.connections_peak.fetch_max(now, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one error under its code (`no_spot_available`, `handshake_401`…).
    pub fn error(&self, code: &str) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match errors.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                // Bounded: a server inventing codes cannot grow this forever.
                let key = if errors.len() < 200 { code } else { "other" };
                *errors.entry(truncate(key, 64).to_owned()).or_insert(0) += 1;
            }
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One point of throughput over time.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since traffic started.
    pub t: f64,
    pub sensor_events_per_sec: f64,
    pub bookings_per_sec: f64,
    pub deltas_per_sec: f64,
    pub errors_per_sec: f64,
    pub connections: i64,
}

/// Turns successive counter readings into [`Sample`]s.
#[derive(Debug, Default)]
pub struct Timeline {
    last: Option<(f64, [u64; 4])>,
    pub samples: Vec<Sample>,
}

impl Timeline {
    /// Most samples kept (a long run is thinned, never unbounded).
    const MAX: usize = 4000;

    pub fn sample(&mut self, t: f64, live: &Live) {
        let now = [
            Live::get(&live.sensor_acked),
            Live::get(&live.bookings_created),
            Live::get(&live.deltas_received),
            Live::get(&live.error_count),
        ];
        if let Some((t0, before)) = self.last {
            let dt = (t - t0).max(1e-6);
            let rate = |i: usize| now[i].saturating_sub(before[i]) as f64 / dt;
            if self.samples.len() < Self::MAX {
                self.samples.push(Sample {
                    t,
                    sensor_events_per_sec: rate(0),
                    bookings_per_sec: rate(1),
                    deltas_per_sec: rate(2),
                    errors_per_sec: rate(3),
                    connections: live.connections.load(Ordering::Relaxed),
                });
            }
        }
        self.last = Some((t, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_code() {
        let live = Live::default();
        live.error("no_spot_available");
        live.error("no_spot_available");
        live.error("handshake_401");
        let errors = live.errors();
        assert_eq!(errors.get("no_spot_available"), Some(&2));
        assert_eq!(Live::get(&live.error_count), 3);
    }

    #[test]
    fn the_timeline_reports_rates() {
        let live = Live::default();
        let mut timeline = Timeline::default();
        timeline.sample(0.0, &live);
        live.sensor_acked.fetch_add(500, Ordering::Relaxed);
        timeline.sample(0.5, &live);
        assert_eq!(timeline.samples.len(), 1);
        assert!((timeline.samples[0].sensor_events_per_sec - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut h = latency_histogram();
        record(&mut h, Duration::from_secs(3600));
        record(&mut h, Duration::ZERO);
        assert_eq!(h.len(), 2);
    }
}
