//! Every metric family the edge records, named once here with its help
//! text, and the function that records each. [`describe_all`] registers
//! these and the families of the crates below (storage, actors), so that
//! a fresh scrape shows every family of contract §6.
//!
//! This module must never be bypassed: no family name is written anywhere
//! else in this crate.

use std::time::Duration;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

pub const SENSOR_EVENTS: &str = "parkme_sensor_events_total";
pub const BOOKINGS: &str = "parkme_bookings_total";
pub const BOOKING_LATENCY: &str = "parkme_booking_latency_seconds";
pub const WS_CONNECTIONS: &str = "parkme_ws_connections";
pub const COMMIT_QUEUE_LEN: &str = "parkme_commit_queue_len";
pub const RATE_LIMITED: &str = "parkme_rate_limited_total";
pub const HANDLER_PANICS: &str = "parkme_handler_panics_total";
pub const AUTH_FAILURES: &str = "parkme_auth_failures_total";
pub const CONNECTIONS_REFUSED: &str = "parkme_connections_refused_total";
pub const CONNECTIONS_TIMED_OUT: &str = "parkme_connections_timed_out_total";
pub const REDIS_UP: &str = "parkme_redis_up";
pub const WS_MESSAGES_IN: &str = "parkme_ws_messages_in_total";
pub const WS_MESSAGES_OUT: &str = "parkme_ws_messages_out_total";
pub const WS_ACKS: &str = "parkme_ws_acks_total";
pub const WS_CONFLATIONS: &str = "parkme_ws_conflations_total";
pub const WS_SNAPSHOT_RESENDS: &str = "parkme_ws_snapshot_resends_total";
pub const WS_MERGES_DROPPED: &str = "parkme_ws_merges_dropped_total";
pub const WS_REFUSED: &str = "parkme_ws_refused_total";
pub const DELIVERY_LATENCY: &str = "parkme_delivery_latency_seconds";
pub const CLUSTER_NODES: &str = "parkme_cluster_nodes";
pub const OWNED_FACILITIES: &str = "parkme_owned_facilities";
pub const OWNERSHIP_CHANGES: &str = "parkme_ownership_changes_total";
pub const FORWARDED_REQUESTS: &str = "parkme_forwarded_requests_total";
pub const FENCED_WRITES: &str = "parkme_fenced_writes_total";
pub const FANOUT_PUBLISHED: &str = "parkme_fanout_published_total";
pub const FANOUT_RECEIVED: &str = "parkme_fanout_received_total";
pub const FANOUT_DROPPED: &str = "parkme_fanout_dropped_total";
pub const FANOUT_RESYNCS: &str = "parkme_fanout_resyncs_total";
pub const MIRRORED_FACILITIES: &str = "parkme_mirrored_facilities";
pub const PROCESS_RSS: &str = "parkme_process_resident_memory_bytes";
pub const PROCESS_FDS: &str = "parkme_process_open_fds";
pub const RUNTIME_TASKS: &str = "parkme_runtime_alive_tasks";

/// Registers every family (this crate's, storage's and the actors'), with
/// zero values where the label sets are known.
pub fn describe_all() {
    parkme_storage::metrics::describe();
    parkme_actors::metrics::describe();
    describe_http();
    describe_sockets();
    describe_cluster();
    describe_process();
}

fn describe_process() {
    describe_gauge!(
        PROCESS_RSS,
        Unit::Bytes,
        "Resident memory of the process (VmRSS), read at each scrape."
    );
    describe_gauge!(
        PROCESS_FDS,
        "Open file descriptors of the process (sockets included), read at each scrape."
    );
    describe_gauge!(
        RUNTIME_TASKS,
        "Tasks alive on the async runtime (connections, actors, timers), read at each scrape."
    );
}

/// Reads the process's resident memory and open descriptors from
/// `/proc/self` (Linux; left unset where it is missing). Blocking: a few
/// file reads, one directory listing.
pub fn sample_process() {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        });
    if let Some(kib) = rss_kib {
        gauge!(PROCESS_RSS).set((kib * 1024) as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!(PROCESS_FDS).set(fds.count() as f64);
    }
}

/// The runtime's live task count (tokio's metrics).
pub fn runtime_tasks(alive: usize) {
    gauge!(RUNTIME_TASKS).set(alive as f64);
}

fn describe_cluster() {
    describe_gauge!(
        CLUSTER_NODES,
        "Live cluster members as of the last coordination tick (cluster mode)."
    );
    describe_gauge!(
        OWNED_FACILITIES,
        "Facilities this node owns (cluster mode)."
    );
    describe_counter!(
        OWNERSHIP_CHANGES,
        "Facilities this node started serving (acquired), handed over (released) or dropped because another node holds them (dropped)."
    );
    describe_counter!(
        FORWARDED_REQUESTS,
        "Requests served through the facility's owner node, by kind."
    );
    describe_counter!(
        FENCED_WRITES,
        "Zones whose write the store refused because a newer owner claimed them."
    );
    describe_counter!(
        FANOUT_PUBLISHED,
        "Deltas this node published to Redis for the other nodes' subscribers (cluster mode)."
    );
    describe_counter!(
        FANOUT_RECEIVED,
        "Deltas received from Redis for this node's copies of facilities owned elsewhere."
    );
    describe_counter!(
        FANOUT_DROPPED,
        "Deltas from Redis dropped because a copy's inbox was full (the copy resyncs)."
    );
    describe_counter!(
        FANOUT_RESYNCS,
        "Copies brought up to date from their owner's image: after a gap in the deltas, a Redis reconnect, or an image newer than the copy."
    );
    describe_gauge!(
        MIRRORED_FACILITIES,
        "Facilities owned elsewhere that this node keeps a copy of for its subscribers."
    );
    gauge!(CLUSTER_NODES).set(0.0);
    gauge!(OWNED_FACILITIES).set(0.0);
    gauge!(MIRRORED_FACILITIES).set(0.0);
    counter!(FANOUT_PUBLISHED).increment(0);
    counter!(FANOUT_RECEIVED).increment(0);
    counter!(FANOUT_DROPPED).increment(0);
    for reason in ["gap", "reconnect", "image"] {
        counter!(FANOUT_RESYNCS, "reason" => reason).increment(0);
    }
    for change in ["acquired", "released", "dropped"] {
        counter!(OWNERSHIP_CHANGES, "change" => change).increment(0);
    }
    for kind in ["http", "list", "sensor"] {
        counter!(FORWARDED_REQUESTS, "kind" => kind).increment(0);
    }
    counter!(FENCED_WRITES).increment(0);
}

pub fn cluster_gauges(nodes: usize, owned: usize) {
    gauge!(CLUSTER_NODES).set(nodes as f64);
    gauge!(OWNED_FACILITIES).set(owned as f64);
}

pub fn ownership_change(change: &'static str) {
    counter!(OWNERSHIP_CHANGES, "change" => change).increment(1);
}

pub fn forwarded(kind: &'static str) {
    counter!(FORWARDED_REQUESTS, "kind" => kind).increment(1);
}

pub fn fanout_published(deltas: usize) {
    counter!(FANOUT_PUBLISHED).increment(deltas as u64);
}

pub fn fanout_received() {
    counter!(FANOUT_RECEIVED).increment(1);
}

pub fn fanout_dropped() {
    counter!(FANOUT_DROPPED).increment(1);
}

pub fn fanout_resync(reason: &'static str) {
    counter!(FANOUT_RESYNCS, "reason" => reason).increment(1);
}

pub fn mirrored_facilities(copies: usize) {
    gauge!(MIRRORED_FACILITIES).set(copies as f64);
}

pub fn fenced_write() {
    counter!(FENCED_WRITES).increment(1);
}

fn describe_http() {
    describe_counter!(SENSOR_EVENTS, "Sensor messages received.");
    describe_counter!(BOOKINGS, "Booking requests by outcome.");
    describe_histogram!(
        BOOKING_LATENCY,
        Unit::Seconds,
        "Time to answer a booking request."
    );
    describe_gauge!(
        COMMIT_QUEUE_LEN,
        "Write batches waiting for the group committer."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit.");
    describe_counter!(HANDLER_PANICS, "HTTP handlers that panicked (bugs).");
    describe_counter!(
        AUTH_FAILURES,
        "Requests with credentials answered 401, counted per client address."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "TCP connections refused at a connection cap, by cap."
    );
    describe_counter!(
        CONNECTIONS_TIMED_OUT,
        "Connections cut by a timeout (header, body, idle)."
    );
    describe_gauge!(
        REDIS_UP,
        "1 while the Redis connection is up (only with PARKME_REDIS_URL)."
    );
    counter!(AUTH_FAILURES).increment(0);
    for reason in ["per_ip", "overall"] {
        counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(0);
    }
    for phase in ["header", "body", "idle"] {
        counter!(CONNECTIONS_TIMED_OUT, "phase" => phase).increment(0);
    }
    counter!(SENSOR_EVENTS).increment(0);
    for outcome in [
        "created",
        "replayed",
        "no_spot_available",
        "rejected",
        "unavailable",
    ] {
        counter!(BOOKINGS, "outcome" => outcome).increment(0);
    }
    let _ = histogram!(BOOKING_LATENCY);
}

fn describe_sockets() {
    describe_gauge!(WS_CONNECTIONS, "Open websocket connections by kind.");
    describe_counter!(
        WS_MESSAGES_IN,
        "Websocket frames received (sensor frames, app ops) by kind."
    );
    describe_counter!(WS_MESSAGES_OUT, "Websocket frames sent by kind.");
    describe_counter!(WS_ACKS, "Cumulative acks sent to sensors.");
    describe_counter!(
        WS_CONFLATIONS,
        "Deltas folded into a merged delta for a subscriber that is behind."
    );
    describe_counter!(
        WS_SNAPSHOT_RESENDS,
        "Fresh snapshots sent to subscribers that lagged, outgrew the merge bound or saw a layout change."
    );
    describe_counter!(
        WS_MERGES_DROPPED,
        "Merged deltas dropped because a slow app socket outgrew PARKME_WS_MERGE_MAX (a fresh snapshot follows)."
    );
    describe_counter!(
        WS_REFUSED,
        "App socket handshakes and ops refused by reason: sockets_per_ip, rate_limited, op_flood."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "From a delta's publication (after its commit) to its hand-off to a subscriber's socket; one delivery in 8 per connection is sampled."
    );
    for kind in ["sensor", "app"] {
        gauge!(WS_CONNECTIONS, "kind" => kind).increment(0.0);
        counter!(WS_MESSAGES_IN, "kind" => kind).increment(0);
        counter!(WS_MESSAGES_OUT, "kind" => kind).increment(0);
    }
    for family in [
        WS_ACKS,
        WS_CONFLATIONS,
        WS_SNAPSHOT_RESENDS,
        WS_MERGES_DROPPED,
    ] {
        counter!(family).increment(0);
    }
    for reason in ["sockets_per_ip", "rate_limited", "op_flood"] {
        counter!(WS_REFUSED, "reason" => reason).increment(0);
    }
    let _ = histogram!(DELIVERY_LATENCY);
}

pub fn booking_answered(outcome: &'static str, took: Duration) {
    counter!(BOOKINGS, "outcome" => outcome).increment(1);
    histogram!(BOOKING_LATENCY).record(took.as_secs_f64());
}

pub fn booking_cancelled() {
    counter!(BOOKINGS, "outcome" => "cancelled").increment(1);
}

pub fn commit_queue(len: usize) {
    gauge!(COMMIT_QUEUE_LEN).set(len as f64);
}

pub fn rate_limited() {
    counter!(RATE_LIMITED).increment(1);
}

pub fn handler_panicked() {
    counter!(HANDLER_PANICS).increment(1);
}

pub fn auth_failed() {
    counter!(AUTH_FAILURES).increment(1);
}

pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

pub fn connection_timed_out(phase: &'static str) {
    counter!(CONNECTIONS_TIMED_OUT, "phase" => phase).increment(1);
}

pub fn redis_up(up: bool) {
    gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

/// A websocket frame received on a socket of `kind` (`sensor`, `app`).
pub fn ws_frame_in(kind: &'static str) {
    counter!(WS_MESSAGES_IN, "kind" => kind).increment(1);
}

/// The counters a sensor socket bumps on every frame, looked up once per
/// socket: a registry lookup hashes the family and its labels, and under a
/// sensor flood that was about 2 % of the server's CPU.
#[derive(Debug, Clone)]
pub struct SensorSocketCounters {
    frames_in: Counter,
    events: Counter,
    acks: Counter,
}

impl SensorSocketCounters {
    pub fn new() -> Self {
        Self {
            frames_in: counter!(WS_MESSAGES_IN, "kind" => "sensor"),
            events: counter!(SENSOR_EVENTS),
            acks: counter!(WS_ACKS),
        }
    }

    /// A frame of `count` sensor messages came in.
    pub fn frame_in(&self, count: usize) {
        self.frames_in.increment(1);
        if count > 0 {
            self.events.increment(count as u64);
        }
    }

    /// A cumulative ack went out.
    pub fn ack(&self) {
        self.acks.increment(1);
    }
}

impl Default for SensorSocketCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// The handles a subscription's forwarder counts conflated and dropped
/// merges with (looked up once per subscription, not once per delta).
pub fn ws_merges() -> (Counter, Counter) {
    (counter!(WS_CONFLATIONS), counter!(WS_MERGES_DROPPED))
}

pub fn ws_snapshot_resent() {
    counter!(WS_SNAPSHOT_RESENDS).increment(1);
}

/// An app socket handshake or op refused (`sockets_per_ip`,
/// `rate_limited`, `op_flood`).
pub fn ws_refused(reason: &'static str) {
    counter!(WS_REFUSED, "reason" => reason).increment(1);
}

/// The handles a socket's writer records frames and latencies with.
pub fn ws_writer(kind: &'static str) -> (Counter, Histogram) {
    (
        counter!(WS_MESSAGES_OUT, "kind" => kind),
        histogram!(DELIVERY_LATENCY),
    )
}

/// A websocket of `kind` opened (`+1`) or closed (`-1`).
pub fn ws_connections(kind: &'static str, change: f64) {
    gauge!(WS_CONNECTIONS, "kind" => kind).increment(change);
}
