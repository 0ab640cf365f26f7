//! Group commit: one task owns the write path to the backend and turns the
//! writes of many zones, queued while the previous commit was in flight,
//! into a single durable commit (one fsync for a burst of bookings).
//!
//! Each submission is one group of the backend's
//! [`Storage::commit_groups`]: it lands whole or fails, on its own.
//! Submissions come in two [`Lane`]s. When both have groups waiting, the
//! next commit takes the oldest *interactive* groups (bookings, cancels,
//! service flags, layouts) first, with a small share of the oldest *bulk*
//! ones (sensor readings, expiry runs) so that sensors always progress: a
//! booking never waits for a full batch of sensor readings to be encoded
//! and written. Bulk groups otherwise go oldest first, at most
//! [`MAX_BULK_BATCH_WRITES`] per commit, so that a booking arriving while
//! a sensor commit is in flight waits for a short one.
//!
//! Ordering: a group is never committed before an earlier group it shares
//! a zone, a booking or an idempotency key with. Taking a group takes every
//! earlier such group along in the same commit, in submission order, so a
//! zone that submits seq `n` before seq `n + 1` never sees `n + 1` durable
//! without `n`. After a failed group every zone in it is *poisoned* for its
//! epoch: later writes of that zone fail fast until its owner recovers from
//! durable state with a new epoch, so the journal never gets a hole.
//!
//! Back-pressure: each lane holds at most [`QUEUE`] waiting submissions; a
//! submitter waits for room in its own lane only, so a sensor backlog never
//! blocks a booking's submission.
//!
//! This module must never acknowledge a write before the backend's commit
//! returned `Ok`, and never reorder two groups that share a key.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

/// Most writes folded into one backend commit.
pub const MAX_BATCH_WRITES: usize = 8192;
/// Most bytes folded into one backend commit.
pub const MAX_BATCH_BYTES: usize = 8 << 20;
/// Most writes of a commit of bulk groups alone (at least one group): a
/// booking that arrives while it is in flight waits for it, so it stays
/// short; sensor throughput needs only a few hundred writes per commit.
pub const MAX_BULK_BATCH_WRITES: usize = 1024;
/// Most bulk writes that ride along with a commit led by interactive
/// groups (at least one bulk group rides along when any waits).
pub const BULK_SHARE_WRITES: usize = 512;
/// Most submissions waiting in one lane.
pub const QUEUE: usize = 16_384;

/// Which queue a submission waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Someone waits for it: a booking, a cancel, a layout change.
    Interactive,
    /// Throughput work: sensor readings, expiry runs, rewrites.
    Bulk,
}

impl Lane {
    fn index(self) -> usize {
        match self {
            Lane::Interactive => 0,
            Lane::Bulk => 1,
        }
    }
}

#[derive(Debug)]
struct Pending {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// One waiting submission: what ordering needs to know about it, and the
/// item itself (a [`Pending`] with its lane permit in the committer).
#[derive(Debug)]
struct Entry<T> {
    lane: Lane,
    /// Hashes of the zones, bookings and idempotency keys it writes. A
    /// collision only adds an ordering constraint, never removes one.
    keys: Vec<u64>,
    writes: usize,
    bytes: usize,
    item: T,
}

#[derive(Debug)]
struct Inbox {
    entries: VecDeque<Entry<(Pending, OwnedSemaphorePermit)>>,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    lanes: [Arc<Semaphore>; 2],
    hasher: RandomState,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent queue.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses new submissions (and wakes those waiting for room with a
    /// refusal); what is queued still commits.
    fn close(&self) {
        self.inbox().closed = true;
        for lane in &self.lanes {
            lane.close();
        }
    }
}

/// A handle to the committer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    shared: Arc<Shared>,
    /// Wakes the committer; it also learns from this channel closing that
    /// every handle is gone.
    wake: mpsc::Sender<()>,
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
    /// Starts the committer. Once `shutdown` is cancelled (or every handle
    /// is dropped) it refuses new submissions, commits what is queued and
    /// stops.
    pub fn spawn(storage: Arc<dyn Storage>, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox {
                entries: VecDeque::new(),
                closed: false,
            }),
            lanes: [
                Arc::new(Semaphore::new(QUEUE)),
                Arc::new(Semaphore::new(QUEUE)),
            ],
            hasher: RandomState::new(),
        });
        let (wake, woken) = mpsc::channel(1);
        let task = tokio::spawn(run(
            Arc::clone(&storage),
            Arc::clone(&shared),
            woken,
            shutdown,
        ));
        (
            Self {
                shared,
                wake,
                storage,
            },
            task,
        )
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Queues interactive writes; see [`GroupCommit::submit_in`].
    pub async fn submit(&self, writes: Vec<Write>) -> CommitTicket {
        self.submit_in(Lane::Interactive, writes).await
    }

    /// Queues writes in `lane`; waits only for room in that lane
    /// (back-pressure), not for durability. Await the ticket for that.
    pub async fn submit_in(&self, lane: Lane, writes: Vec<Write>) -> CommitTicket {
        let (done, ticket) = oneshot::channel();
        let room = Arc::clone(&self.shared.lanes[lane.index()]);
        // A closed lane: the committer is stopping; the ticket resolves to
        // `Closed` as `done` drops.
        let Ok(permit) = room.acquire_owned().await else {
            return CommitTicket(ticket);
        };
        let keys = keys_of(&self.shared.hasher, &writes);
        let entry = Entry {
            lane,
            keys,
            writes: writes.len(),
            bytes: writes.iter().map(Write::size).sum(),
            item: (Pending { writes, done }, permit),
        };
        {
            let mut inbox = self.shared.inbox();
            if inbox.closed {
                return CommitTicket(ticket);
            }
            inbox.entries.push_back(entry);
        }
        // Full means a wake-up is already pending; closed means the
        // committer is gone and the entry's `done` resolves to `Closed`.
        let _ = self.wake.try_send(());
        CommitTicket(ticket)
    }

    /// Queues interactive writes and waits until they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        self.submit(writes).await.wait().await
    }

    /// Submissions waiting for the committer, for the queue gauge.
    pub fn queued(&self) -> usize {
        self.shared.inbox().entries.len()
    }
}

/// The ordering keys of a group: its zones, booking ids and idempotency
/// keys, hashed.
fn keys_of(hasher: &RandomState, writes: &[Write]) -> Vec<u64> {
    let mut keys: Vec<u64> = writes
        .iter()
        .map(|write| match write {
            Write::Event { zone, .. } => hasher.hash_one((0u8, zone)),
            Write::Booking { id, .. } => hasher.hash_one((1u8, id)),
            Write::Idempotency { owner, key, .. } => hasher.hash_one((2u8, owner, key)),
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

async fn run(
    storage: Arc<dyn Storage>,
    shared: Arc<Shared>,
    mut woken: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let mut poisoned: HashSet<(ZoneKey, Epoch)> = HashSet::new();
    let mut stopping = false;
    loop {
        let next = next_batch(&mut shared.inbox().entries);
        if let Some((interactive, batch)) = next {
            let mut batch: Vec<Pending> = batch
                .into_iter()
                // The lane's room frees as the submission leaves the queue.
                .map(|(pending, _permit)| pending)
                .collect();
            if interactive {
                crate::metrics::interactive_commit();
            }
            commit_batch(&*storage, &mut batch, &mut poisoned).await;
            continue;
        }
        if stopping {
            break;
        }
        tokio::select! {
            biased;
            woke = woken.recv() => {
                if woke.is_none() {
                    stopping = true;
                    shared.close();
                }
            }
            () = shutdown.cancelled() => {
                // Stop taking new work: commit what is already queued.
                stopping = true;
                shared.close();
            }
        }
    }
}

/// Takes the next commit's submissions out of `entries`, in submission
/// order; `true` when interactive groups led it. `None` when nothing waits.
fn next_batch<T>(entries: &mut VecDeque<Entry<T>>) -> Option<(bool, Vec<T>)> {
    if entries.is_empty() {
        return None;
    }
    let mut take = vec![false; entries.len()];
    let interactive = entries.iter().any(|e| e.lane == Lane::Interactive);
    let (mut writes, mut bytes) = (0, 0);
    if interactive {
        let mut bulk = 0;
        let mut taken_interactive = false;
        for (i, entry) in entries.iter().enumerate() {
            match entry.lane {
                Lane::Interactive => {
                    if taken_interactive && (writes >= MAX_BATCH_WRITES || bytes >= MAX_BATCH_BYTES)
                    {
                        break;
                    }
                    taken_interactive = true;
                    writes += entry.writes;
                    bytes += entry.bytes;
                    take[i] = true;
                }
                Lane::Bulk => {
                    if bulk == 0 || bulk + entry.writes <= BULK_SHARE_WRITES {
                        bulk += entry.writes;
                        take[i] = true;
                    }
                }
            }
        }
        // Every earlier group sharing a key with a taken one comes along,
        // transitively: one pass from the newest taken group backwards.
        let last = take.iter().rposition(|&t| t).unwrap_or(0);
        let mut needed: HashSet<u64> = HashSet::new();
        for i in (0..=last).rev() {
            let entry = &entries[i];
            if take[i] || entry.keys.iter().any(|k| needed.contains(k)) {
                take[i] = true;
                needed.extend(entry.keys.iter().copied());
            }
        }
    } else {
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 && (writes + entry.writes > MAX_BULK_BATCH_WRITES || bytes >= MAX_BATCH_BYTES)
            {
                break;
            }
            writes += entry.writes;
            bytes += entry.bytes;
            take[i] = true;
        }
    }
    let mut batch = Vec::new();
    let mut rest = VecDeque::with_capacity(entries.len());
    for (entry, taken) in entries.drain(..).zip(take) {
        if taken {
            batch.push(entry.item);
        } else {
            rest.push_back(entry);
        }
    }
    *entries = rest;
    Some((interactive, batch))
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use parkme_engine::{FacilityId, Seq, ZoneId};
    use proptest::prelude::*;

    use super::*;
    use crate::memory::MemoryStorage;

    fn entry(id: u32, lane: Lane, keys: Vec<u64>, writes: usize) -> Entry<u32> {
        Entry {
            lane,
            keys,
            writes,
            bytes: writes * 100,
            item: id,
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Submit {
            bulk: bool,
            keys: Vec<u64>,
            writes: usize,
        },
        Commit,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (any::<bool>(), prop::collection::vec(0u64..5, 1..3), 1usize..3000)
                .prop_map(|(bulk, keys, writes)| Step::Submit { bulk, keys, writes }),
            1 => Just(Step::Commit),
        ]
    }

    proptest! {
        /// Interactive groups are taken ahead of older bulk ones, yet two
        /// groups sharing a key (a zone, a booking, an idempotency key)
        /// commit in the order they were submitted, and every group
        /// commits exactly once.
        #[test]
        fn per_key_submission_order_holds_while_interactive_groups_go_first(
            steps in prop::collection::vec(step(), 1..120)
        ) {
            let mut queue: VecDeque<Entry<u32>> = VecDeque::new();
            let mut submitted: Vec<(Lane, Vec<u64>)> = Vec::new();
            let mut committed: Vec<u32> = Vec::new();
            let commit = |queue: &mut VecDeque<Entry<u32>>, committed: &mut Vec<u32>| {
                let oldest_interactive = queue
                    .iter()
                    .find(|e| e.lane == Lane::Interactive)
                    .map(|e| e.item);
                if let Some((led, batch)) = next_batch(queue) {
                    prop_assert_eq!(led, oldest_interactive.is_some());
                    if let Some(first) = oldest_interactive {
                        prop_assert!(batch.contains(&first), "the oldest interactive group waited");
                    }
                    prop_assert!(batch.windows(2).all(|w| w[0] < w[1]), "submission order within a commit");
                    committed.extend(batch);
                }
                Ok(())
            };
            for step in steps {
                match step {
                    Step::Submit { bulk, mut keys, writes } => {
                        keys.sort_unstable();
                        keys.dedup();
                        let lane = if bulk { Lane::Bulk } else { Lane::Interactive };
                        let id = submitted.len() as u32;
                        submitted.push((lane, keys.clone()));
                        queue.push_back(entry(id, lane, keys, writes));
                    }
                    Step::Commit => commit(&mut queue, &mut committed)?,
                }
            }
            while !queue.is_empty() {
                commit(&mut queue, &mut committed)?;
            }
            let mut once = committed.clone();
            once.sort_unstable();
            prop_assert_eq!(once, (0..submitted.len() as u32).collect::<Vec<_>>());
            let mut per_key: HashMap<u64, Vec<u32>> = HashMap::new();
            for id in &committed {
                for key in &submitted[*id as usize].1 {
                    per_key.entry(*key).or_default().push(*id);
                }
            }
            for (key, ids) in per_key {
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "key {} reordered: {:?}", key, ids);
            }
        }
    }

    #[test]
    fn a_bulk_backlog_commits_oldest_first_within_the_batch_limits() {
        let mut queue: VecDeque<Entry<u32>> = (0..8)
            .map(|id| entry(id, Lane::Bulk, vec![u64::from(id)], 300))
            .collect();
        // A group larger than the bulk limit still commits, alone.
        queue.push_back(entry(8, Lane::Bulk, vec![8], 5000));
        queue.push_back(entry(9, Lane::Bulk, vec![9], 300));
        let mut batches = Vec::new();
        while let Some((led, batch)) = next_batch(&mut queue) {
            assert!(!led);
            batches.push(batch);
        }
        // Three groups of 300 fit the 1,024-write limit of a bulk commit.
        assert_eq!(
            batches,
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8], vec![9]]
        );
    }

    #[test]
    fn a_booking_takes_a_small_share_of_the_sensor_backlog_along() {
        let mut queue: VecDeque<Entry<u32>> = (0..10)
            .map(|id| entry(id, Lane::Bulk, vec![u64::from(id)], 300))
            .collect();
        queue.push_back(entry(10, Lane::Interactive, vec![100], 2));
        let (led, batch) = next_batch(&mut queue).expect("a batch");
        assert!(led);
        // One bulk group of 300 writes fits the share, a second does not.
        assert_eq!(batch, vec![0, 10]);
        // A booking of a zone with readings queued takes them all along.
        queue.push_back(entry(11, Lane::Interactive, vec![5], 2));
        let (_, batch) = next_batch(&mut queue).expect("a batch");
        assert_eq!(batch, vec![1, 5, 11]);
    }

    fn zone() -> ZoneKey {
        ZoneKey::new(
            FacilityId::parse("gc-shutdown").expect("valid facility"),
            ZoneId::parse("a").expect("valid zone"),
        )
    }

    fn event(zone: &ZoneKey, epoch: Epoch, seq: u64) -> Write {
        Write::Event {
            zone: zone.clone(),
            epoch,
            seq: Seq(seq),
            bytes: vec![seq as u8],
        }
    }

    #[tokio::test]
    async fn after_shutdown_queued_writes_land_and_late_ones_are_refused() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let z = zone();
        let epoch = storage.claim_zone(&z).await.expect("claim");
        let shutdown = CancellationToken::new();
        let (commit, task) = GroupCommit::spawn(Arc::clone(&storage), shutdown.clone());
        let mut tickets = Vec::new();
        for seq in 1..=3 {
            tickets.push(
                commit
                    .submit_in(Lane::Bulk, vec![event(&z, epoch, seq)])
                    .await,
            );
        }
        tickets.push(commit.submit(vec![event(&z, epoch, 4)]).await);
        shutdown.cancel();
        task.await.expect("the committer ends");
        for ticket in tickets {
            ticket
                .wait()
                .await
                .expect("queued before shutdown: durable");
        }
        let seqs: Vec<u64> = storage
            .read_events(&z, Seq::ZERO)
            .await
            .expect("read")
            .iter()
            .map(|(seq, _)| seq.0)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        let late = commit.submit(vec![event(&z, epoch, 5)]).await;
        assert!(matches!(late.wait().await, Err(StorageError::Closed)));
        assert_eq!(commit.queued(), 0);
    }
}
