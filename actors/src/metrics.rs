//! Every metric family the actors record, named once here, with its help
//! text ([`describe`]) and the one function that records it.
//!
//! This module must never be bypassed: no family name is written anywhere
//! else in this crate.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use parkme_engine::{SpotState, ZoneCounts};

pub const ACTOR_MAILBOX_LEN: &str = "parkme_actor_mailbox_len";
pub const SPOTS: &str = "parkme_spots";
pub const ZONE_EVENTS: &str = "parkme_zone_events_total";
pub const BOOKINGS_EXPIRED: &str = "parkme_bookings_expired_total";
pub const OVERSTAYS: &str = "parkme_overstays_total";
pub const SNAPSHOT_SECONDS: &str = "parkme_snapshot_seconds";
pub const ACTOR_FAILURES: &str = "parkme_actor_failures_total";
pub const ACTOR_RESTARTS: &str = "parkme_actor_restarts_total";
pub const LAYOUT_REFUSED: &str = "parkme_layout_refused_commands_total";
pub const STORAGE_PURGED: &str = "parkme_storage_purged_total";
pub const SNAPSHOTS_BUILT: &str = "parkme_facility_snapshots_built_total";
pub const CLOCK_OFFSET: &str = "parkme_clock_offset_seconds";

/// Registers the families (help texts, and zero values where a label set
/// is known) so that a fresh scrape shows them.
pub fn describe() {
    describe_gauge!(ACTOR_MAILBOX_LEN, "Messages waiting in actor mailboxes.");
    describe_gauge!(SPOTS, "Spots by state.");
    describe_counter!(ZONE_EVENTS, "Events applied by zone actors.");
    describe_counter!(BOOKINGS_EXPIRED, "Holds that expired unclaimed.");
    describe_counter!(
        OVERSTAYS,
        "Stays still active the grace period after their ends_at (each counted once)."
    );
    describe_histogram!(
        SNAPSHOT_SECONDS,
        Unit::Seconds,
        "Time to write one zone snapshot."
    );
    describe_counter!(ACTOR_FAILURES, "Actors that failed (panic or error).");
    describe_counter!(ACTOR_RESTARTS, "Actors restarted by their supervisor.");
    describe_counter!(
        LAYOUT_REFUSED,
        "Commands refused (retryable) because a layout change held their zone too long."
    );
    describe_counter!(
        STORAGE_PURGED,
        "Records the store's upkeep forgot, by kind (expired idempotency keys, ended bookings past their retention)."
    );
    describe_counter!(
        SNAPSHOTS_BUILT,
        "Facility snapshots built for new subscribers (bounded per facility however many subscribe)."
    );
    describe_gauge!(
        CLOCK_OFFSET,
        Unit::Seconds,
        "The system clock minus the engine's clock (set from the system clock at start, then monotonic): a step of the system clock since start."
    );
    gauge!(CLOCK_OFFSET).set(0.0);
    gauge!(ACTOR_MAILBOX_LEN, "actor" => "zone").increment(0.0);
    for state in SpotState::ALL {
        gauge!(SPOTS, "state" => state.as_str()).increment(0.0);
    }
    let _ = histogram!(SNAPSHOT_SECONDS);
    counter!(OVERSTAYS).increment(0);
    counter!(SNAPSHOTS_BUILT).increment(0);
}

/// A counted request entered a zone mailbox.
pub fn mailbox_entered() {
    gauge!(ACTOR_MAILBOX_LEN, "actor" => "zone").increment(1.0);
}

/// A counted request left a zone mailbox (taken, or never delivered).
pub fn mailbox_left() {
    gauge!(ACTOR_MAILBOX_LEN, "actor" => "zone").decrement(1.0);
}

/// A zone's counts moved from `before` to `after`.
pub fn spots_changed(before: &ZoneCounts, after: &ZoneCounts) {
    for state in SpotState::ALL {
        let diff = f64::from(after.overall.get(state)) - f64::from(before.overall.get(state));
        if diff != 0.0 {
            gauge!(SPOTS, "state" => state.as_str()).increment(diff);
        }
    }
}

pub fn zone_events(applied: usize) {
    counter!(ZONE_EVENTS).increment(applied as u64);
}

pub fn bookings_expired(expired: u64) {
    if expired > 0 {
        counter!(BOOKINGS_EXPIRED).increment(expired);
    }
}

pub fn overstays(overstayed: u64) {
    if overstayed > 0 {
        counter!(OVERSTAYS).increment(overstayed);
    }
}

pub fn snapshot_written(took: Duration) {
    histogram!(SNAPSHOT_SECONDS).record(took.as_secs_f64());
}

pub fn zone_failed() {
    counter!(ACTOR_FAILURES, "actor" => "zone").increment(1);
}

pub fn zone_restarted() {
    counter!(ACTOR_RESTARTS, "actor" => "zone").increment(1);
}

pub fn layout_refused(commands: usize) {
    counter!(LAYOUT_REFUSED).increment(commands as u64);
}

pub fn purged(idempotency_keys: u64, bookings: u64) {
    counter!(STORAGE_PURGED, "kind" => "idempotency_key").increment(idempotency_keys);
    counter!(STORAGE_PURGED, "kind" => "booking").increment(bookings);
}

pub fn snapshot_built() {
    counter!(SNAPSHOTS_BUILT).increment(1);
}

/// The system clock minus the node's, in milliseconds.
pub fn clock_offset(offset_ms: i64) {
    gauge!(CLOCK_OFFSET).set(offset_ms as f64 / 1000.0);
}
