//! A zone's pump: the task that waits for each queued commit in order and
//! then answers the caller (a typed [`Pending`] reply, no closures),
//! reports the change to the facility and writes due snapshots.
//!
//! This module must never answer a caller before the commit behind the
//! answer returned, and never reorder answers: one queue, one task.

use std::sync::Arc;

use parkme_engine::{Booking, Seq, SpotView};
use parkme_storage::group_commit::{CommitTicket, Lane};
use parkme_storage::{Epoch, GroupCommit, StorageError, ZoneKey};
use ractor::{ActorRef, DerivedActorRef};
use tokio::sync::{mpsc, oneshot};

use super::{Reply, ZoneMsg};
use crate::error::ActorError;
use crate::metrics;
use crate::publish::ZoneReport;

/// Who waits for a queued commit, and what they are told once it is
/// durable. Answered exactly once, by the pump (or at once when the pump
/// is gone).
#[derive(Debug)]
pub(super) enum Pending {
    /// Nobody waits (an expiry run): `expired` holds it counted.
    /// A timer tick: the holds it expired and the stays it found
    /// overstaying, counted once durable.
    Expiry { expired: u64, overstayed: u64 },
    /// A booking or a cancellation: the booking as it now stands.
    Booking {
        reply: Reply<Booking>,
        booking: Option<Booking>,
    },
    /// A spot's service flag: the spot as it now stands.
    Spot {
        reply: Reply<SpotView>,
        view: Option<SpotView>,
    },
    /// Sensor readings: one result each, refusals already in place.
    Sense {
        reply: oneshot::Sender<Vec<Result<(), ActorError>>>,
        results: Vec<Result<(), ActorError>>,
    },
    /// A prepared layout change: the seq it was checked at.
    Prepared { reply: Reply<Seq>, seq: Seq },
    /// A committed layout change: the zone's full state in it.
    Committed {
        reply: Reply<ZoneReport>,
        change: Box<ZoneReport>,
    },
}

impl Pending {
    /// The group committer's lane for this commit: sensor readings and
    /// expiry runs are bulk; whatever a person waits for goes first.
    pub(super) fn lane(&self) -> Lane {
        match self {
            Pending::Sense { .. } | Pending::Expiry { .. } => Lane::Bulk,
            Pending::Booking { .. }
            | Pending::Spot { .. }
            | Pending::Prepared { .. }
            | Pending::Committed { .. } => Lane::Interactive,
        }
    }

    /// Tells the caller how its commit ended.
    pub(super) fn answer(self, result: Result<(), StorageError>) {
        let result = result.map_err(storage_error);
        let unavailable = || ActorError::Unavailable("zone");
        match self {
            Pending::Expiry {
                expired,
                overstayed,
            } => {
                if result.is_ok() {
                    metrics::bookings_expired(expired);
                    metrics::overstays(overstayed);
                }
            }
            Pending::Booking { reply, booking } => {
                let _ = reply.send(result.and_then(|()| booking.ok_or_else(unavailable)));
            }
            Pending::Spot { reply, view } => {
                let _ = reply.send(result.and_then(|()| view.ok_or_else(unavailable)));
            }
            Pending::Sense { reply, results } => {
                let results = match result {
                    Ok(()) => results,
                    Err(e) => vec![Err(e); results.len()],
                };
                let _ = reply.send(results);
            }
            Pending::Prepared { reply, seq } => {
                let _ = reply.send(result.map(|()| seq));
            }
            Pending::Committed { reply, change } => {
                let _ = reply.send(result.map(|()| *change));
            }
        }
    }
}

/// What a storage failure means for the caller.
pub(super) fn storage_error(e: StorageError) -> ActorError {
    match e {
        // A newer incarnation of this zone (a restart) claimed it before
        // this write landed: the request did not happen and may be retried.
        StorageError::Fenced { .. } => ActorError::Unavailable("zone"),
        e => ActorError::Storage(e),
    }
}

/// One queued commit and what follows it.
#[derive(Debug)]
pub(super) struct PumpItem {
    /// `None`: nothing of its own to commit, but its answer rests on every
    /// earlier commit.
    pub(super) ticket: Option<CommitTicket>,
    pub(super) change: Option<ZoneReport>,
    pub(super) snapshot: Option<(Seq, Vec<u8>)>,
    pub(super) pending: Pending,
}

/// Where the pump sends what it learns.
#[derive(Debug)]
pub(super) struct PumpTargets {
    pub(super) zone: ActorRef<ZoneMsg>,
    pub(super) reports: DerivedActorRef<ZoneReport>,
    pub(super) commit: GroupCommit,
    pub(super) key: ZoneKey,
    pub(super) epoch: Epoch,
}

/// Writes one snapshot, timing it.
pub(super) async fn write_snapshot(
    storage: &dyn parkme_storage::Storage,
    key: &ZoneKey,
    epoch: Epoch,
    seq: Seq,
    bytes: Vec<u8>,
) {
    let started = std::time::Instant::now();
    match storage.put_snapshot(key, epoch, seq, bytes).await {
        Ok(()) => metrics::snapshot_written(started.elapsed()),
        Err(e) => tracing::warn!(zone = %key, error = %e, "snapshot failed"),
    }
}

/// Runs until the zone closes its queue; says whether every commit it saw
/// succeeded.
pub(super) async fn pump(mut items: mpsc::UnboundedReceiver<PumpItem>, to: PumpTargets) -> bool {
    let mut failed = false;
    // Snapshot writes run beside the pump; it waits for them before it
    // ends, so a stopped zone writes nothing afterwards.
    let mut snapshots = tokio::task::JoinSet::new();
    while let Some(item) = items.recv().await {
        while snapshots.try_join_next().is_some() {}
        let result = match item.ticket {
            Some(ticket) => ticket.wait().await,
            None if failed => Err(StorageError::Poisoned(to.key.to_string())),
            None => Ok(()),
        };
        match &result {
            Ok(()) => {
                if let Some(change) = item.change {
                    let _ = to.reports.send_message(change);
                }
                if let Some((seq, bytes)) = item.snapshot {
                    let storage = Arc::clone(to.commit.storage());
                    let (key, epoch) = (to.key.clone(), to.epoch);
                    snapshots.spawn(async move {
                        write_snapshot(storage.as_ref(), &key, epoch, seq, bytes).await;
                    });
                }
            }
            Err(e) if !failed => {
                failed = true;
                let _ = to.zone.send_message(ZoneMsg::CommitFailed(e.clone()));
            }
            Err(_) => {}
        }
        item.pending.answer(result);
    }
    while snapshots.join_next().await.is_some() {}
    !failed
}
