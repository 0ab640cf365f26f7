//! The checkers on hand-made logs: clean ones pass; a double booking, a
//! forgotten booking, a lost ack and a seq gap are each caught.

use super::*;

const SLACK: Micros = 500_000;

fn confirmed(id: &str, spot: &str, at: Micros, expires: Micros) -> BookingEvent {
    BookingEvent::Confirmed {
        booking: id.into(),
        facility: "f".into(),
        spot: Some(spot.into()),
        answered_at: at,
        expires_at: expires,
    }
}

fn released(id: &str, at: Micros) -> BookingEvent {
    BookingEvent::Released {
        booking: id.into(),
        sent_at: at,
    }
}

fn arrived(id: &str, at: Micros) -> BookingEvent {
    BookingEvent::Arrived {
        booking: id.into(),
        acked_at: at,
    }
}

fn spot(id: &str, state: &str, booking: Option<&str>) -> FinalSpot {
    FinalSpot {
        facility: "f".into(),
        spot: id.into(),
        state: state.into(),
        booking: booking.map(Into::into),
    }
}

const S: Micros = 1_000_000;

#[test]
fn a_clean_booking_history_passes() {
    let log = vec![
        confirmed("b1", "R-1", S, 10 * S),
        released("b1", 2 * S),
        confirmed("b2", "R-1", 3 * S, 13 * S),
        arrived("b2", 4 * S),
        released("b2", 20 * S),
        // b3 never shows: its hold expires at 5 s, then b4 takes the spot.
        confirmed("b3", "R-2", S, 5 * S),
        confirmed("b4", "R-2", 5 * S + 10, 30 * S),
    ];
    let finals = [
        spot("R-1", "AVAILABLE", None),
        spot("R-2", "RESERVED", Some("b4")),
    ];
    let verdict = check_bookings(&log, &finals, (25 * S, 26 * S), SLACK);
    assert_eq!(verdict, BookingVerdict::default());
}

#[test]
fn two_live_bookings_on_one_spot_are_caught() {
    let log = vec![
        confirmed("b1", "R-1", S, 10 * S),
        confirmed("b2", "R-1", 2 * S, 10 * S),
        released("b1", 3 * S),
    ];
    let verdict = check_bookings(&log, &[], (20 * S, 21 * S), SLACK);
    assert_eq!(verdict.double_bookings.len(), 1);
    let db = &verdict.double_bookings[0];
    assert_eq!((db.first.as_str(), db.second.as_str()), ("b1", "b2"));
    assert_eq!(db.evidence, "overlap");
}

#[test]
fn a_booking_made_before_the_previous_hold_expired_is_a_double_booking() {
    // b1 was never claimed but its hold runs to 10 s; b2 came at 4 s.
    let log = vec![
        confirmed("b1", "R-1", S, 10 * S),
        confirmed("b2", "R-1", 4 * S, 14 * S),
    ];
    let verdict = check_bookings(&log, &[], (20 * S, 21 * S), SLACK);
    assert_eq!(verdict.double_bookings.len(), 1);
}

#[test]
fn an_arrived_booking_stays_live_past_its_expiry() {
    let log = vec![
        confirmed("b1", "R-1", S, 3 * S),
        arrived("b1", 2 * S),
        // Still parked at 5 s: b2 on the same spot is a double booking.
        confirmed("b2", "R-1", 5 * S, 9 * S),
    ];
    let verdict = check_bookings(&log, &[], (20 * S, 21 * S), SLACK);
    assert_eq!(verdict.double_bookings.len(), 1);
}

#[test]
fn the_final_read_catches_another_booking_on_a_live_spot() {
    let log = vec![confirmed("b1", "R-1", S, 100 * S)];
    let finals = [spot("R-1", "RESERVED", Some("zzz"))];
    let verdict = check_bookings(&log, &finals, (20 * S, 21 * S), SLACK);
    assert_eq!(verdict.double_bookings.len(), 1);
    assert_eq!(verdict.double_bookings[0].evidence, "final_read");
}

#[test]
fn the_final_read_catches_a_forgotten_booking() {
    let log = vec![confirmed("b1", "R-1", S, 100 * S)];
    let finals = [spot("R-1", "AVAILABLE", None)];
    let verdict = check_bookings(&log, &finals, (20 * S, 21 * S), SLACK);
    assert_eq!(verdict.lost_bookings.len(), 1);
    assert!(verdict.double_bookings.is_empty());
}

#[test]
fn an_arrival_acked_after_expiry_proves_nothing() {
    // The ack came after the hold ran out: the server may have expired
    // b1 first, so a new booking on the spot at 6 s is fine.
    let log = vec![
        confirmed("b1", "R-1", S, 3 * S),
        arrived("b1", 4 * S),
        confirmed("b2", "R-1", 6 * S, 20 * S),
    ];
    let verdict = check_bookings(&log, &[], (30 * S, 31 * S), SLACK);
    assert_eq!(verdict, BookingVerdict::default());
}

#[test]
fn every_sensor_message_acked_is_no_loss() {
    let log = [
        SensorEvent::Sent {
            conn: 1,
            seq: 1,
            msg: 10,
        },
        SensorEvent::Sent {
            conn: 1,
            seq: 2,
            msg: 11,
        },
        SensorEvent::Sent {
            conn: 1,
            seq: 3,
            msg: 12,
        },
        SensorEvent::Answered { conn: 1, seq: 2 },
        SensorEvent::Acked { conn: 1, seq: 3 },
    ];
    let summary = lost_acks(&log);
    assert!(summary.lost.is_empty());
    assert_eq!(summary.settled, 3);
    assert_eq!(summary.bogus_acks, 0);
}

#[test]
fn a_message_never_acked_is_lost() {
    let log = [
        SensorEvent::Sent {
            conn: 1,
            seq: 1,
            msg: 10,
        },
        SensorEvent::Sent {
            conn: 1,
            seq: 2,
            msg: 11,
        },
        SensorEvent::Acked { conn: 1, seq: 1 },
    ];
    assert_eq!(lost_acks(&log).lost, vec![11]);
}

#[test]
fn a_resend_on_a_new_connection_settles_the_message() {
    let log = [
        SensorEvent::Sent {
            conn: 1,
            seq: 1,
            msg: 10,
        },
        SensorEvent::Sent {
            conn: 1,
            seq: 2,
            msg: 11,
        },
        SensorEvent::Acked { conn: 1, seq: 1 },
        SensorEvent::Dropped { conn: 1 },
        // An ack for the dead connection can no longer count.
        SensorEvent::Acked { conn: 1, seq: 2 },
        SensorEvent::Sent {
            conn: 2,
            seq: 1,
            msg: 11,
        },
        SensorEvent::Sent {
            conn: 2,
            seq: 2,
            msg: 12,
        },
    ];
    let summary = lost_acks(&log);
    assert_eq!(summary.lost, vec![11, 12]);
    assert_eq!(summary.bogus_acks, 1);
    let mut more = log.to_vec();
    more.push(SensorEvent::Acked { conn: 2, seq: 2 });
    assert!(lost_acks(&more).lost.is_empty());
}

#[test]
fn an_ack_beyond_what_was_sent_is_bogus() {
    let log = [
        SensorEvent::Sent {
            conn: 1,
            seq: 1,
            msg: 1,
        },
        SensorEvent::Acked { conn: 1, seq: 5 },
    ];
    assert_eq!(lost_acks(&log).bogus_acks, 1);
}

#[test]
fn a_gapless_stream_passes() {
    let log = [
        StreamEvent::Snapshot { seq: 7 },
        StreamEvent::Delta { prev: 7, seq: 8 },
        StreamEvent::Delta { prev: 8, seq: 12 }, // conflated
        StreamEvent::Snapshot { seq: 20 },       // fresh snapshot for a slow reader
        StreamEvent::Delta { prev: 20, seq: 21 },
        StreamEvent::Restarted,
        StreamEvent::Snapshot { seq: 30 },
        StreamEvent::Delta { prev: 30, seq: 31 },
    ];
    assert!(seq_gaps(&log).is_empty());
}

#[test]
fn a_skipped_seq_is_a_gap() {
    let log = [
        StreamEvent::Snapshot { seq: 7 },
        StreamEvent::Delta { prev: 7, seq: 8 },
        StreamEvent::Delta { prev: 9, seq: 10 },
        StreamEvent::Delta { prev: 10, seq: 11 },
    ];
    assert_eq!(
        seq_gaps(&log),
        vec![SeqViolation::Gap {
            expected_prev: 8,
            prev: 9,
            seq: 10
        }]
    );
}

#[test]
fn broken_streams_are_named() {
    let log = [
        StreamEvent::Delta { prev: 1, seq: 2 },
        StreamEvent::Delta { prev: 2, seq: 2 },
        StreamEvent::Snapshot { seq: 1 },
    ];
    assert_eq!(
        seq_gaps(&log),
        vec![
            SeqViolation::DeltaBeforeSnapshot { prev: 1, seq: 2 },
            SeqViolation::NotIncreasing { prev: 2, seq: 2 },
            SeqViolation::Regression { seen: 2, seq: 1 },
        ]
    );
}

#[test]
fn a_resumed_stream_continues_from_since() {
    let mut tracker = SeqTracker::default();
    assert_eq!(tracker.observe(StreamEvent::Snapshot { seq: 4 }), None);
    assert_eq!(tracker.last(), Some(4));
    // Reconnected with since=4: the next delta must start at 4.
    assert_eq!(
        tracker.observe(StreamEvent::Delta { prev: 4, seq: 9 }),
        None
    );
    assert!(
        tracker
            .observe(StreamEvent::Delta { prev: 10, seq: 11 })
            .is_some()
    );
}
