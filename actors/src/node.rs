//! The node: every facility this process serves, and the API the edge
//! calls. It starts facility actors from storage at boot, routes bookings
//! and sensor readings to the zone actor that owns them, and stops
//! everything in order at shutdown.
//!
//! This module must never mutate zone state itself: it only sends
//! messages to the actors that own it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use parkme_engine::codec;
use parkme_engine::{
    Booking, BookingId, BookingRequest, EngineError, FacilityId, FacilityLayout, Millis, Plate,
    Seq, SpotId, SpotKind, SpotView, UserId, ZoneId, ZoneParams,
};
use parkme_storage::{GroupCommit, Storage};
use ractor::{Actor, ActorRef};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::ActorError;
use crate::facility::{FacilityActor, FacilityArgs, FacilityMsg, FacilityShared, Routes, ask_zone};
use crate::publish::{FacilityView, Subscription};
use crate::record::{FacilityRecord, hash_key};
use crate::zone::{SensorInput, ZoneContext, ZoneMsg};

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
        }
    }
}

/// What a booking caller asks for.
#[derive(Debug, Clone)]
pub struct BookParams {
    pub owner: UserId,
    pub plate: Plate,
    pub zone: Option<ZoneId>,
    pub kind: Option<SpotKind>,
    pub spot: Option<SpotId>,
    pub hold_seconds: u32,
    pub idempotency_key: Option<String>,
}

/// How a booking request ended.
#[derive(Debug, Clone)]
pub enum Booked {
    Created(Booking),
    /// The idempotency key had already created this booking.
    Replayed(Booking),
}

/// What a sensor key check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Valid,
    UnknownFacility,
    /// The current key of another facility.
    Foreign,
    Wrong,
}

/// A facility's current sensor key, as far as checking it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorKey {
    /// 0 until the first rotation, one more at each.
    pub generation: u64,
    /// SHA-256 of the key ([`hash_key`]).
    pub hash: [u8; 32],
}

impl SensorKey {
    /// Whether a key with this hash is the current one (constant time).
    pub fn is(&self, hash: &[u8; 32]) -> bool {
        self.hash
            .iter()
            .zip(hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
    #[cfg(feature = "testing")]
    probe: crate::probe::Probe,
    /// Tells the committer to drain and stop, once the actors are gone.
    close_commits: CancellationToken,
    /// Stops the periodic upkeep.
    stopping: CancellationToken,
    /// The upkeep task, awaited at stop so nothing holds the store after.
    upkeep: std::sync::Mutex<Option<JoinHandle<()>>>,
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
                metrics::counter!("parkme_storage_purged_total", "kind" => "idempotency_key")
                    .increment(done.idempotency_keys);
                metrics::counter!("parkme_storage_purged_total", "kind" => "booking")
                    .increment(done.bookings);
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

/// A new opaque booking id: a millisecond timestamp and a random tail.
/// Ids minted close together sort close together, which keeps inserts
/// into the stores' booking index local.
pub fn new_booking_id(now: Millis) -> BookingId {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let id = format!("bk_{:011x}{tail}", now.0.max(0));
    BookingId::parse(&id).expect("generated ids are valid")
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
                #[cfg(feature = "testing")]
                probe: crate::probe::Probe::default(),
                close_commits,
                _upkeep_guard: stopping.clone().drop_guard(),
                stopping,
                upkeep: std::sync::Mutex::new(None),
            }),
        };
        let task = tokio::spawn(upkeep(
            Arc::clone(node.inner.commit.storage()),
            node.inner.clock,
            node.inner.config.upkeep_every,
            node.inner.stopping.clone(),
        ));
        *node.inner.upkeep.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        let stored = node.inner.commit.storage().facilities().await?;
        for (id, bytes) in stored {
            let record = FacilityRecord::decode(&bytes)
                .map_err(|e| ActorError::Corrupt(format!("facility {id}: {e}")))?;
            node.spawn_facility(record).await?;
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
        }
    }

    async fn spawn_facility(&self, record: FacilityRecord) -> Result<(), ActorError> {
        let id = record.layout.id.clone();
        let key = SensorKey {
            generation: record.sensor_key_generation,
            hash: record.sensor_key_hash,
        };
        let shared = Arc::new(FacilityShared {
            routes: RwLock::new(Arc::new(Routes::default())),
        });
        let args = FacilityArgs {
            record,
            context: self.context(),
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
        });
        self.inner
            .facilities
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), handle);
        self.own_key(&id, None, key);
        Ok(())
    }

    /// Records `new` as `id`'s key in the owner index (dropping `old`).
    fn own_key(&self, id: &FacilityId, old: Option<SensorKey>, new: SensorKey) {
        let mut owners = self
            .inner
            .key_owners
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = old
            && old.hash != new.hash
            && owners.get(&old.hash) == Some(id)
        {
            owners.remove(&old.hash);
        }
        owners.insert(new.hash, id.clone());
    }

    /// Makes `new` the key sensors of `handle` must present; sockets that
    /// came with another key are told.
    fn install_key(&self, id: &FacilityId, handle: &FacilityHandle, new: SensorKey) {
        let mut old = None;
        handle.sensor_key.send_if_modified(|current| {
            old = Some(*current);
            let changed = *current != new;
            *current = new;
            changed
        });
        self.own_key(id, old, new);
    }

    fn handle(&self, id: &FacilityId) -> Result<Arc<FacilityHandle>, ActorError> {
        self.inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| ActorError::UnknownFacility(id.to_string()))
    }

    /// The sensor key of generation `generation`: derived from the node
    /// secret, the facility id and the generation, so the current key can
    /// be handed out again without being stored. Generation 0 is the key
    /// of records written before rotation existed.
    fn derive_key(&self, id: &FacilityId, generation: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.inner.config.key_secret.len() as u64).to_le_bytes());
        hasher.update(&self.inner.config.key_secret);
        hasher.update(b"parkme-sensor-key:");
        hasher.update(id.as_str().as_bytes());
        if generation > 0 {
            hasher.update(b":generation:");
            hasher.update(generation.to_le_bytes());
        }
        format!("sk_{}", hex::encode(&hasher.finalize()[..20]))
    }

    /// The current sensor key of a facility.
    pub fn sensor_key(&self, id: &FacilityId) -> Result<String, ActorError> {
        let handle = self.handle(id)?;
        let generation = handle.sensor_key.borrow().generation;
        Ok(self.derive_key(id, generation))
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
        let record = FacilityRecord {
            layout,
            sensor_key_hash: hash_key(&self.derive_key(&id, 0)),
            seq_base: 0,
            created_at: now,
            updated_at: now,
            sensor_key_generation: 0,
        };
        self.storage().put_facility(&id, record.encode()).await?;
        self.spawn_facility(record).await?;
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

    /// Gives a facility a new sensor key and revokes the old one at once:
    /// handshakes with it are refused from now on, and open sockets that
    /// came with it are told to close. Returns the new key.
    pub async fn rotate_sensor_key(&self, id: &FacilityId) -> Result<String, ActorError> {
        let handle = self.handle(id)?;
        let _writes = handle.record_writes.lock().await;
        let current = *handle.sensor_key.borrow();
        // A u64 of rotations is never exhausted.
        let generation = current.generation.saturating_add(1);
        let key = self.derive_key(id, generation);
        let new = SensorKey {
            generation,
            hash: hash_key(&key),
        };
        ask(&handle.actor, |reply| FacilityMsg::SetSensorKey {
            generation,
            hash: new.hash,
            reply,
        })
        .await??;
        self.install_key(id, &handle, new);
        tracing::info!(facility = %id, generation, "sensor key rotated");
        Ok(key)
    }

    /// The current sensor key of a facility, to watch for revocation.
    pub fn watch_sensor_key(&self, id: &FacilityId) -> Option<watch::Receiver<SensorKey>> {
        self.handle(id).ok().map(|h| h.sensor_key.subscribe())
    }

    /// Checks a presented sensor key against the facility named: one
    /// hash and two lookups, whatever the number of facilities.
    pub fn check_sensor_key(&self, id: &FacilityId, key: &str) -> KeyCheck {
        let Ok(handle) = self.handle(id) else {
            return KeyCheck::UnknownFacility;
        };
        let given = hash_key(key);
        if handle.sensor_key.borrow().is(&given) {
            return KeyCheck::Valid;
        }
        let owner = self
            .inner
            .key_owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&given)
            .cloned();
        match owner {
            Some(other)
                if other != *id
                    && self
                        .handle(&other)
                        .is_ok_and(|h| h.sensor_key.borrow().is(&given)) =>
            {
                KeyCheck::Foreign
            }
            _ => KeyCheck::Wrong,
        }
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
        ask_zone(zone, |reply| ZoneMsg::SetService {
            spot,
            out_of_service,
            reply,
        })
        .await
    }

    /// Books a spot (or a unit of a counter zone) in a facility.
    pub async fn book(&self, id: &FacilityId, params: BookParams) -> Result<Booked, ActorError> {
        let handle = self.handle(id)?;
        let now = self.inner.clock.now();
        let _guard = match &params.idempotency_key {
            Some(key) => {
                let stripe = stripe(&params.owner, key, self.inner.idempotency_locks.len());
                let guard = self.inner.idempotency_locks[stripe].lock().await;
                let found = self
                    .storage()
                    .idempotent_booking(&params.owner, key, now)
                    .await?;
                if let Some(existing) = found
                    && let Some(booking) = self.booking(&existing).await?
                {
                    return Ok(Booked::Replayed(booking));
                }
                Some(guard)
            }
            None => None,
        };
        let routes = handle.shared.routes();
        let zones = self.booking_zones(&handle, &routes, &params).await?;
        let idempotency = params.idempotency_key.clone().map(|key| {
            let ttl = self.inner.config.idempotency_ttl_secs;
            (key, now.plus_secs(ttl))
        });
        let request = BookingRequest {
            id: new_booking_id(now),
            owner: params.owner.clone(),
            plate: params.plate.clone(),
            kind: params.kind,
            spot: params.spot.clone(),
            hold_seconds: params.hold_seconds,
            starts_at: None,
            ends_at: None,
            now,
        };
        for zone in zones {
            let Some(actor) = routes.zones.get(&zone) else {
                continue;
            };
            let request = request.clone();
            let idempotency = idempotency.clone();
            let result = ask_zone(actor, |reply| ZoneMsg::Book {
                request,
                idempotency,
                reply,
            })
            .await;
            match result {
                Ok(booking) => return Ok(Booked::Created(booking)),
                Err(ActorError::Engine(EngineError::NoSpotAvailable)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::NoSpotAvailable.into())
    }

    /// The zones to try, in order.
    async fn booking_zones(
        &self,
        handle: &FacilityHandle,
        routes: &Routes,
        params: &BookParams,
    ) -> Result<Vec<ZoneId>, ActorError> {
        if let Some(spot) = &params.spot {
            let zone = routes
                .spots
                .get(spot)
                .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))?;
            if params.zone.as_ref().is_some_and(|z| z != zone) {
                return Err(EngineError::UnknownSpot(spot.clone()).into());
            }
            return Ok(vec![zone.clone()]);
        }
        if let Some(zone) = &params.zone {
            if !routes.zones.contains_key(zone) {
                return Err(ActorError::UnknownZone(zone.to_string()));
            }
            return Ok(vec![zone.clone()]);
        }
        let kind = params.kind;
        ask(&handle.actor, |reply| FacilityMsg::Candidates {
            kind,
            reply,
        })
        .await
    }

    /// Cancels a `CONFIRMED` booking.
    pub async fn cancel(&self, booking: &Booking) -> Result<Booking, ActorError> {
        let routes = self.handle(&booking.facility)?.shared.routes();
        let zone = routes
            .zones
            .get(&booking.zone)
            .ok_or_else(|| EngineError::UnknownBooking(booking.id.clone()))?;
        let id = booking.id.clone();
        match ask_zone(zone, |reply| ZoneMsg::Cancel { booking: id, reply }).await {
            Err(ActorError::Engine(EngineError::UnknownBooking(_))) => {
                // No longer live in its zone: it already ended.
                let status = self
                    .booking(&booking.id)
                    .await?
                    .map(|b| b.status)
                    .unwrap_or(booking.status);
                Err(EngineError::InvalidTransition(status).into())
            }
            other => other,
        }
    }

    /// A booking by id, from the durable booking table.
    pub async fn booking(&self, id: &BookingId) -> Result<Option<Booking>, ActorError> {
        let Some(bytes) = self.storage().booking(id).await? else {
            return Ok(None);
        };
        codec::decode_stored(&bytes)
            .map(Some)
            .map_err(|e| ActorError::Corrupt(format!("booking {id}: {e}")))
    }

    /// Applies sensor readings of one facility; each result says whether
    /// that reading is durable (or why it was refused). Results come back
    /// in the order of `inputs`.
    pub async fn sense(
        &self,
        id: &FacilityId,
        inputs: Vec<SensorReading>,
    ) -> Result<Vec<Result<(), ActorError>>, ActorError> {
        let routes = self.handle(id)?.shared.routes();
        let mut results: Vec<Option<Result<(), ActorError>>> = vec![None; inputs.len()];
        // Group readings per zone, keeping their order within each zone.
        let mut per_zone: HashMap<ZoneId, (Vec<usize>, Vec<SensorInput>)> = HashMap::new();
        for (i, reading) in inputs.into_iter().enumerate() {
            let targets: Vec<ZoneId> = match &reading {
                SensorReading::Spot { spot, .. } => match routes.spots.get(spot) {
                    Some(zone) => vec![zone.clone()],
                    None => {
                        results[i] = Some(Err(EngineError::UnknownSpot(spot.clone()).into()));
                        continue;
                    }
                },
                SensorReading::Count { zone, .. } => {
                    if routes.zones.contains_key(zone) {
                        vec![zone.clone()]
                    } else {
                        results[i] = Some(Err(ActorError::UnknownZone(zone.to_string())));
                        continue;
                    }
                }
                SensorReading::Plate { .. } => routes.order.clone(),
                SensorReading::Heartbeat => {
                    results[i] = Some(Ok(()));
                    continue;
                }
            };
            for zone in targets {
                let input = match &reading {
                    SensorReading::Spot { spot, occupied } => SensorInput::Spot {
                        spot: spot.clone(),
                        occupied: *occupied,
                    },
                    SensorReading::Count { delta, .. } => SensorInput::Count { delta: *delta },
                    SensorReading::Plate { plate, direction } => SensorInput::Plate {
                        plate: plate.clone(),
                        direction: *direction,
                    },
                    SensorReading::Heartbeat => continue,
                };
                let entry = per_zone.entry(zone).or_default();
                entry.0.push(i);
                entry.1.push(input);
            }
        }
        let mut pending = Vec::with_capacity(per_zone.len());
        for (zone, (indexes, batch)) in per_zone {
            let Some(actor) = routes.zones.get(&zone) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").increment(1.0);
            if actor
                .send_message(ZoneMsg::Sensor {
                    inputs: batch,
                    reply: tx,
                })
                .is_err()
            {
                metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").decrement(1.0);
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
        let upkeep = self
            .inner
            .upkeep
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = upkeep {
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

/// One sensor reading as the edge parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorReading {
    Spot {
        spot: SpotId,
        occupied: bool,
    },
    Count {
        zone: ZoneId,
        delta: i32,
    },
    Plate {
        plate: Plate,
        direction: parkme_engine::PlateDirection,
    },
    Heartbeat,
}

fn stripe(owner: &UserId, key: &str, stripes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    owner.hash(&mut h);
    key.hash(&mut h);
    (h.finish() as usize) % stripes.max(1)
}
