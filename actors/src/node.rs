//! The node: every facility this process serves, and the API the edge
//! calls. It starts facility actors from storage at boot, routes bookings
//! and sensor readings to the zone actor that owns them, and stops
//! everything in order at shutdown.
//!
//! This module must never mutate zone state itself: it only sends
//! messages to the actors that own it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use parkme_engine::{
    EngineError, FacilityId, FacilityLayout, Millis, Reading, Seq, SpotId, SpotView, ZoneId,
    ZoneParams,
};
use parkme_storage::{GroupCommit, Storage};
use ractor::{Actor, ActorRef};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::ActorError;
use crate::facility::{FacilityActor, FacilityArgs, FacilityMsg, FacilityShared, Routes};
use crate::metrics;
use crate::publish::{FacilityView, Subscription};
use crate::record::{FacilityRecord, hash_key};
use crate::zone::{self, ZoneContext, ZoneMsg};

mod booking;
mod history;
mod keys;

pub use booking::{BookParams, Booked, new_booking_id};
pub use keys::{KeyCheck, SensorGrant, SensorKey};

/// Tunables of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Secret from which sensor keys are derived (never stored).
    pub key_secret: Vec<u8>,
    /// A zone writes a snapshot after this many events.
    pub snapshot_every: u64,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl_secs: u32,
    /// Days the record of an ended booking (completed, expired, cancelled)
    /// is kept after it ended.
    pub booking_retention_days: u32,
    /// How often the store's upkeep runs (and once at start).
    pub upkeep_every: std::time::Duration,
    /// Sensor staleness, reservation lead time and overstay grace of every
    /// zone (contract §2.1–2.3).
    pub zone_params: ZoneParams,
    /// How often each served facility's counts are sampled into the
    /// history (contract §3.1: each minute).
    pub history_every: std::time::Duration,
    /// Days a history sample is kept (`PARKME_HISTORY_DAYS`).
    pub history_days: u32,
    /// Cluster mode: the node starts no facility by itself; the cluster's
    /// ownership decides which it serves ([`Node::acquire`],
    /// [`Node::release`], [`Node::drop_facility`]).
    pub cluster: bool,
    /// Cluster mode: facilities whose writes the store refused as fenced
    /// are reported here (their zones stop instead of restarting).
    pub fenced: Option<tokio::sync::mpsc::UnboundedSender<Fenced>>,
}

/// A zone's report that the store refused its write as fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    pub facility: FacilityId,
    /// The start of the facility on this node the zone belonged to.
    pub instance: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            key_secret: Vec::new(),
            snapshot_every: 1024,
            idempotency_ttl_secs: 48 * 3600,
            booking_retention_days: 400,
            upkeep_every: std::time::Duration::from_secs(3600),
            zone_params: ZoneParams::default(),
            history_every: std::time::Duration::from_secs(60),
            history_days: 35,
            cluster: false,
            fenced: None,
        }
    }
}

#[derive(Debug)]
struct FacilityHandle {
    actor: ActorRef<FacilityMsg>,
    shared: Arc<FacilityShared>,
    /// The current sensor key; sensor sockets watch it to close when the
    /// key they came with is revoked.
    sensor_key: watch::Sender<SensorKey>,
    /// Serializes the writers of this facility's record (layout PUT, key
    /// rotation), so neither writes a stale key generation.
    record_writes: tokio::sync::Mutex<()>,
    /// This start of the facility on this node.
    instance: u64,
}

#[derive(Debug)]
struct Inner {
    commit: GroupCommit,
    clock: Clock,
    config: NodeConfig,
    facilities: RwLock<HashMap<FacilityId, Arc<FacilityHandle>>>,
    /// Which facility each current sensor key hash belongs to: tells
    /// another facility's key from a wrong one with one lookup.
    key_owners: RwLock<HashMap<[u8; 32], FacilityId>>,
    /// Serializes idempotent retries of one key (striped).
    idempotency_locks: Vec<tokio::sync::Mutex<()>>,
    /// Serializes the creation of facilities, so two PUTs of one new
    /// facility never start it twice.
    creating: tokio::sync::Mutex<()>,
    /// Cluster mode: every facility in the store as last listed (each
    /// coordination tick), served here or not.
    known: RwLock<std::collections::BTreeSet<FacilityId>>,
    /// Numbers the starts of facilities on this node.
    instances: std::sync::atomic::AtomicU64,
    #[cfg(feature = "testing")]
    probe: crate::probe::Probe,
    /// Tells the committer to drain and stop, once the actors are gone.
    close_commits: CancellationToken,
    /// Stops the periodic upkeep.
    stopping: CancellationToken,
    /// The upkeep task, awaited at stop so nothing holds the store after.
    /// The upkeep and history sampler tasks.
    upkeep: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Ends the upkeep task if the node is dropped without a stop.
    _upkeep_guard: tokio_util::sync::DropGuard,
}

/// A cheap-to-clone handle to the node.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// Runs the store's upkeep (expired idempotency keys, ended bookings past
/// their retention) at start and then every `every`, until `stopping`.
async fn upkeep(
    storage: Arc<dyn Storage>,
    clock: Clock,
    every: std::time::Duration,
    stopping: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        match storage.upkeep(clock.now()).await {
            Ok(done) => {
                metrics::purged(done.idempotency_keys, done.bookings);
                if done.idempotency_keys + done.bookings > 0 {
                    tracing::info!(
                        idempotency_keys = done.idempotency_keys,
                        bookings = done.bookings,
                        "storage upkeep forgot expired records"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "storage upkeep failed; will retry"),
        }
    }
}

/// How far the system clock may move from the node's before a step is
/// logged again.
const CLOCK_STEP_MS: i64 = 1_000;

/// Watches the system clock against the node's once a second, until
/// `stopping`: exports the offset and logs each step of a second or more
/// (the node keeps its own time: see [`crate::clock`]).
async fn watch_clock(clock: Clock, stopping: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = 0i64;
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        let offset = clock.offset();
        metrics::clock_offset(offset);
        if offset.saturating_sub(reported).abs() >= CLOCK_STEP_MS {
            tracing::warn!(
                offset_ms = offset,
                "the system clock moved away from the engine's clock; holds, stays and \
                 expiries keep the engine's clock (the system clock read at start, then \
                 monotonic time), which takes the system time again at the next restart"
            );
            reported = offset;
        }
    }
}

async fn ask<T>(
    actor: &ActorRef<FacilityMsg>,
    make: impl FnOnce(oneshot::Sender<T>) -> FacilityMsg,
) -> Result<T, ActorError> {
    let (tx, rx) = oneshot::channel();
    actor
        .send_message(make(tx))
        .map_err(|_| ActorError::Unavailable("facility"))?;
    rx.await.map_err(|_| ActorError::Unavailable("facility"))
}

impl Node {
    /// Starts the committer and every stored facility. The committer runs
    /// until [`Node::stop`] has stopped every actor, so requests accepted
    /// before a shutdown still commit.
    pub async fn start(
        storage: Arc<dyn Storage>,
        config: NodeConfig,
    ) -> Result<(Node, JoinHandle<()>), ActorError> {
        let close_commits = CancellationToken::new();
        let stopping = CancellationToken::new();
        let (commit, committer) = GroupCommit::spawn(storage, close_commits.clone());
        let node = Node {
            inner: Arc::new(Inner {
                commit,
                clock: Clock::new(),
                config,
                facilities: RwLock::new(HashMap::new()),
                key_owners: RwLock::new(HashMap::new()),
                idempotency_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
                creating: tokio::sync::Mutex::new(()),
                known: RwLock::new(std::collections::BTreeSet::new()),
                instances: std::sync::atomic::AtomicU64::new(1),
                #[cfg(feature = "testing")]
                probe: crate::probe::Probe::default(),
                close_commits,
                _upkeep_guard: stopping.clone().drop_guard(),
                stopping,
                upkeep: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let task = tokio::spawn(upkeep(
            Arc::clone(node.inner.commit.storage()),
            node.inner.clock,
            node.inner.config.upkeep_every,
            node.inner.stopping.clone(),
        ));
        let sampler = tokio::spawn(history::sampler(
            Arc::downgrade(&node.inner),
            node.inner.config.history_every,
            node.inner.stopping.clone(),
        ));
        let clock = tokio::spawn(watch_clock(node.inner.clock, node.inner.stopping.clone()));
        *node.inner.upkeep.lock().unwrap_or_else(|e| e.into_inner()) = vec![task, sampler, clock];
        if node.inner.config.cluster {
            return Ok((node, committer));
        }
        let stored = node.inner.commit.storage().facilities().await?;
        for (id, bytes) in stored {
            let record = FacilityRecord::decode(&bytes)
                .map_err(|e| ActorError::Corrupt(format!("facility {id}: {e}")))?;
            node.spawn_facility(record, None).await?;
        }
        Ok((node, committer))
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.inner.commit.storage()
    }

    /// How long an ended booking's record is kept after it ended (ms).
    pub fn booking_retention_ms(&self) -> i64 {
        self.context().booking_retention_ms
    }

    /// Writes queued on the group committer.
    pub fn commit_queue(&self) -> usize {
        self.inner.commit.queued()
    }

    fn context(&self) -> ZoneContext {
        ZoneContext {
            commit: self.inner.commit.clone(),
            clock: self.inner.clock,
            snapshot_every: self.inner.config.snapshot_every.max(1),
            booking_retention_ms: i64::from(self.inner.config.booking_retention_days)
                .saturating_mul(86_400_000),
            params: self.inner.config.zone_params,
            fenced: self.inner.config.fenced.clone(),
            instance: 0,
        }
    }

    /// Starts a facility from its record; `fence`: the record fence claimed
    /// for this start (cluster mode).
    async fn spawn_facility(
        &self,
        record: FacilityRecord,
        fence: Option<parkme_storage::Epoch>,
    ) -> Result<(), ActorError> {
        let id = record.layout.id.clone();
        let key = SensorKey {
            generation: record.sensor_key_generation,
            hash: record.sensor_key_hash,
        };
        let shared = Arc::new(FacilityShared {
            routes: RwLock::new(Arc::new(Routes::default())),
            fence,
        });
        let instance = self
            .inner
            .instances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut context = self.context();
        context.instance = instance;
        let args = FacilityArgs {
            record,
            context,
            shared: Arc::clone(&shared),
            #[cfg(feature = "testing")]
            probe: self.inner.probe.clone(),
        };
        let (actor, _) = Actor::spawn(None, FacilityActor, args).await.map_err(|e| {
            tracing::error!(facility = %id, error = %e, "facility failed to start");
            ActorError::Unavailable("facility")
        })?;
        ask(&actor, FacilityMsg::Ready).await?;
        let handle = Arc::new(FacilityHandle {
            actor,
            shared,
            sensor_key: watch::Sender::new(key),
            record_writes: tokio::sync::Mutex::new(()),
            instance,
        });
        self.inner
            .facilities
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), handle);
        self.own_key(&id, None, key);
        Ok(())
    }

    fn handle(&self, id: &FacilityId) -> Result<Arc<FacilityHandle>, ActorError> {
        self.inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| {
                let known = || {
                    self.inner
                        .known
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(id)
                };
                if self.inner.config.cluster && known() {
                    // Served by another node, or moving: the edge routes
                    // around this; a request caught by a move may retry.
                    ActorError::Unavailable("facility")
                } else {
                    ActorError::UnknownFacility(id.to_string())
                }
            })
    }

    /// Whether a fenced report is about the start of the facility this
    /// node serves now (not an older one, still stopping).
    pub fn is_current(&self, fenced: &Fenced) -> bool {
        self.handle_if_local(&fenced.facility)
            .is_some_and(|h| h.instance == fenced.instance)
    }

    /// Whether this node serves `id` now.
    pub fn serves(&self, id: &FacilityId) -> bool {
        self.inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// Cluster mode: this node holds `id`'s lease; start serving it from
    /// the store (its zones claim their epochs before they read their
    /// journals, fencing any older writer). Returns the facility's epoch:
    /// the highest epoch its zones claimed, which grows with every claim.
    pub async fn acquire(&self, id: &FacilityId) -> Result<u64, ActorError> {
        let handle = match self.handle_if_local(id) {
            Some(handle) => handle,
            None => {
                let _creating = self.inner.creating.lock().await;
                match self.handle_if_local(id) {
                    Some(handle) => handle,
                    None => {
                        // The record is claimed before it is read: what
                        // an older owner wrote is read, or refused.
                        let fence = self
                            .storage()
                            .claim_facility(id)
                            .await?
                            .ok_or_else(|| ActorError::UnknownFacility(id.to_string()))?;
                        let record = self.stored_record(id).await?;
                        self.spawn_facility(record, Some(fence)).await?;
                        self.handle(id)?
                    }
                }
            }
        };
        let routes = handle.shared.routes();
        let mut epoch = 0;
        for zone in routes.zones.values() {
            let (reply, rx) = oneshot::channel();
            zone.send_message(ZoneMsg::Epoch(reply))
                .map_err(|_| ActorError::Unavailable("zone"))?;
            let claimed = rx.await.map_err(|_| ActorError::Unavailable("zone"))?;
            epoch = epoch.max(claimed.0);
        }
        Ok(epoch)
    }

    /// Cluster mode: hand `id` over. New requests for it are refused as
    /// retryable at once; queued ones finish and commit; the zones write
    /// their final snapshots and stop.
    pub async fn release(&self, id: &FacilityId) {
        let Some(handle) = self.take_handle(id) else {
            return;
        };
        let _ = handle
            .actor
            .stop_and_wait(
                Some("handed over".into()),
                Some(std::time::Duration::from_secs(5)),
            )
            .await;
    }

    /// Cluster mode: `id` belongs to another node now; stop serving it at
    /// once (whatever it still tries to write is fenced by the store).
    pub async fn drop_facility(&self, id: &FacilityId) {
        if let Some(handle) = self.take_handle(id) {
            handle.actor.stop(Some("owned elsewhere".into()));
        }
    }

    fn handle_if_local(&self, id: &FacilityId) -> Option<Arc<FacilityHandle>> {
        self.inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn take_handle(&self, id: &FacilityId) -> Option<Arc<FacilityHandle>> {
        let handle = self
            .inner
            .facilities
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)?;
        let hash = handle.sensor_key.borrow().hash;
        let mut owners = self
            .inner
            .key_owners
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if owners.get(&hash) == Some(id) {
            owners.remove(&hash);
        }
        Some(handle)
    }

    /// A facility's stored record.
    async fn stored_record(&self, id: &FacilityId) -> Result<FacilityRecord, ActorError> {
        let bytes = self
            .storage()
            .facility(id)
            .await?
            .ok_or_else(|| ActorError::UnknownFacility(id.to_string()))?;
        FacilityRecord::decode(&bytes)
            .map_err(|e| ActorError::Corrupt(format!("facility {id}: {e}")))
    }

    /// Every facility in the store (cluster mode: what the cluster serves).
    pub async fn stored_facility_ids(&self) -> Result<Vec<FacilityId>, ActorError> {
        let stored = self.storage().facilities().await?;
        let ids: Vec<FacilityId> = stored.into_iter().map(|(id, _)| id).collect();
        *self.inner.known.write().unwrap_or_else(|e| e.into_inner()) =
            ids.iter().cloned().collect();
        Ok(ids)
    }

    /// Whether `id` is in the store (as last listed; a miss looks the one
    /// id up, so a facility created on another node a moment ago is found
    /// and an unknown id costs one lookup, not a listing).
    pub async fn is_known(&self, id: &FacilityId) -> bool {
        if self.serves(id)
            || self
                .inner
                .known
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id)
        {
            return true;
        }
        match self.storage().facility(id).await {
            Ok(Some(_)) => {
                self.inner
                    .known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
                true
            }
            Ok(None) => false,
            // The store cannot say: let the owner's path answer (503).
            Err(_) => true,
        }
    }

    /// How many facilities the store held when last listed.
    pub fn known_count(&self) -> usize {
        self.inner
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Cluster mode: writes the record of a facility no node serves yet
    /// (its first layout), so the cluster's ownership starts it on the
    /// node that places it. Returns whether it was new (an existing record
    /// is left alone: its owner replaces layouts).
    pub async fn create_record(&self, layout: FacilityLayout) -> Result<bool, ActorError> {
        let id = layout.id.clone();
        let _creating = self.inner.creating.lock().await;
        if self.stored_record(&id).await.is_ok() {
            return Ok(false);
        }
        let now = self.inner.clock.now();
        let record = self.new_record(layout, now);
        self.storage()
            .put_facility(&id, record.encode(), None)
            .await?;
        self.inner
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        Ok(true)
    }

    /// The record of a facility created now: its first sensor key.
    fn new_record(&self, layout: FacilityLayout, now: Millis) -> FacilityRecord {
        let id = layout.id.clone();
        FacilityRecord {
            layout,
            sensor_key_hash: hash_key(&self.derive_key(&id, 0)),
            seq_base: 0,
            created_at: now,
            updated_at: now,
            sensor_key_generation: 0,
        }
    }

    /// Creates or replaces a facility; returns its view and whether it is
    /// new. The sensor key keeps its generation. A replacement is all or
    /// nothing: refused (with nothing changed anywhere) if it would drop a
    /// spot or zone holding a live booking.
    pub async fn put_facility(
        &self,
        layout: FacilityLayout,
    ) -> Result<(FacilityView, bool), ActorError> {
        let id = layout.id.clone();
        let now = self.inner.clock.now();
        if let Ok(handle) = self.handle(&id) {
            return self.replace_facility(&id, &handle, layout, now).await;
        }
        let _creating = self.inner.creating.lock().await;
        if let Ok(handle) = self.handle(&id) {
            return self.replace_facility(&id, &handle, layout, now).await;
        }
        let record = self.new_record(layout, now);
        self.storage()
            .put_facility(&id, record.encode(), None)
            .await?;
        // A cluster node serves a facility only under a claimed fence.
        let fence = match self.inner.config.cluster {
            true => self.storage().claim_facility(&id).await?,
            false => None,
        };
        self.spawn_facility(record, fence).await?;
        Ok((self.facility(&id).await?, true))
    }

    /// Replaces a running facility's layout, keeping its sensor key (the
    /// facility keeps its seq base and creation time).
    async fn replace_facility(
        &self,
        id: &FacilityId,
        handle: &FacilityHandle,
        layout: FacilityLayout,
        now: Millis,
    ) -> Result<(FacilityView, bool), ActorError> {
        let _writes = handle.record_writes.lock().await;
        let generation = handle.sensor_key.borrow().generation;
        let key = SensorKey {
            generation,
            hash: hash_key(&self.derive_key(id, generation)),
        };
        let record = FacilityRecord {
            layout,
            sensor_key_hash: key.hash,
            seq_base: 0,
            created_at: now,
            updated_at: now,
            sensor_key_generation: generation,
        };
        ask(&handle.actor, |reply| FacilityMsg::Relayout {
            record,
            reply,
        })
        .await??;
        self.install_key(id, handle, key);
        Ok((ask(&handle.actor, FacilityMsg::View).await?, false))
    }

    pub fn facility_ids(&self) -> Vec<FacilityId> {
        let mut ids: Vec<FacilityId> = self
            .inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    pub async fn facility(&self, id: &FacilityId) -> Result<FacilityView, ActorError> {
        let handle = self.handle(id)?;
        ask(&handle.actor, FacilityMsg::View).await
    }

    pub async fn spots(&self, id: &FacilityId, zone: &ZoneId) -> Result<Vec<SpotView>, ActorError> {
        let handle = self.handle(id)?;
        let zone = zone.clone();
        ask(&handle.actor, |reply| FacilityMsg::Spots { zone, reply }).await?
    }

    pub async fn subscribe(
        &self,
        id: &FacilityId,
        since: Option<Seq>,
    ) -> Result<Subscription, ActorError> {
        let handle = self.handle(id)?;
        ask(&handle.actor, |reply| FacilityMsg::Subscribe {
            since,
            reply,
        })
        .await
    }

    pub async fn set_service(
        &self,
        id: &FacilityId,
        spot: &SpotId,
        out_of_service: bool,
    ) -> Result<SpotView, ActorError> {
        let routes = self.handle(id)?.shared.routes();
        let zone = routes
            .spots
            .get(spot)
            .and_then(|z| routes.zones.get(z))
            .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))?;
        let spot = spot.clone();
        zone::ask(zone, |reply| ZoneMsg::SetService {
            spot,
            out_of_service,
            reply,
        })
        .await
    }

    /// Applies sensor readings of one facility; each result says whether
    /// that reading is durable (or why it was refused). Results come back
    /// in the order of `readings`.
    pub async fn sense(
        &self,
        id: &FacilityId,
        readings: Vec<Reading>,
    ) -> Result<Vec<Result<(), ActorError>>, ActorError> {
        let routes = self.handle(id)?.shared.routes();
        let mut results: Vec<Option<Result<(), ActorError>>> = vec![None; readings.len()];
        // Readings per zone, keeping their order within each zone.
        let mut per_zone: HashMap<ZoneId, (Vec<usize>, Vec<Reading>)> = HashMap::new();
        for (i, reading) in readings.into_iter().enumerate() {
            let zones = match routes.zones_of(&reading) {
                Ok(zones) => zones,
                Err(refused) => {
                    results[i] = Some(refused);
                    continue;
                }
            };
            for zone in zones {
                let entry = per_zone.entry(zone.clone()).or_default();
                entry.0.push(i);
                entry.1.push(reading.clone());
            }
        }
        let mut pending = Vec::with_capacity(per_zone.len());
        for (zone, (indexes, batch)) in per_zone {
            let Some(actor) = routes.zones.get(&zone) else {
                continue;
            };
            let (reply, rx) = oneshot::channel();
            let message = ZoneMsg::Sense {
                readings: batch,
                reply,
            };
            if zone::send(actor, message).is_err() {
                for i in indexes {
                    results[i] = Some(Err(ActorError::Unavailable("zone")));
                }
                continue;
            }
            pending.push((indexes, rx));
        }
        for (indexes, rx) in pending {
            let zone_results = rx
                .await
                .unwrap_or_else(|_| vec![Err(ActorError::Unavailable("zone")); indexes.len()]);
            for (i, result) in indexes.into_iter().zip(zone_results) {
                // A plate read goes to every zone: an error in one zone
                // (none expected) wins over success elsewhere.
                let slot = &mut results[i];
                if slot.as_ref().is_none_or(|r| r.is_ok()) {
                    *slot = Some(result);
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    /// Checks that storage answers.
    pub async fn health(&self) -> Result<(), ActorError> {
        self.storage().ping().await.map_err(Into::into)
    }

    /// Stops every facility (and so every zone) actor, then lets the
    /// committer drain what is queued and stop.
    pub async fn stop(&self) {
        self.inner.stopping.cancel();
        let tasks =
            std::mem::take(&mut *self.inner.upkeep.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let handles: Vec<Arc<FacilityHandle>> = self
            .inner
            .facilities
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for handle in handles {
            let _ = handle
                .actor
                .stop_and_wait(
                    Some("shutdown".into()),
                    Some(std::time::Duration::from_secs(5)),
                )
                .await;
        }
        self.inner.close_commits.cancel();
    }

    /// Test hook: makes a zone actor panic.
    #[cfg(feature = "testing")]
    pub fn inject_zone_panic(&self, id: &FacilityId, zone: &ZoneId) -> Result<(), ActorError> {
        let routes = self.handle(id)?.shared.routes();
        let actor = routes
            .zones
            .get(zone)
            .ok_or_else(|| ActorError::UnknownZone(zone.to_string()))?;
        actor
            .send_message(ZoneMsg::Panic)
            .map_err(|_| ActorError::Unavailable("zone"))
    }

    /// Test hook: stops every later layout change at each of its steps
    /// until the returned probe answers (see [`crate::probe`]).
    #[cfg(feature = "testing")]
    pub fn probe_relayouts(&self) -> crate::probe::RelayoutProbe {
        self.inner.probe.install()
    }

    /// Now, on the node's clock.
    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }
}
