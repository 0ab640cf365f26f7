//! The run's report: the JSON an operator (or CI) keeps, and the summary
//! table printed at the end. Latencies in milliseconds; rates over the
//! traffic phase only (the drain does not inflate them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::apps::AppOutcome;
use crate::checks::{BookingVerdict, SeqViolation};
use crate::cli::Cli;
use crate::ctx::{AtStop, Ctx};
use crate::sensors::SensorOutcome;
use crate::stats::{Sample, Timeline, latency_histogram, merge};
use crate::stream::StreamOutcome;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        Self {
            count: h.len(),
            mean: round3(h.mean() / 1000.0),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Percentile → milliseconds, for drawing a latency distribution.
pub type Distribution = Vec<(f64, f64)>;

fn distribution(h: &Histogram<u64>) -> Distribution {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = (0..=20)
        .map(|k| 1.0 - 10f64.powf(-f64::from(k) / 4.0))
        .chain(std::iter::once(1.0))
        .map(|q| {
            (
                round3(q * 100.0),
                round3(h.value_at_quantile(q) as f64 / 1000.0),
            )
        })
        .collect();
    points.dedup_by(|a, b| (a.0 - b.0).abs() < 1e-9);
    points
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub peak: i64,
    pub sensors: usize,
    pub apps: usize,
    pub subscribers: usize,
    pub sensor_reconnects: u64,
    pub stream_reconnects: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlowConsumers {
    pub stalled: u64,
    /// Stalled watchers that received messages again after the stall.
    pub recovered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub url: String,
    pub scenario: &'static str,
    pub encoding: crate::cli::Encoding,
    pub seed: u64,
    pub facilities: usize,
    pub spots_per_facility: usize,
    pub bookable_per_facility: usize,
    pub batch: usize,
    pub window: usize,
    pub rate_limit: u64,
    pub duration_s: f64,
    pub bind: Vec<String>,

    pub sensor_events_sent: u64,
    pub sensor_events_acked: u64,
    pub sensor_events_per_sec: f64,
    pub booking_attempts: u64,
    pub booking_attempts_per_sec: f64,
    pub bookings_created: u64,
    pub bookings_per_sec: f64,
    pub no_spot_available: u64,
    pub arrivals: u64,
    pub cancels: u64,
    pub no_shows: u64,
    pub deltas_received: u64,
    pub snapshots_received: u64,
    pub deltas_per_sec: f64,

    pub booking_latency_ms: Latency,
    pub booking_attempt_latency_ms: Latency,
    pub sensor_ack_latency_ms: Latency,
    pub delivery_latency_ms: Latency,
    pub reconnect_ms: Latency,

    pub connections: Connections,
    pub slow_consumers: SlowConsumers,

    pub double_bookings: u64,
    pub lost_bookings: u64,
    pub lost_acks: u64,
    pub seq_gaps: u64,
    pub bogus_acks: u64,
    pub invariants_ok: bool,
    pub violations: Vec<String>,
    pub errors: BTreeMap<String, u64>,
    pub final_spots_read: usize,

    pub timeline: Vec<Sample>,
    pub distributions: BTreeMap<&'static str, Distribution>,
}

/// What a finished run hands to [`Report::build`].
#[derive(Debug)]
pub struct Parts<'a> {
    pub cli: &'a Cli,
    pub ctx: &'a Ctx,
    pub at_stop: AtStop,
    pub timeline: Timeline,
    pub sensors: &'a [SensorOutcome],
    pub apps: &'a [AppOutcome],
    pub streams: &'a [StreamOutcome],
    pub verdict: BookingVerdict,
    pub final_spots: usize,
}

fn merged<'a>(hs: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut all = latency_histogram();
    for h in hs {
        merge(&mut all, h);
    }
    all
}

impl Report {
    pub fn build(p: Parts<'_>) -> Self {
        let secs = p.at_stop.elapsed.as_secs_f64().max(1e-9);
        let rate = |n: u64| round3(n as f64 / secs);
        let booking = merged(p.apps.iter().map(|a| &a.booking_latency));
        let attempts = merged(p.apps.iter().map(|a| &a.attempt_latency));
        let ack = merged(p.sensors.iter().map(|s| &s.ack_latency));
        let delivery = merged(p.streams.iter().map(|s| &s.delivery));
        let reconnect = merged(p.sensors.iter().map(|s| &s.reconnect_latency));
        let sum_s = |f: fn(&SensorOutcome) -> u64| p.sensors.iter().map(f).sum::<u64>();
        let sum_a = |f: fn(&AppOutcome) -> u64| p.apps.iter().map(f).sum::<u64>();

        let lost_acks = sum_s(|s| s.lost);
        let bogus_acks = sum_s(|s| s.bogus_acks);
        let seq_gaps: u64 = p.streams.iter().map(|s| s.violation_count).sum();
        let double_bookings = p.verdict.double_bookings.len() as u64;
        let lost_bookings = p.verdict.lost_bookings.len() as u64;

        let mut violations = Vec::new();
        for d in p.verdict.double_bookings.iter().take(10) {
            violations.push(format!(
                "double booking on {}/{}: {} and {} ({})",
                d.facility, d.spot, d.first, d.second, d.evidence
            ));
        }
        for l in p.verdict.lost_bookings.iter().take(10) {
            violations.push(format!(
                "booking {} on {}/{} was live but the final read shows no booking",
                l.booking, l.facility, l.spot
            ));
        }
        for v in p.streams.iter().flat_map(|s| s.violations.iter()).take(10) {
            violations.push(describe(v));
        }
        if lost_acks > 0 {
            violations.push(format!(
                "{lost_acks} sensor messages were never acknowledged"
            ));
        }
        if bogus_acks > 0 {
            violations.push(format!("{bogus_acks} acks named seqs never sent"));
        }

        let stalled: Vec<&StreamOutcome> = p.streams.iter().filter(|s| s.stalled).collect();
        let mut distributions = BTreeMap::new();
        distributions.insert("booking", distribution(&booking));
        distributions.insert("booking_attempt", distribution(&attempts));
        distributions.insert("sensor_ack", distribution(&ack));
        distributions.insert("delivery", distribution(&delivery));

        Report {
            run_id: p.ctx.run_id.clone(),
            url: p.cli.url.clone(),
            scenario: p.cli.scenario.name(),
            encoding: p.cli.encoding,
            seed: p.ctx.seed,
            facilities: p.cli.facilities,
            spots_per_facility: p.cli.spots,
            bookable_per_facility: p.ctx.plan.bookable_per_facility,
            batch: p.cli.batch,
            window: p.cli.window,
            rate_limit: p.cli.rate,
            duration_s: round3(secs),
            bind: p.cli.bind.iter().map(ToString::to_string).collect(),
            sensor_events_sent: sum_s(|s| s.sent),
            sensor_events_acked: sum_s(|s| s.acked),
            sensor_events_per_sec: rate(p.at_stop.sensor_acked),
            booking_attempts: sum_a(|a| a.attempts),
            booking_attempts_per_sec: rate(p.at_stop.booking_attempts),
            bookings_created: sum_a(|a| a.created),
            bookings_per_sec: rate(p.at_stop.bookings_created),
            no_spot_available: sum_a(|a| a.full),
            arrivals: sum_a(|a| a.arrivals),
            cancels: sum_a(|a| a.cancels),
            no_shows: sum_a(|a| a.no_shows),
            deltas_received: p.streams.iter().map(|s| s.deltas).sum(),
            snapshots_received: p.streams.iter().map(|s| s.snapshots).sum(),
            deltas_per_sec: rate(p.at_stop.deltas),
            booking_latency_ms: Latency::of(&booking),
            booking_attempt_latency_ms: Latency::of(&attempts),
            sensor_ack_latency_ms: Latency::of(&ack),
            delivery_latency_ms: Latency::of(&delivery),
            reconnect_ms: Latency::of(&reconnect),
            connections: Connections {
                peak: p
                    .ctx
                    .live
                    .connections_peak
                    .load(std::sync::atomic::Ordering::Relaxed),
                sensors: p.cli.sensors,
                apps: p.cli.apps,
                subscribers: p.ctx.plan.subscribers,
                sensor_reconnects: sum_s(|s| s.reconnects),
                stream_reconnects: p.streams.iter().map(|s| s.reconnects).sum(),
            },
            slow_consumers: SlowConsumers {
                stalled: stalled.len() as u64,
                recovered: stalled.iter().filter(|s| s.recovered).count() as u64,
            },
            invariants_ok: double_bookings + lost_bookings + lost_acks + seq_gaps + bogus_acks == 0,
            double_bookings,
            lost_bookings,
            lost_acks,
            seq_gaps,
            bogus_acks,
            violations,
            errors: p.ctx.live.errors(),
            final_spots_read: p.final_spots,
            timeline: p.timeline.samples,
            distributions,
        }
    }

    /// The table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "parkme-loadtest  run {}  scenario {}  encoding {}  seed {}",
            self.run_id,
            self.scenario,
            self.encoding.name(),
            self.seed
        );
        let _ = writeln!(
            s,
            "target {}  {} facilities x {} spots ({} bookable each)  {} sensors  {} apps  {} watchers  {:.1} s",
            self.url,
            self.facilities,
            self.spots_per_facility,
            self.bookable_per_facility,
            self.connections.sensors,
            self.connections.apps,
            self.connections.subscribers,
            self.duration_s
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  sensor events acked/s {:>12.1}   ({} acked of {} sent)",
            self.sensor_events_per_sec, self.sensor_events_acked, self.sensor_events_sent
        );
        let _ = writeln!(
            s,
            "  bookings/s            {:>12.1}   ({} created of {} attempts ({:.1}/s), {} no_spot_available; {} arrived, {} cancelled, {} no-show)",
            self.bookings_per_sec,
            self.bookings_created,
            self.booking_attempts,
            self.booking_attempts_per_sec,
            self.no_spot_available,
            self.arrivals,
            self.cancels,
            self.no_shows
        );
        let _ = writeln!(
            s,
            "  deltas received/s     {:>12.1}   ({} deltas, {} snapshots)",
            self.deltas_per_sec, self.deltas_received, self.snapshots_received
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  latency (ms)          {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "p99.9", "max", "count"
        );
        for (name, l) in [
            ("booking", &self.booking_latency_ms),
            ("booking attempt", &self.booking_attempt_latency_ms),
            ("sensor ack", &self.sensor_ack_latency_ms),
            ("delivery", &self.delivery_latency_ms),
            ("sensor reconnect", &self.reconnect_ms),
        ] {
            let _ = writeln!(
                s,
                "  {name:<21} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  connections peak {}  sensor reconnects {}  stream reconnects {}  slow consumers {} (recovered {})",
            self.connections.peak,
            self.connections.sensor_reconnects,
            self.connections.stream_reconnects,
            self.slow_consumers.stalled,
            self.slow_consumers.recovered
        );
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  errors           {}",
            if errors.is_empty() {
                "none".to_owned()
            } else {
                errors.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "  invariants       double_bookings {}  lost_bookings {}  lost_acks {}  seq_gaps {}  bogus_acks {}  => {}",
            self.double_bookings,
            self.lost_bookings,
            self.lost_acks,
            self.seq_gaps,
            self.bogus_acks,
            if self.invariants_ok { "OK" } else { "BROKEN" }
        );
        for v in &self.violations {
            let _ = writeln!(s, "    ! {v}");
        }
        s
    }
}

fn describe(v: &SeqViolation) -> String {
    match v {
        SeqViolation::Gap {
            expected_prev,
            prev,
            seq,
        } => format!("seq gap: delta {prev}->{seq} after {expected_prev}"),
        SeqViolation::NotIncreasing { prev, seq } => {
            format!("delta does not move forward: {prev}->{seq}")
        }
        SeqViolation::Regression { seen, seq } => {
            format!("snapshot at {seq} after seq {seen} was seen")
        }
        SeqViolation::DeltaBeforeSnapshot { prev, seq } => {
            format!("delta {prev}->{seq} before any snapshot")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summaries_are_in_milliseconds() {
        let mut h = latency_histogram();
        for micros in 1..=1000u64 {
            h.saturating_record(micros * 1000);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "p50 {}", l.p50);
        assert!((l.max - 1000.0).abs() < 1.0);
        let d = distribution(&h);
        assert_eq!(d.first().map(|p| p.0), Some(0.0));
        assert_eq!(d.last().map(|p| p.0), Some(100.0));
        assert!(d.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
