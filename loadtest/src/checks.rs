//! The invariant checkers: pure functions over event logs the harness
//! records from the outside. No clock, no I/O: times are microseconds
//! since the start of the run, on the harness's clock.
//!
//! Each checker is conservative: it only reports what the server's own
//! answers prove, so a slow server is never mistaken for a wrong one.
//! - [`check_bookings`]: two live bookings on one spot (or an
//!   acknowledged booking the server forgot).
//! - [`AckLedger`] / [`lost_acks`]: sensor messages never acknowledged.
//! - [`SeqTracker`] / [`seq_gaps`]: a subscriber's stream skipping seqs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// Microseconds since the start of the run (harness clock).
pub type Micros = u64;

// ---------------------------------------------------------------------
// Bookings
// ---------------------------------------------------------------------

/// What the server told the harness about one booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingEvent {
    /// The server answered with a confirmed booking.
    Confirmed {
        booking: String,
        facility: String,
        spot: Option<String>,
        /// When the answer arrived.
        answered_at: Micros,
        /// The booking's `expires_at`, on the harness clock.
        expires_at: Micros,
    },
    /// The car's arrival on the held spot was acknowledged by the server.
    Arrived { booking: String, acked_at: Micros },
    /// A cancel or the car leaving was sent: the earliest moment the
    /// server may have released the spot.
    Released { booking: String, sent_at: Micros },
}

/// One spot as the final `GET .../spots` showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalSpot {
    pub facility: String,
    pub spot: String,
    pub state: String,
    pub booking: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoubleBooking {
    pub facility: String,
    pub spot: String,
    pub first: String,
    pub second: String,
    /// `overlap` (both confirmed to the harness while both were live) or
    /// `final_read` (the server shows another booking on a live one's spot).
    pub evidence: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostBooking {
    pub facility: String,
    pub spot: String,
    pub booking: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BookingVerdict {
    pub double_bookings: Vec<DoubleBooking>,
    pub lost_bookings: Vec<LostBooking>,
}

#[derive(Debug, Clone)]
struct Life {
    facility: String,
    spot: String,
    answered_at: Micros,
    expires_at: Micros,
    arrived_at: Option<Micros>,
    released_at: Option<Micros>,
}

impl Life {
    /// Until when the booking is certainly live: its release, or (never
    /// arrived in time) its expiry less `slack`. `Micros::MAX` = still.
    fn certainly_live_until(&self, slack: Micros) -> Micros {
        let expiry_edge = self.expires_at.saturating_sub(slack);
        let activated = self.arrived_at.is_some_and(|a| a < expiry_edge);
        match (self.released_at, activated) {
            (Some(released), true) => released,
            (Some(released), false) => released.min(expiry_edge),
            (None, true) => Micros::MAX,
            (None, false) => expiry_edge,
        }
    }
}

fn lives(events: &[BookingEvent]) -> BTreeMap<String, Life> {
    let mut lives: BTreeMap<String, Life> = BTreeMap::new();
    for event in events {
        match event {
            BookingEvent::Confirmed {
                booking,
                facility,
                spot: Some(spot),
                answered_at,
                expires_at,
            } => {
                let life = lives.entry(booking.clone()).or_insert_with(|| Life {
                    facility: facility.clone(),
                    spot: spot.clone(),
                    answered_at: *answered_at,
                    expires_at: *expires_at,
                    arrived_at: None,
                    released_at: None,
                });
                life.answered_at = life.answered_at.min(*answered_at);
            }
            // A unit of a counter zone: no spot to double-book.
            BookingEvent::Confirmed { spot: None, .. } => {}
            BookingEvent::Arrived { booking, acked_at } => {
                if let Some(life) = lives.get_mut(booking) {
                    let first = life.arrived_at.map_or(*acked_at, |a| a.min(*acked_at));
                    life.arrived_at = Some(first);
                }
            }
            BookingEvent::Released { booking, sent_at } => {
                if let Some(life) = lives.get_mut(booking) {
                    let first = life.released_at.map_or(*sent_at, |r| r.min(*sent_at));
                    life.released_at = Some(first);
                }
            }
        }
    }
    lives
}

/// Finds double bookings and forgotten bookings.
///
/// A booking is *certainly live* from the moment its confirmation reached
/// the harness until the harness sent its cancel or its car left, or — if
/// its car never arrived before `expires_at` — until `expires_at - slack`.
/// Two bookings of one spot certainly live at the same moment are a double
/// booking. The final read (`read` = when it started and ended) must show
/// every booking certainly live through it on its spot.
pub fn check_bookings(
    events: &[BookingEvent],
    final_spots: &[FinalSpot],
    read: (Micros, Micros),
    slack: Micros,
) -> BookingVerdict {
    let lives = lives(events);
    let mut verdict = BookingVerdict::default();

    // (facility, spot) → [(certainly live from, until, booking)]
    type Intervals<'a> = BTreeMap<(&'a str, &'a str), Vec<(Micros, Micros, &'a str)>>;
    let mut by_spot: Intervals<'_> = BTreeMap::new();
    for (id, life) in &lives {
        let until = life.certainly_live_until(slack);
        if until > life.answered_at {
            by_spot
                .entry((&life.facility, &life.spot))
                .or_default()
                .push((life.answered_at, until, id));
        }
    }
    for ((facility, spot), mut intervals) in by_spot {
        intervals.sort_unstable();
        let mut holder: Option<(Micros, &str)> = None;
        for (start, end, id) in intervals {
            if let Some((held_until, first)) = holder {
                if start < held_until {
                    verdict.double_bookings.push(DoubleBooking {
                        facility: facility.to_owned(),
                        spot: spot.to_owned(),
                        first: first.to_owned(),
                        second: id.to_owned(),
                        evidence: "overlap",
                    });
                }
                if end <= held_until {
                    continue;
                }
            }
            holder = Some((end, id));
        }
    }

    let mut live_at_read: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (id, life) in &lives {
        if life.answered_at <= read.0 && life.certainly_live_until(slack) >= read.1 {
            live_at_read
                .entry((&life.facility, &life.spot))
                .or_default()
                .push(id);
        }
    }
    for spot in final_spots {
        let Some(live) = live_at_read.get(&(spot.facility.as_str(), spot.spot.as_str())) else {
            continue;
        };
        for &id in live {
            match &spot.booking {
                Some(shown) if shown == id => {}
                Some(shown) => verdict.double_bookings.push(DoubleBooking {
                    facility: spot.facility.clone(),
                    spot: spot.spot.clone(),
                    first: id.to_owned(),
                    second: shown.clone(),
                    evidence: "final_read",
                }),
                None => verdict.lost_bookings.push(LostBooking {
                    facility: spot.facility.clone(),
                    spot: spot.spot.clone(),
                    booking: id.to_owned(),
                }),
            }
        }
    }
    verdict
}

// ---------------------------------------------------------------------
// Sensor acks
// ---------------------------------------------------------------------

/// What happened on the sensor sockets. `msg` names a logical message,
/// which keeps its name when it is resent on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorEvent {
    Sent {
        conn: u32,
        seq: u64,
        msg: u64,
    },
    /// `{"t":"ack","seq"}`: everything up to `seq` on `conn` is settled.
    Acked {
        conn: u32,
        seq: u64,
    },
    /// `{"t":"error","seq"}`: that one message was answered.
    Answered {
        conn: u32,
        seq: u64,
    },
    /// The connection is gone: its outstanding seqs can never be acked.
    Dropped {
        conn: u32,
    },
}

/// Folds [`SensorEvent`]s as they happen; memory is bounded by what is
/// in flight plus what is still waiting to be resent.
#[derive(Debug, Default)]
pub struct AckLedger {
    in_flight: BTreeMap<(u32, u64), u64>,
    pending: HashSet<u64>,
    highest_sent: HashMap<u32, u64>,
    settled: u64,
    bogus_acks: u64,
}

impl AckLedger {
    pub fn record(&mut self, event: SensorEvent) {
        match event {
            SensorEvent::Sent { conn, seq, msg } => {
                self.in_flight.insert((conn, seq), msg);
                self.pending.insert(msg);
                let highest = self.highest_sent.entry(conn).or_insert(0);
                *highest = (*highest).max(seq);
            }
            SensorEvent::Acked { conn, seq } => {
                if seq > self.highest_sent.get(&conn).copied().unwrap_or(0) {
                    self.bogus_acks += 1;
                }
                let acked: Vec<(u32, u64)> = self
                    .in_flight
                    .range((conn, 0)..=(conn, seq))
                    .map(|(k, _)| *k)
                    .collect();
                for key in acked {
                    if let Some(msg) = self.in_flight.remove(&key) {
                        self.settle(msg);
                    }
                }
            }
            SensorEvent::Answered { conn, seq } => {
                if let Some(msg) = self.in_flight.remove(&(conn, seq)) {
                    self.settle(msg);
                }
            }
            SensorEvent::Dropped { conn } => {
                self.in_flight.retain(|(c, _), _| *c != conn);
                self.highest_sent.remove(&conn);
            }
        }
    }

    fn settle(&mut self, msg: u64) {
        if self.pending.remove(&msg) {
            self.settled += 1;
        }
    }

    /// Messages sent at least once and never acknowledged.
    pub fn lost(&self) -> usize {
        self.pending.len()
    }

    pub fn settled(&self) -> u64 {
        self.settled
    }

    /// Acks for seqs that were never sent on that connection.
    pub fn bogus_acks(&self) -> u64 {
        self.bogus_acks
    }

    pub fn lost_messages(&self) -> Vec<u64> {
        let mut lost: Vec<u64> = self.pending.iter().copied().collect();
        lost.sort_unstable();
        lost
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSummary {
    pub lost: Vec<u64>,
    pub settled: u64,
    pub bogus_acks: u64,
}

/// Which messages of a sensor log were never acknowledged.
pub fn lost_acks(events: &[SensorEvent]) -> AckSummary {
    let mut ledger = AckLedger::default();
    for event in events {
        ledger.record(*event);
    }
    AckSummary {
        lost: ledger.lost_messages(),
        settled: ledger.settled(),
        bogus_acks: ledger.bogus_acks(),
    }
}

// ---------------------------------------------------------------------
// Subscriber seqs
// ---------------------------------------------------------------------

/// What one subscription (one facility on one stream) received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    Snapshot {
        seq: u64,
    },
    Delta {
        prev: u64,
        seq: u64,
    },
    /// A new connection subscribed again without `since`: a snapshot
    /// must come first.
    Restarted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SeqViolation {
    /// A delta's `prev` is not the seq of the message before it.
    Gap {
        expected_prev: u64,
        prev: u64,
        seq: u64,
    },
    /// A delta that does not move forward.
    NotIncreasing { prev: u64, seq: u64 },
    /// A snapshot older than something already received.
    Regression { seen: u64, seq: u64 },
    /// A delta with nothing before it to apply to.
    DeltaBeforeSnapshot { prev: u64, seq: u64 },
}

/// Follows one subscription; resumes (`since`) keep its state.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    last: Option<u64>,
    highest: u64,
}

impl SeqTracker {
    /// The seq to resume from (`since`), if any message was received.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    pub fn observe(&mut self, event: StreamEvent) -> Option<SeqViolation> {
        match event {
            StreamEvent::Snapshot { seq } => {
                let seen = self.highest;
                self.last = Some(seq);
                self.highest = self.highest.max(seq);
                (seq < seen).then_some(SeqViolation::Regression { seen, seq })
            }
            StreamEvent::Delta { prev, seq } => {
                let before = self.last;
                self.last = Some(seq);
                self.highest = self.highest.max(seq);
                if seq <= prev {
                    return Some(SeqViolation::NotIncreasing { prev, seq });
                }
                match before {
                    None => Some(SeqViolation::DeltaBeforeSnapshot { prev, seq }),
                    Some(expected_prev) if expected_prev != prev => Some(SeqViolation::Gap {
                        expected_prev,
                        prev,
                        seq,
                    }),
                    Some(_) => None,
                }
            }
            StreamEvent::Restarted => {
                self.last = None;
                None
            }
        }
    }
}

/// Every seq violation in one subscription's log.
pub fn seq_gaps(events: &[StreamEvent]) -> Vec<SeqViolation> {
    let mut tracker = SeqTracker::default();
    events.iter().filter_map(|e| tracker.observe(*e)).collect()
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
