//! Cumulative acks of one sensor connection.
//!
//! `ack(S)` promises that every message received so far with `seq <= S`
//! is durable or was answered with an error. Messages are dispatched in
//! batches (one per frame or group of frames); a batch is *pending* until
//! the node has answered all of it. Seqs may come out of order or repeat:
//! the ack is the largest settled seq below the smallest seq still
//! pending, and never goes back.
//!
//! This module must never ack a seq while a message with that seq or a
//! lower one is still pending.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct AckTracker {
    /// Smallest seq of each pending batch (a multiset).
    pending: BTreeMap<u64, u32>,
    /// Seqs settled above the last ack (the largest of each batch).
    settled: BTreeSet<u64>,
    /// Last ack sent.
    acked: Option<u64>,
    /// A settled message was at or below the last ack (a resend): worth
    /// repeating the ack even if it does not move.
    repeat: bool,
}

/// The seqs of one dispatched batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub min: u64,
    pub max: u64,
}

impl Span {
    pub fn of(seqs: impl IntoIterator<Item = u64>) -> Option<Span> {
        seqs.into_iter().fold(None, |span, seq| {
            Some(match span {
                None => Span { min: seq, max: seq },
                Some(Span { min, max }) => Span {
                    min: min.min(seq),
                    max: max.max(seq),
                },
            })
        })
    }
}

impl AckTracker {
    /// A batch was dispatched: its messages are pending.
    pub fn dispatched(&mut self, span: Span) {
        *self.pending.entry(span.min).or_insert(0) += 1;
    }

    /// A dispatched batch was answered (durable or refused).
    pub fn answered(&mut self, span: Span) {
        match self.pending.get_mut(&span.min) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.pending.remove(&span.min);
            }
            None => debug_assert!(false, "answered a batch that was not pending"),
        }
        if self.acked.is_some_and(|acked| span.min <= acked) {
            self.repeat = true;
        }
        self.settled(span.max);
    }

    /// One message was answered at once (refused before dispatch).
    pub fn settled(&mut self, seq: u64) {
        if self.acked.is_some_and(|acked| seq <= acked) {
            self.repeat = true;
        } else {
            self.settled.insert(seq);
        }
    }

    /// The ack to send now, if any: the largest settled seq below every
    /// pending one when it moves forward, or the last ack again when a
    /// resent message settled without moving it.
    pub fn next_ack(&mut self) -> Option<u64> {
        let repeat = std::mem::take(&mut self.repeat);
        let candidate = match self.pending.first_key_value() {
            Some((&lowest_pending, _)) => self.settled.range(..lowest_pending).next_back(),
            None => self.settled.last(),
        }
        .copied();
        match candidate {
            Some(seq) => {
                debug_assert!(self.acked.is_none_or(|acked| seq > acked));
                self.settled = self.settled.split_off(&seq);
                self.settled.remove(&seq);
                self.acked = Some(seq);
                Some(seq)
            }
            None if repeat => self.acked,
            None => None,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(min: u64, max: u64) -> Span {
        Span { min, max }
    }

    #[test]
    fn in_order_batches_ack_as_they_settle() {
        let mut acks = AckTracker::default();
        acks.dispatched(span(1, 10));
        acks.dispatched(span(11, 20));
        assert_eq!(acks.next_ack(), None);
        acks.answered(span(1, 10));
        assert_eq!(acks.next_ack(), Some(10));
        assert_eq!(acks.next_ack(), None);
        acks.answered(span(11, 20));
        assert_eq!(acks.next_ack(), Some(20));
        assert!(acks.is_idle());
    }

    #[test]
    fn a_lower_seq_still_pending_holds_the_ack_back() {
        let mut acks = AckTracker::default();
        acks.dispatched(span(5, 5));
        acks.dispatched(span(3, 3));
        acks.answered(span(5, 5));
        // 3 is pending, so nothing at or above 3 may be acked.
        assert_eq!(acks.next_ack(), None);
        acks.answered(span(3, 3));
        assert_eq!(acks.next_ack(), Some(5));
    }

    #[test]
    fn nothing_is_acked_while_seq_zero_is_pending() {
        let mut acks = AckTracker::default();
        acks.dispatched(span(0, 4));
        acks.settled(9);
        assert_eq!(acks.next_ack(), None);
        acks.answered(span(0, 4));
        assert_eq!(acks.next_ack(), Some(9));
    }

    #[test]
    fn refused_messages_count_as_answered() {
        let mut acks = AckTracker::default();
        acks.settled(1);
        assert_eq!(acks.next_ack(), Some(1));
        acks.dispatched(span(2, 3));
        acks.settled(4);
        assert_eq!(acks.next_ack(), None);
        acks.answered(span(2, 3));
        assert_eq!(acks.next_ack(), Some(4));
    }

    #[test]
    fn a_resent_seq_is_applied_and_acked_again_never_backwards() {
        let mut acks = AckTracker::default();
        acks.dispatched(span(1, 8));
        acks.answered(span(1, 8));
        assert_eq!(acks.next_ack(), Some(8));
        acks.dispatched(span(3, 3));
        acks.answered(span(3, 3));
        assert_eq!(acks.next_ack(), Some(8));
        assert_eq!(acks.next_ack(), None);
    }
}
