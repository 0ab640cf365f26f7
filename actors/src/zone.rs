//! The zone actor: the single owner of one zone's state.
//!
//! Every command for a zone goes through this actor's mailbox, one at a
//! time, so deciding "is this spot free?" and taking it is one step: no
//! locks, no double booking. A command is applied in memory at once (the
//! next command sees it), its events are queued on the group committer,
//! and the caller is answered by the zone's *pump* task only after the
//! commit is durable, in seq order. If a commit fails the actor stops with
//! an error and its facility restarts it from durable state.
//!
//! Everything time-driven (hold expiry, sensor liveness, reservation lead
//! times, overstays) uses one actor timer armed for the zone's
//! [`ZoneState::next_deadline`], which sends [`ZoneMsg::Expire`]: the zone
//! then executes `Command::Tick`. There is no polling loop and no scan of
//! all bookings or spots.
//!
//! A layout change is two-phase (see [`crate::facility`]): `Prepare`
//! checks the new layout against the zone's state once everything before
//! it is durable, and from then on the zone *holds* every command that
//! could change it, so nothing slips in between the check and the change;
//! `Commit` journals the new layout and then runs what was held, `Abort`
//! just runs it. Holding is bounded: after [`HOLD_LIMIT`], or beyond
//! [`MAX_HELD`] commands, commands are refused as retryable instead. On
//! start-up a zone adopts the layout its facility record declares, so a
//! crash between the commit point and `Commit` ends in the new layout.
//!
//! This actor must never answer a caller before the writes behind the
//! answer are durable, never await anything but the committer's queue,
//! and never decide on its own how a layout change ends.

use std::sync::Arc;

use parkme_engine::codec;
use parkme_engine::zone::Effect;
use parkme_engine::{
    Booking, BookingId, BookingRequest, Command, EngineError, Event, Millis, Plate, PlateDirection,
    Seq, SpotId, SpotView, ZoneLayout, ZoneParams, ZoneSnapshot, ZoneState,
};
use parkme_storage::group_commit::CommitTicket;
use parkme_storage::{Epoch, GroupCommit, StorageError, Write, ZoneKey};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::ActorError;
use crate::facility::FacilityMsg;

mod layout;

pub use layout::{HOLD_LIMIT, LayoutToken, MAX_HELD};
use layout::{Hold, adopt_declared_layout};

/// What a node shares with all its zone actors.
#[derive(Debug, Clone)]
pub struct ZoneContext {
    pub commit: GroupCommit,
    pub clock: Clock,
    /// Write a snapshot after this many events.
    pub snapshot_every: u64,
    /// How long the record of an ended booking is kept (milliseconds after
    /// it ended) before the store may forget it.
    pub booking_retention_ms: i64,
    /// Staleness, lead time and grace of every zone.
    pub params: ZoneParams,
}

impl ZoneContext {
    /// The durable record of a booking: an ended one may be forgotten once
    /// the retention after its end has passed.
    pub fn booking_record(&self, booking: &Booking) -> Write {
        let forget_after = (!booking.is_live()).then(|| {
            Millis(
                booking
                    .updated_at
                    .0
                    .saturating_add(self.booking_retention_ms),
            )
        });
        Write::Booking {
            id: booking.id.clone(),
            bytes: codec::encode_stored(booking),
            forget_after,
        }
    }
}

/// One sensor reading, routed to the zone it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorInput {
    Spot {
        spot: SpotId,
        occupied: bool,
    },
    Count {
        delta: i32,
    },
    Plate {
        plate: Plate,
        direction: PlateDirection,
    },
}

pub type Reply<T> = oneshot::Sender<Result<T, ActorError>>;

pub enum ZoneMsg {
    Book {
        request: BookingRequest,
        /// `(key, expires_at)` of the caller's idempotency key.
        idempotency: Option<(String, Millis)>,
        reply: Reply<Booking>,
    },
    Cancel {
        booking: BookingId,
        reply: Reply<Booking>,
    },
    Sensor {
        inputs: Vec<SensorInput>,
        reply: oneshot::Sender<Vec<Result<(), ActorError>>>,
    },
    SetService {
        spot: SpotId,
        out_of_service: bool,
        reply: Reply<SpotView>,
    },
    /// Phase one of a layout change: checks that `layout` can replace the
    /// zone's (`None`: the zone leaves the layout) and answers with the
    /// zone's seq once everything before it is durable; from then on the
    /// zone holds every command that could change it.
    Prepare {
        token: LayoutToken,
        layout: Option<ZoneLayout>,
        reply: Reply<Seq>,
    },
    /// The new layout is committed: adopt it (answered with the zone's full
    /// state once durable), then run what was held.
    Commit {
        token: LayoutToken,
        reply: Reply<ZoneChange>,
    },
    /// The layout change was abandoned: run what was held.
    Abort {
        token: LayoutToken,
    },
    /// The hold of `token` reached [`HOLD_LIMIT`].
    HoldExpired {
        token: LayoutToken,
    },
    Spots {
        reply: oneshot::Sender<Vec<SpotView>>,
    },
    Expire,
    CommitFailed(StorageError),
    #[cfg(feature = "testing")]
    Panic,
}

impl std::fmt::Debug for ZoneMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ZoneMsg::Book { .. } => "Book",
            ZoneMsg::Cancel { .. } => "Cancel",
            ZoneMsg::Sensor { .. } => "Sensor",
            ZoneMsg::SetService { .. } => "SetService",
            ZoneMsg::Prepare { .. } => "Prepare",
            ZoneMsg::Commit { .. } => "Commit",
            ZoneMsg::Abort { .. } => "Abort",
            ZoneMsg::HoldExpired { .. } => "HoldExpired",
            ZoneMsg::Spots { .. } => "Spots",
            ZoneMsg::Expire => "Expire",
            ZoneMsg::CommitFailed(_) => "CommitFailed",
            #[cfg(feature = "testing")]
            ZoneMsg::Panic => "Panic",
        };
        f.write_str(name)
    }
}

impl ZoneMsg {
    /// Requests whose senders count them into `parkme_actor_mailbox_len`
    /// (timer, pump and test messages are not counted).
    fn is_counted(&self) -> bool {
        matches!(
            self,
            ZoneMsg::Book { .. }
                | ZoneMsg::Cancel { .. }
                | ZoneMsg::Sensor { .. }
                | ZoneMsg::SetService { .. }
                | ZoneMsg::Prepare { .. }
                | ZoneMsg::Commit { .. }
        )
    }
}

/// A zone's published change, sent to its facility after durability.
#[derive(Debug, Clone)]
pub struct ZoneChange {
    pub key: ZoneKey,
    pub zone_seq: Seq,
    pub name: String,
    pub capacity: Option<u32>,
    pub counts: parkme_engine::ZoneCounts,
    pub spots: Vec<SpotView>,
    /// `spots` holds every spot (start-up or layout change).
    pub full: bool,
}

/// Stateless actor; its state is [`ZoneActorState`].
#[derive(Debug)]
pub struct ZoneActor;

#[derive(Debug)]
pub struct ZoneArgs {
    pub key: ZoneKey,
    /// The layout the facility record declares: a fresh zone starts from
    /// it, a recovered one adopts it.
    pub layout: ZoneLayout,
    pub context: ZoneContext,
    pub facility: ActorRef<FacilityMsg>,
}

type OnDone = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

struct PumpItem {
    ticket: Option<CommitTicket>,
    change: Option<ZoneChange>,
    snapshot: Option<(Seq, Vec<u8>)>,
    on_done: OnDone,
}

pub struct ZoneActorState {
    zone: ZoneState,
    key: ZoneKey,
    epoch: Epoch,
    context: ZoneContext,
    facility: ActorRef<FacilityMsg>,
    pump: mpsc::UnboundedSender<PumpItem>,
    pump_task: JoinHandle<bool>,
    timer: Option<(Millis, JoinHandle<()>)>,
    since_snapshot: u64,
    hold: Option<Hold>,
}

impl std::fmt::Debug for ZoneActorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneActorState")
            .field("key", &self.key)
            .field("seq", &self.zone.seq())
            .field("epoch", &self.epoch)
            .field("holding", &self.hold.as_ref().map(|h| h.token))
            .finish_non_exhaustive()
    }
}

/// Loads a zone from storage: latest snapshot plus the journal tail. Also
/// returns the bookings the tail touched, as they stand now: a commit that
/// failed after its events landed (unacknowledged) may not have written
/// their records, so the owner writes them again. Backups read zones
/// through it too (a journal trimmed between the two reads is an
/// `OutOfOrder` error: read again).
pub async fn recover(
    storage: &dyn parkme_storage::Storage,
    key: &ZoneKey,
    layout: &ZoneLayout,
) -> Result<(ZoneState, Vec<Booking>), ActorError> {
    let mut zone = match storage.latest_snapshot(key).await? {
        Some((_, bytes)) => {
            let snapshot: ZoneSnapshot = codec::decode_stored(&bytes)
                .map_err(|e| ActorError::Corrupt(format!("snapshot of {key}: {e}")))?;
            ZoneState::restore(snapshot)
        }
        None => ZoneState::new(key.facility.clone(), layout.clone()),
    };
    let mut touched: std::collections::BTreeMap<BookingId, Booking> = Default::default();
    for (seq, bytes) in storage.read_events(key, zone.seq()).await? {
        let event: Event = codec::decode_stored(&bytes)
            .map_err(|e| ActorError::Corrupt(format!("event {seq} of {key}: {e}")))?;
        if seq <= zone.seq() {
            continue;
        }
        if seq != zone.seq().next() {
            return Err(EngineError::OutOfOrder {
                have: zone.seq().0,
                got: seq.0,
            }
            .into());
        }
        if let Some(booking) = zone.apply(&event).booking {
            touched.insert(booking.id.clone(), booking);
        }
    }
    Ok((zone, touched.into_values().collect()))
}

type Applied = (Event, Effect);

/// The journal writes of applied events (plus the booking records they
/// change); `last` is the zone's seq after them.
fn journal_writes(
    context: &ZoneContext,
    key: &ZoneKey,
    epoch: Epoch,
    last: Seq,
    applied: &[Applied],
) -> Vec<Write> {
    let first_seq = last.0 + 1 - applied.len() as u64;
    let mut writes = Vec::with_capacity(applied.len() + 1);
    for (i, (event, effect)) in applied.iter().enumerate() {
        writes.push(Write::Event {
            zone: key.clone(),
            epoch,
            seq: Seq(first_seq + i as u64),
            bytes: codec::encode_stored(event),
        });
        if let Some(booking) = &effect.booking {
            writes.push(context.booking_record(booking));
        }
    }
    writes
}

/// The zone's counts, without spots.
fn full_change_counts(key: &ZoneKey, zone: &ZoneState) -> ZoneChange {
    ZoneChange {
        key: key.clone(),
        zone_seq: zone.seq(),
        name: zone.layout().name.clone(),
        capacity: zone.capacity(),
        counts: zone.counts().clone(),
        spots: Vec::new(),
        full: false,
    }
}

/// The zone's counts and every spot.
fn full_change(key: &ZoneKey, zone: &ZoneState) -> ZoneChange {
    ZoneChange {
        spots: zone.spots(),
        full: true,
        ..full_change_counts(key, zone)
    }
}

async fn pump(
    mut items: mpsc::UnboundedReceiver<PumpItem>,
    zone: ActorRef<ZoneMsg>,
    facility: ActorRef<FacilityMsg>,
    commit: GroupCommit,
    key: ZoneKey,
    epoch: Epoch,
) -> bool {
    let mut failed = false;
    // Snapshot writes run beside the pump; it waits for them before it
    // ends, so a stopped zone writes nothing afterwards.
    let mut snapshots = tokio::task::JoinSet::new();
    while let Some(item) = items.recv().await {
        while snapshots.try_join_next().is_some() {}
        let result = match item.ticket {
            Some(ticket) => ticket.wait().await,
            // Nothing of its own to commit, but what it answers rests on
            // every earlier commit.
            None if failed => Err(StorageError::Poisoned(key.to_string())),
            None => Ok(()),
        };
        match &result {
            Ok(()) => {
                if let Some(change) = item.change {
                    let _ = facility.send_message(FacilityMsg::ZoneChanged(change));
                }
                if let Some((seq, bytes)) = item.snapshot {
                    let storage = Arc::clone(commit.storage());
                    let key = key.clone();
                    snapshots.spawn(async move {
                        let started = std::time::Instant::now();
                        match storage.put_snapshot(&key, epoch, seq, bytes).await {
                            Ok(()) => metrics::histogram!("parkme_snapshot_seconds")
                                .record(started.elapsed().as_secs_f64()),
                            Err(e) => tracing::warn!(zone = %key, error = %e, "snapshot failed"),
                        }
                    });
                }
            }
            Err(e) if !failed => {
                failed = true;
                let _ = zone.send_message(ZoneMsg::CommitFailed(e.clone()));
            }
            Err(_) => {}
        }
        (item.on_done)(result);
    }
    while snapshots.join_next().await.is_some() {}
    // Whether every commit it saw succeeded.
    !failed
}

fn storage_error(e: StorageError) -> ActorError {
    match e {
        // A newer incarnation of this zone (a restart) claimed it before
        // this write landed: the request did not happen and may be retried.
        StorageError::Fenced { .. } => ActorError::Unavailable("zone"),
        e => ActorError::Storage(e),
    }
}

impl ZoneActorState {
    fn now(&self) -> Millis {
        self.context.clock.now()
    }

    /// Applies a command, queues its writes and hands the reply to the pump.
    async fn run(
        &mut self,
        command: &Command,
        extra: impl FnOnce(&[Applied]) -> Vec<Write>,
        on_done: impl FnOnce(Result<(), StorageError>, Vec<Applied>) + Send + 'static,
    ) -> Result<(), EngineError> {
        let applied = self.zone.execute(command)?;
        self.commit_applied(applied, extra, on_done).await;
        Ok(())
    }

    /// Journals applied events (plus `extra` writes) and queues `on_done`
    /// to run once they are durable.
    async fn commit_applied(
        &mut self,
        applied: Vec<Applied>,
        extra: impl FnOnce(&[Applied]) -> Vec<Write>,
        on_done: impl FnOnce(Result<(), StorageError>, Vec<Applied>) + Send + 'static,
    ) {
        if applied.is_empty() {
            self.queue(None, None, None, Box::new(move |r| on_done(r, Vec::new())));
            return;
        }
        metrics::counter!("parkme_zone_events_total").increment(applied.len() as u64);
        let mut writes = journal_writes(
            &self.context,
            &self.key,
            self.epoch,
            self.zone.seq(),
            &applied,
        );
        // Spots touched by the batch, once each, in first-touch order.
        let mut touched: Vec<&SpotId> = Vec::new();
        let mut seen: std::collections::HashSet<&SpotId> = std::collections::HashSet::new();
        let mut relaid = false;
        for (_, effect) in &applied {
            if let Some(spot) = &effect.spot
                && seen.insert(spot)
            {
                touched.push(spot);
            }
            relaid |= effect.relaid;
        }
        if relaid {
            // Recovery then starts from an image in the new layout.
            self.since_snapshot = self.context.snapshot_every;
        }
        // Every event is already applied: these are the spots' final states.
        let spots: Vec<SpotView> = touched
            .into_iter()
            .filter_map(|spot| self.zone.spot(spot))
            .collect();
        writes.extend(extra(&applied));
        let change = if relaid {
            full_change(&self.key, &self.zone)
        } else {
            ZoneChange {
                spots,
                full: false,
                ..full_change_counts(&self.key, &self.zone)
            }
        };
        self.since_snapshot += applied.len() as u64;
        let snapshot = (self.since_snapshot >= self.context.snapshot_every).then(|| {
            self.since_snapshot = 0;
            (self.zone.seq(), codec::encode_stored(&self.zone.snapshot()))
        });
        let ticket = self.context.commit.submit(writes).await;
        self.queue(
            Some(ticket),
            Some(change),
            snapshot,
            Box::new(move |r| on_done(r, applied)),
        );
    }

    fn queue(
        &self,
        ticket: Option<CommitTicket>,
        change: Option<ZoneChange>,
        snapshot: Option<(Seq, Vec<u8>)>,
        on_done: OnDone,
    ) {
        let item = PumpItem {
            ticket,
            change,
            snapshot,
            on_done,
        };
        if let Err(mpsc::error::SendError(item)) = self.pump.send(item) {
            (item.on_done)(Err(StorageError::Closed));
        }
    }

    /// Arms the single timer for the zone's next deadline.
    fn rearm(&mut self, myself: &ActorRef<ZoneMsg>) {
        let next = self.zone.next_deadline();
        if self.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            handle.abort();
        }
        if let Some(at) = next {
            let delay = self.context.clock.until(at) + std::time::Duration::from_millis(1);
            let target = myself.clone();
            let handle = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = target.send_message(ZoneMsg::Expire);
            });
            self.timer = Some((at, handle));
        }
    }
}

fn booking_reply(
    reply: Reply<Booking>,
) -> impl FnOnce(Result<(), StorageError>, Vec<Applied>) + Send + 'static {
    move |result, applied| {
        let booking = applied
            .into_iter()
            .rev()
            .find_map(|(_, effect)| effect.booking)
            .ok_or(ActorError::Unavailable("zone"));
        let _ = reply.send(result.map_err(storage_error).and(booking));
    }
}

impl Actor for ZoneActor {
    type Msg = ZoneMsg;
    type State = ZoneActorState;
    type Arguments = ZoneArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ZoneArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let storage = args.context.commit.storage();
        let epoch = storage.claim_zone(&args.key).await?;
        let (mut zone, touched) = recover(&**storage, &args.key, &args.layout).await?;
        let adopted =
            adopt_declared_layout(&args.context, &args.key, epoch, &mut zone, &args.layout).await?;
        // Every spot's hearing clock starts now; lead times that passed
        // while the zone was down are due at once.
        zone.start(args.context.params, args.context.clock.now());
        tracing::debug!(zone = %args.key, seq = zone.seq().0, epoch = epoch.0, "zone recovered");
        if !touched.is_empty() {
            // Before serving, so the next change of any of them lands after.
            let records = touched
                .iter()
                .map(|b| args.context.booking_record(b))
                .collect();
            if let Err(e) = args.context.commit.commit(records).await {
                tracing::warn!(zone = %args.key, error = %e, "could not rewrite booking records");
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let pump_task = tokio::spawn(pump(
            rx,
            myself.clone(),
            args.facility.clone(),
            args.context.commit.clone(),
            args.key.clone(),
            epoch,
        ));
        Ok(ZoneActorState {
            zone,
            key: args.key,
            epoch,
            context: args.context,
            facility: args.facility,
            pump: tx,
            pump_task,
            timer: None,
            since_snapshot: adopted,
            hold: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let change = full_change(&state.key, &state.zone);
        let _ = state
            .facility
            .send_message(FacilityMsg::ZoneChanged(change));
        // Holds that ran out while the zone was down expire now.
        state.rearm(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, handle)) = state.timer.take() {
            handle.abort();
        }
        // A zone leaving its layout is about to be forgotten: no snapshot.
        let leaving = match state.hold.take() {
            Some(hold) => {
                hold.timer.abort();
                hold.target.is_none()
            }
            None => false,
        };
        // Let the pump answer what is queued (closing its channel ends it),
        // then leave a snapshot so the next start replays nothing.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut state.pump, closed));
        let drained =
            tokio::time::timeout(std::time::Duration::from_secs(3), &mut state.pump_task).await;
        if matches!(drained, Ok(Ok(true))) && state.since_snapshot > 0 && !leaving {
            let storage = state.context.commit.storage();
            let bytes = codec::encode_stored(&state.zone.snapshot());
            let started = std::time::Instant::now();
            match storage
                .put_snapshot(&state.key, state.epoch, state.zone.seq(), bytes)
                .await
            {
                Ok(()) => metrics::histogram!("parkme_snapshot_seconds")
                    .record(started.elapsed().as_secs_f64()),
                Err(e) => tracing::warn!(zone = %state.key, error = %e, "final snapshot failed"),
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if message.is_counted() {
            metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").decrement(1.0);
        }
        match message {
            ZoneMsg::Prepare {
                token,
                layout,
                reply,
            } => state.prepare(&myself, token, layout, reply),
            ZoneMsg::Commit { token, reply } => state.commit_layout(token, reply).await,
            ZoneMsg::Abort { token } => state.abort_layout(token).await,
            ZoneMsg::HoldExpired { token } => state.expire_hold(token),
            ZoneMsg::Spots { reply } => {
                let _ = reply.send(state.zone.spots());
            }
            ZoneMsg::CommitFailed(e) => {
                return Err(format!("journal commit failed for {}: {e}", state.key).into());
            }
            #[cfg(feature = "testing")]
            ZoneMsg::Panic => panic!("injected panic in zone {}", state.key),
            // What is left changes the zone: held while a layout change is
            // prepared, run otherwise.
            command => match state.hold.as_mut() {
                Some(hold) => hold.keep(command),
                None => state.command(command).await,
            },
        }
        state.rearm(&myself);
        Ok(())
    }
}

impl ZoneActorState {
    /// Runs one command that changes the zone.
    async fn command(&mut self, message: ZoneMsg) {
        match message {
            ZoneMsg::Book {
                request,
                idempotency,
                reply,
            } => {
                let owner = request.owner.clone();
                let command = Command::Book(request);
                let extra = move |applied: &[Applied]| {
                    let booking = applied.iter().find_map(|(_, e)| e.booking.as_ref());
                    match (idempotency, booking) {
                        (Some((key, expires_at)), Some(booking)) => vec![Write::Idempotency {
                            owner,
                            key,
                            booking: booking.id.clone(),
                            expires_at,
                        }],
                        _ => Vec::new(),
                    }
                };
                let (tx, rx) = oneshot::channel();
                match self.run(&command, extra, booking_reply(tx)).await {
                    Ok(()) => forward(rx, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ZoneMsg::Cancel { booking, reply } => {
                let command = Command::Cancel {
                    booking,
                    now: self.now(),
                };
                let (tx, rx) = oneshot::channel();
                match self.run(&command, |_| Vec::new(), booking_reply(tx)).await {
                    Ok(()) => forward(rx, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ZoneMsg::Sensor { inputs, reply } => {
                handle_sensor(self, inputs, reply).await;
            }
            ZoneMsg::SetService {
                spot,
                out_of_service,
                reply,
            } => {
                let command = Command::SetService {
                    spot: spot.clone(),
                    out_of_service,
                    now: self.now(),
                };
                let view = self.zone.spot(&spot);
                let (tx, rx) = oneshot::channel::<Result<(), ActorError>>();
                let done = move |r: Result<(), StorageError>, _| {
                    let _ = tx.send(r.map_err(storage_error));
                };
                match self.run(&command, |_| Vec::new(), done).await {
                    Ok(()) => {
                        let after = self.zone.spot(&spot).or(view);
                        tokio::spawn(async move {
                            let result = rx.await.unwrap_or(Err(ActorError::Unavailable("zone")));
                            let _ = reply.send(
                                result.and_then(|()| after.ok_or(ActorError::Unavailable("zone"))),
                            );
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ZoneMsg::Expire => {
                let command = Command::Tick { now: self.now() };
                let result = self.run(
                    &command,
                    |_| Vec::new(),
                    |_, applied| {
                        let expired = applied
                            .iter()
                            .filter(|(event, _)| matches!(event, Event::BookingExpired { .. }))
                            .count();
                        if expired > 0 {
                            metrics::counter!("parkme_bookings_expired_total")
                                .increment(expired as u64);
                        }
                    },
                );
                if let Err(e) = result.await {
                    tracing::warn!(zone = %self.key, error = %e, "expiry refused");
                }
            }
            other => debug_assert!(false, "{other:?} is not a zone command"),
        }
    }
}

fn forward<T: Send + 'static>(rx: oneshot::Receiver<Result<T, ActorError>>, reply: Reply<T>) {
    tokio::spawn(async move {
        let result = rx.await.unwrap_or(Err(ActorError::Unavailable("zone")));
        let _ = reply.send(result);
    });
}

async fn handle_sensor(
    state: &mut ZoneActorState,
    inputs: Vec<SensorInput>,
    reply: oneshot::Sender<Vec<Result<(), ActorError>>>,
) {
    let now = state.now();
    let mut results: Vec<Result<(), ActorError>> = Vec::with_capacity(inputs.len());
    let mut events = Vec::new();
    for input in inputs {
        let command = match input {
            SensorInput::Spot { spot, occupied } => Command::Sense {
                spot,
                occupied,
                now,
            },
            SensorInput::Count { delta } => Command::Count { delta, now },
            SensorInput::Plate { plate, direction } => Command::Plate {
                plate,
                direction,
                now,
            },
        };
        // `execute`, not decide + apply: a reading that changes nothing
        // still keeps its spot's sensor live.
        match state.zone.execute(&command) {
            Ok(applied) => {
                events.extend(applied);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e.into())),
        }
    }
    state
        .commit_applied(
            events,
            |_| Vec::new(),
            move |result, _| {
                let results = match result {
                    Ok(()) => results,
                    Err(e) => results
                        .into_iter()
                        .map(|_| Err(storage_error(e.clone())))
                        .collect(),
                };
                let _ = reply.send(results);
            },
        )
        .await;
}
