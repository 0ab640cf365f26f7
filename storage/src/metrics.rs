//! Every metric family storage records, named once here with its help
//! text ([`describe`]) and the function that records it.
//!
//! This module must never be bypassed: no family name is written anywhere
//! else in this crate.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

pub const JOURNAL_WRITE_SECONDS: &str = "parkme_journal_write_seconds";
pub const JOURNAL_WRITES: &str = "parkme_journal_writes_total";
pub const JOURNAL_COMMITS: &str = "parkme_journal_commits_total";
pub const CHECKPOINT_SECONDS: &str = "parkme_checkpoint_seconds";
pub const FENCED_WRITES: &str = "parkme_fenced_writes_total";
pub const JOURNAL_INTERACTIVE_COMMITS: &str = "parkme_journal_interactive_commits_total";

/// Registers the families so that a fresh scrape shows them.
pub fn describe() {
    describe_histogram!(
        JOURNAL_WRITE_SECONDS,
        Unit::Seconds,
        "Time of one durable group commit."
    );
    describe_counter!(JOURNAL_WRITES, "Writes made durable by group commits.");
    describe_counter!(JOURNAL_COMMITS, "Durable group commits.");
    describe_histogram!(
        CHECKPOINT_SECONDS,
        Unit::Seconds,
        "Time to checkpoint the embedded store's write-ahead log."
    );
    describe_counter!(
        FENCED_WRITES,
        "Commits refused because a newer writer owns the zone."
    );
    describe_counter!(
        JOURNAL_INTERACTIVE_COMMITS,
        "Group commits led by interactive writes (bookings, cancels, layouts) taken ahead of queued bulk writes."
    );
    let _ = histogram!(JOURNAL_WRITE_SECONDS, "backend" => "embedded");
}

/// One group commit of `writes` writes on `backend`.
pub fn group_committed(backend: &'static str, writes: usize, took: Duration) {
    histogram!(JOURNAL_WRITE_SECONDS, "backend" => backend).record(took.as_secs_f64());
    counter!(JOURNAL_WRITES, "backend" => backend).increment(writes as u64);
    counter!(JOURNAL_COMMITS, "backend" => backend).increment(1);
}

pub fn checkpointed(took: Duration) {
    histogram!(CHECKPOINT_SECONDS).record(took.as_secs_f64());
}

pub fn fenced() {
    counter!(FENCED_WRITES).increment(1);
}

/// A group commit that interactive groups led.
pub fn interactive_commit() {
    counter!(JOURNAL_INTERACTIVE_COMMITS).increment(1);
}
