//! Group commit: one task owns the write path to the backend and turns the
//! writes of many zones, queued while the previous commit was in flight,
//! into a single durable commit (one fsync for a burst of bookings).
//!
//! Each submission is one group of the backend's
//! [`Storage::commit_groups`]: it lands whole or fails, on its own.
//! Ordering: writes are committed in submission order, so a zone that
//! submits seq `n` before seq `n + 1` never sees `n + 1` durable without
//! `n`. After a failed group every zone in it is *poisoned* for its epoch:
//! later writes of that zone fail fast until its owner recovers from durable
//! state with a new epoch, so the journal never gets a hole.
//!
//! This module must never acknowledge a write before the backend's commit
//! returned `Ok`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

/// Most writes folded into one backend commit.
pub const MAX_BATCH_WRITES: usize = 8192;
/// Most bytes folded into one backend commit.
pub const MAX_BATCH_BYTES: usize = 8 << 20;
const QUEUE: usize = 16_384;

#[derive(Debug)]
struct Pending {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// A handle to the committer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
    storage: Arc<dyn Storage>,
}

/// Resolves when the submitted writes are durable (or failed).
#[derive(Debug)]
pub struct CommitTicket(oneshot::Receiver<Result<(), StorageError>>);

impl CommitTicket {
    pub async fn wait(self) -> Result<(), StorageError> {
        self.0.await.unwrap_or(Err(StorageError::Closed))
    }
}

impl GroupCommit {
    /// Starts the committer. It drains what is queued and stops once
    /// `shutdown` is cancelled and every handle is dropped.
    pub fn spawn(storage: Arc<dyn Storage>, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(Arc::clone(&storage), rx, shutdown));
        (Self { tx, storage }, task)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Queues writes; waits only for queue space (back-pressure), not for
    /// durability. Await the ticket for that.
    pub async fn submit(&self, writes: Vec<Write>) -> CommitTicket {
        let (done, rx) = oneshot::channel();
        // If the committer is gone the ticket resolves to `Closed`.
        let _ = self.tx.send(Pending { writes, done }).await;
        CommitTicket(rx)
    }

    /// Queues writes and waits until they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        self.submit(writes).await.wait().await
    }

    /// Writes waiting for the committer, for the queue gauge.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<Pending>,
    shutdown: CancellationToken,
) {
    let mut poisoned: HashSet<(ZoneKey, Epoch)> = HashSet::new();
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            next = rx.recv() => next,
            () = shutdown.cancelled() => {
                // Stop taking new work: commit what is already queued.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        let mut bytes = 0;
        while writes_len(&batch) < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.writes.iter().map(Write::size).sum::<usize>();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        commit_batch(&*storage, &mut batch, &mut poisoned).await;
    }
}

fn writes_len(batch: &[Pending]) -> usize {
    batch.iter().map(|p| p.writes.len()).sum()
}

/// Commits the queued submissions as one group commit: each submission is
/// one group with its own outcome, so a fenced zone fails only its own
/// callers.
async fn commit_batch(
    storage: &dyn Storage,
    batch: &mut Vec<Pending>,
    poisoned: &mut HashSet<(ZoneKey, Epoch)>,
) {
    // Refuse writes of poisoned zones before they reach the backend.
    let mut accepted = Vec::with_capacity(batch.len());
    for pending in batch.drain(..) {
        let hit = pending
            .writes
            .iter()
            .filter_map(Write::zone)
            .find(|(zone, epoch)| poisoned.contains(&((*zone).clone(), *epoch)));
        match hit {
            Some((zone, _)) => {
                let _ = pending
                    .done
                    .send(Err(StorageError::Poisoned(zone.to_string())));
            }
            None => accepted.push(pending),
        }
    }
    if accepted.is_empty() {
        return;
    }
    let groups: Vec<&[Write]> = accepted.iter().map(|p| p.writes.as_slice()).collect();
    let writes: usize = groups.iter().map(|g| g.len()).sum();
    let started = Instant::now();
    let outcomes = storage.commit_groups(&groups).await;
    debug_assert_eq!(outcomes.len(), groups.len());
    crate::metrics::group_committed(storage.name(), writes, started.elapsed());
    let mut outcomes = outcomes.into_iter();
    for pending in accepted {
        // A backend that answered fewer groups than it was given has not
        // made the rest durable.
        let result = outcomes
            .next()
            .unwrap_or_else(|| Err(StorageError::Unavailable("no commit outcome".into())));
        if let Err(e) = &result {
            if matches!(e, StorageError::Fenced { .. }) {
                crate::metrics::fenced();
            }
            tracing::error!(error = %e, writes = pending.writes.len(), "group commit failed");
            for (zone, epoch) in pending.writes.iter().filter_map(Write::zone) {
                poisoned.insert((zone.clone(), epoch));
            }
        }
        let _ = pending.done.send(result);
    }
}
