//! What every task of a run shares ([`Ctx`]): the plan, the clocks, the
//! stop signals, the live counters, the connections' dialer and API
//! client, and each facility's runtime view ([`FacilityRt`]); plus the
//! counters read when traffic stopped ([`AtStop`]).
//!
//! A leaf: the tasks (`sensors`, `apps`, `stream`) and the report read it;
//! only `run` builds it. This module must never start a task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::checks::Micros;
use crate::cli::{BookVia, Encoding};
use crate::net::Dialer;
use crate::scenario::{FacilitySpec, Plan};
use crate::sensors::SensorCommand;
use crate::stats::Live;

/// Slack on a booking's `expires_at` before the checkers call it over
/// (clock reading, millisecond rounding, the server's expiry tick).
pub const EXPIRY_SLACK: Micros = 500_000;

/// One facility as the run knows it.
#[derive(Debug)]
pub struct FacilityRt {
    pub id: String,
    /// The sensor key, percent-encoded for `?key=`.
    pub key_query: String,
    pub zones: Vec<String>,
    pub spot_ids: Vec<Arc<str>>,
    pub index: HashMap<String, usize>,
    /// Per spot: `(sent µs + 1) | occupied << 63` of the latest change.
    changes: Vec<AtomicU64>,
    /// Per spot: the sensor that reports it when an app's car comes.
    commanders: Vec<Option<mpsc::Sender<SensorCommand>>>,
}

const OCCUPIED_BIT: u64 = 1 << 63;

impl FacilityRt {
    /// Notes that `spot` was just reported (for delivery latency).
    pub fn stamp(&self, spot: usize, occupied: bool, at: Micros) {
        if let Some(cell) = self.changes.get(spot) {
            let value = ((at + 1) & !OCCUPIED_BIT) | if occupied { OCCUPIED_BIT } else { 0 };
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// The latest change of `spot`: `(sent at, occupied, stamp)`.
    pub fn last_change(&self, spot: usize) -> Option<(Micros, bool, u64)> {
        let value = self.changes.get(spot)?.load(Ordering::Relaxed);
        (value != 0).then(|| {
            (
                (value & !OCCUPIED_BIT) - 1,
                value & OCCUPIED_BIT != 0,
                value,
            )
        })
    }

    pub fn commander(&self, spot: usize) -> Option<&mpsc::Sender<SensorCommand>> {
        self.commanders.get(spot)?.as_ref()
    }
}

/// Everything the tasks of a run share.
#[derive(Debug)]
pub struct Ctx {
    pub run_id: String,
    pub seed: u64,
    pub plan: Plan,
    pub encoding: Encoding,
    pub batch: usize,
    pub window: usize,
    pub hold: Duration,
    pub book_via: BookVia,
    pub sensor_rate_per_conn: f64,
    pub start: Instant,
    pub wall_start_ms: i64,
    pub duration: Duration,
    /// Traffic is over.
    pub stop: CancellationToken,
    /// Every app has finished (sensors stop taking commands).
    pub apps_done: CancellationToken,
    /// The drain is over: close everything now.
    pub abort: CancellationToken,
    /// Bumped at each storm.
    pub storm: watch::Receiver<u32>,
    pub live: Live,
    pub dialer: Dialer,
    pub api: Api,
    pub facilities: Vec<FacilityRt>,
    pub sensor_names: Vec<Arc<str>>,
}

impl Ctx {
    pub fn micros(&self, t: Instant) -> Micros {
        u64::try_from(t.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    /// How far into the traffic phase we are, `0..=1`.
    pub fn progress(&self) -> f64 {
        (self.start.elapsed().as_secs_f64() / self.duration.as_secs_f64().max(1e-9)).min(1.0)
    }

    pub fn wall_ms_now(&self) -> i64 {
        wall_ms()
    }

    /// A server time (ms since the epoch) on the harness clock.
    pub fn wall_ms_to_micros(&self, ms: i64) -> Micros {
        u64::try_from((ms - self.wall_start_ms).max(0))
            .unwrap_or(0)
            .saturating_mul(1000)
    }
}

/// Milliseconds since the epoch, now.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Counter readings when traffic stopped (rates are over the traffic phase).
#[derive(Debug, Clone, Copy)]
pub struct AtStop {
    pub elapsed: Duration,
    pub sensor_acked: u64,
    pub bookings_created: u64,
    pub booking_attempts: u64,
    pub deltas: u64,
}

impl FacilityRt {
    /// The runtime view of a planned facility, its sensors' command
    /// channels and its sensor key.
    pub fn new(
        spec: &FacilitySpec,
        key: &str,
        commanders: Vec<Option<mpsc::Sender<SensorCommand>>>,
    ) -> FacilityRt {
        FacilityRt {
            id: spec.id.clone(),
            key_query: percent_encode(key),
            zones: spec.zones.clone(),
            spot_ids: spec
                .spots
                .iter()
                .map(|s| Arc::from(s.id.as_str()))
                .collect(),
            index: spec
                .spots
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            changes: spec.spots.iter().map(|_| AtomicU64::new(0)).collect(),
            commanders,
        }
    }
}
