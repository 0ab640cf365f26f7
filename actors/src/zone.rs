//! The zone actor: the single owner of one zone's state.
//!
//! Every command for a zone goes through this actor's mailbox, one at a
//! time, so deciding "is this spot free?" and taking it is one step: no
//! locks, no double booking. A command is applied in memory at once (the
//! next command sees it), its events are queued on the group committer,
//! and the caller is answered by the zone's *pump* ([`pump`]) only after
//! the commit is durable, in seq order, with a typed pending reply (no
//! closure, no task per request). If a commit fails the actor stops with
//! an error and its facility restarts it from durable state.
//!
//! Everything time-driven (hold expiry, sensor liveness, reservation lead
//! times, overstays) uses one actor timer armed for the zone's
//! [`ZoneState::next_deadline`], which sends [`ZoneMsg::Expire`]: the zone
//! then executes `Command::Tick`. There is no polling loop and no scan of
//! all bookings or spots.
//!
//! A layout change is two-phase ([`layout`]; the whole protocol is in the
//! facility's `relayout` module): `Prepare` checks the new layout against
//! the zone's state once everything before it is durable, and from then
//! on the zone *holds* every command that could change it; `Commit`
//! journals the new layout and then runs what was held, `Abort` just runs
//! it. On start-up a zone adopts the layout its facility record declares.
//!
//! The zone reports what it published through a [`ZoneReports`] handle
//! (a derived actor ref), so it knows nothing of its parent's messages.
//!
//! This actor must never answer a caller before the writes behind the
//! answer are durable, never await anything but the committer's queue,
//! and never decide on its own how a layout change ends.

use parkme_engine::codec;
use parkme_engine::zone::Effect;
use parkme_engine::{
    Booking, BookingId, BookingRequest, EngineError, Event, Millis, Reading, Seq, SpotId, SpotView,
    ZoneLayout, ZoneParams, ZoneSnapshot, ZoneState,
};
use parkme_storage::{Epoch, GroupCommit, StorageError, Write, ZoneKey};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, DerivedActorRef};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::ActorError;
use crate::metrics;
use crate::publish::ZoneReport;

mod commands;
mod layout;
mod pump;

pub use layout::{HOLD_LIMIT, LayoutToken, MAX_HELD};
use layout::{Hold, adopt_declared_layout};
use pump::{Pending, PumpItem, PumpTargets};

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
    /// Cluster mode: where a zone whose write the store refused as fenced
    /// (a newer owner claimed it) reports its facility, instead of failing
    /// and restarting (a restart would claim the zone back from its new
    /// owner). `None` on a single node: a fenced zone restarts.
    pub fenced: Option<tokio::sync::mpsc::UnboundedSender<crate::node::Fenced>>,
    /// Which start of its facility on this node a zone belongs to: a
    /// fenced report from an older start is not about the current one.
    pub instance: u64,
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

pub type Reply<T> = oneshot::Sender<Result<T, ActorError>>;

/// An idempotency key a booking claims: until `expires_at`, and only if the
/// key is still as the caller read it (`replaces`, see
/// [`parkme_storage::Write::Idempotency`]).
#[derive(Debug, Clone)]
pub struct KeyClaim {
    pub key: String,
    pub expires_at: Millis,
    pub replaces: Option<(BookingId, Millis)>,
}

pub enum ZoneMsg {
    Book {
        request: BookingRequest,
        /// The caller's idempotency key.
        idempotency: Option<KeyClaim>,
        reply: Reply<Booking>,
    },
    Cancel {
        booking: BookingId,
        reply: Reply<Booking>,
    },
    /// Whether this zone holds live booking `booking`: answered with it
    /// (its record written again) once everything before is durable, or
    /// `UnknownBooking`. For an idempotency key whose booking has no
    /// record: its commit may have landed in the journal but not beyond.
    Find {
        booking: BookingId,
        reply: Reply<Booking>,
    },
    /// Moves the end of a live booking's stay.
    Extend {
        booking: BookingId,
        ends_at: Millis,
        reply: Reply<Booking>,
    },
    /// Readings routed to this zone, answered one result each.
    Sense {
        readings: Vec<Reading>,
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
        reply: Reply<ZoneReport>,
    },
    /// The layout change was abandoned: run what was held.
    Abort {
        token: LayoutToken,
    },
    /// The hold of `token` reached [`HOLD_LIMIT`].
    HoldExpired {
        token: LayoutToken,
    },
    Expire,
    CommitFailed(StorageError),
    /// The epoch this zone claimed at start.
    Epoch(oneshot::Sender<Epoch>),
    #[cfg(feature = "testing")]
    Panic,
}

impl std::fmt::Debug for ZoneMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ZoneMsg::Book { .. } => "Book",
            ZoneMsg::Cancel { .. } => "Cancel",
            ZoneMsg::Extend { .. } => "Extend",
            ZoneMsg::Find { .. } => "Find",
            ZoneMsg::Sense { .. } => "Sense",
            ZoneMsg::SetService { .. } => "SetService",
            ZoneMsg::Prepare { .. } => "Prepare",
            ZoneMsg::Commit { .. } => "Commit",
            ZoneMsg::Abort { .. } => "Abort",
            ZoneMsg::HoldExpired { .. } => "HoldExpired",
            ZoneMsg::Expire => "Expire",
            ZoneMsg::CommitFailed(_) => "CommitFailed",
            ZoneMsg::Epoch(_) => "Epoch",
            #[cfg(feature = "testing")]
            ZoneMsg::Panic => "Panic",
        };
        f.write_str(name)
    }
}

impl ZoneMsg {
    /// Requests counted into the mailbox gauge by [`send`] (timer, pump and
    /// test messages are not counted).
    fn is_counted(&self) -> bool {
        matches!(
            self,
            ZoneMsg::Book { .. }
                | ZoneMsg::Cancel { .. }
                | ZoneMsg::Extend { .. }
                | ZoneMsg::Find { .. }
                | ZoneMsg::Sense { .. }
                | ZoneMsg::SetService { .. }
                | ZoneMsg::Prepare { .. }
                | ZoneMsg::Commit { .. }
        )
    }
}

/// The zone a message was sent to is gone (the message was dropped, so
/// its reply channel closes unanswered).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZoneGone;

/// Sends a request to a zone actor, counting it in the mailbox gauge
/// until the zone takes it.
pub(crate) fn send(actor: &ActorRef<ZoneMsg>, message: ZoneMsg) -> Result<(), ZoneGone> {
    let counted = message.is_counted();
    if counted {
        metrics::mailbox_entered();
    }
    actor.send_message(message).map_err(|_| {
        if counted {
            metrics::mailbox_left();
        }
        ZoneGone
    })
}

/// Sends a request to a zone actor; its answer comes on the receiver,
/// which closes unanswered if the zone is gone.
pub(crate) fn request<T>(
    actor: &ActorRef<ZoneMsg>,
    make: impl FnOnce(Reply<T>) -> ZoneMsg,
) -> oneshot::Receiver<Result<T, ActorError>> {
    let (tx, rx) = oneshot::channel();
    let _ = send(actor, make(tx));
    rx
}

/// Sends a request to a zone actor and waits for its answer; a zone that
/// is gone (restarting) is `Unavailable`.
pub(crate) async fn ask<T>(
    actor: &ActorRef<ZoneMsg>,
    make: impl FnOnce(Reply<T>) -> ZoneMsg,
) -> Result<T, ActorError> {
    request(actor, make)
        .await
        .unwrap_or(Err(ActorError::Unavailable("zone")))
}

impl ZoneReport {
    /// The zone's counts, without spots.
    fn counts_of(key: &ZoneKey, zone: &ZoneState) -> ZoneReport {
        ZoneReport {
            zone: key.zone.clone(),
            zone_seq: zone.seq(),
            name: zone.layout().name.clone(),
            capacity: zone.capacity(),
            reservable: zone.layout().reservable,
            counts: zone.counts().clone(),
            spots: Vec::new(),
            full: false,
        }
    }

    /// The zone's counts and every spot.
    pub(crate) fn full(key: &ZoneKey, zone: &ZoneState) -> ZoneReport {
        ZoneReport {
            spots: zone.spots(),
            full: true,
            ..ZoneReport::counts_of(key, zone)
        }
    }
}

/// Where a zone reports its published changes: its facility, seen only
/// as something that takes [`ZoneReport`]s.
pub type ZoneReports = DerivedActorRef<ZoneReport>;

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
    pub reports: ZoneReports,
}

impl ZoneArgs {
    /// Starts the zone, supervised by `supervisor`.
    pub async fn spawn(
        self,
        supervisor: ActorCell,
    ) -> Result<ActorRef<ZoneMsg>, ActorProcessingErr> {
        let (actor, _) = Actor::spawn_linked(None, ZoneActor, self, supervisor).await?;
        Ok(actor)
    }
}

pub struct ZoneActorState {
    zone: ZoneState,
    key: ZoneKey,
    epoch: Epoch,
    context: ZoneContext,
    reports: ZoneReports,
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

impl ZoneActorState {
    fn now(&self) -> Millis {
        self.context.clock.now()
    }

    /// The change applied events publish: the spots they touched (once
    /// each, in first-touch order, in their final state), or every spot
    /// after a layout change.
    fn change_of(&mut self, applied: &[Applied]) -> ZoneReport {
        let mut touched: Vec<&SpotId> = Vec::new();
        let mut seen: std::collections::HashSet<&SpotId> = std::collections::HashSet::new();
        let mut relaid = false;
        for (_, effect) in applied {
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
            return ZoneReport::full(&self.key, &self.zone);
        }
        ZoneReport {
            spots: touched
                .into_iter()
                .filter_map(|spot| self.zone.spot(spot))
                .collect(),
            ..ZoneReport::counts_of(&self.key, &self.zone)
        }
    }

    /// Journals applied events (plus `extra` writes) and queues `pending`
    /// to be answered once they are durable.
    async fn commit_applied(&mut self, applied: Vec<Applied>, extra: Vec<Write>, pending: Pending) {
        if applied.is_empty() {
            self.queue(None, None, None, pending);
            return;
        }
        metrics::zone_events(applied.len());
        let mut writes = journal_writes(
            &self.context,
            &self.key,
            self.epoch,
            self.zone.seq(),
            &applied,
        );
        writes.extend(extra);
        let change = self.change_of(&applied);
        self.since_snapshot += applied.len() as u64;
        let snapshot = (self.since_snapshot >= self.context.snapshot_every).then(|| {
            self.since_snapshot = 0;
            (self.zone.seq(), codec::encode_stored(&self.zone.snapshot()))
        });
        let ticket = self.context.commit.submit_in(pending.lane(), writes).await;
        self.queue(Some(ticket), Some(change), snapshot, pending);
    }

    fn queue(
        &self,
        ticket: Option<parkme_storage::group_commit::CommitTicket>,
        change: Option<ZoneReport>,
        snapshot: Option<(Seq, Vec<u8>)>,
        pending: Pending,
    ) {
        let item = PumpItem {
            ticket,
            change,
            snapshot,
            pending,
        };
        if let Err(mpsc::error::SendError(item)) = self.pump.send(item) {
            item.pending.answer(Err(StorageError::Closed));
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

    /// A command that changes the zone: held while a layout change is
    /// prepared, run otherwise.
    async fn command_or_hold(&mut self, message: ZoneMsg) {
        match self.hold.as_mut() {
            Some(hold) => hold.keep(message),
            None => self.command(message).await,
        }
    }

    /// Runs one command that changes the zone.
    async fn command(&mut self, message: ZoneMsg) {
        match message {
            ZoneMsg::Book {
                request,
                idempotency,
                reply,
            } => self.book(request, idempotency, reply).await,
            ZoneMsg::Cancel { booking, reply } => self.cancel(booking, reply).await,
            ZoneMsg::Extend {
                booking,
                ends_at,
                reply,
            } => self.extend(booking, ends_at, reply).await,
            ZoneMsg::Find { booking, reply } => self.find(booking, reply).await,
            ZoneMsg::Sense { readings, reply } => self.sense(readings, reply).await,
            ZoneMsg::SetService {
                spot,
                out_of_service,
                reply,
            } => self.set_service(spot, out_of_service, reply).await,
            ZoneMsg::Expire => self.expire().await,
            other => debug_assert!(false, "{other:?} is not a zone command"),
        }
    }

    /// Stops the pump (it answers what is queued first), then leaves a
    /// snapshot so the next start replays nothing; not for a zone that
    /// leaves its layout, which is about to be forgotten.
    async fn close(&mut self) {
        if let Some((_, handle)) = self.timer.take() {
            handle.abort();
        }
        let leaving = match self.hold.take() {
            Some(hold) => {
                hold.timer.abort();
                hold.target.is_none()
            }
            None => false,
        };
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.pump, closed));
        let drained =
            tokio::time::timeout(std::time::Duration::from_secs(3), &mut self.pump_task).await;
        if matches!(drained, Ok(Ok(true))) && self.since_snapshot > 0 && !leaving {
            let bytes = codec::encode_stored(&self.zone.snapshot());
            let storage = self.context.commit.storage();
            pump::write_snapshot(
                storage.as_ref(),
                &self.key,
                self.epoch,
                self.zone.seq(),
                bytes,
            )
            .await;
        }
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
            // Not serving without them: an idempotent retry must find
            // the booking its first attempt made.
            if let Err(e) = args.context.commit.commit(records).await {
                tracing::warn!(zone = %args.key, error = %e, "could not rewrite booking records");
                return Err(e.into());
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let targets = PumpTargets {
            zone: myself.clone(),
            reports: args.reports.clone(),
            commit: args.context.commit.clone(),
            key: args.key.clone(),
            epoch,
        };
        Ok(ZoneActorState {
            zone,
            key: args.key,
            epoch,
            context: args.context,
            reports: args.reports,
            pump: tx,
            pump_task: tokio::spawn(pump::pump(rx, targets)),
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
        let _ = state
            .reports
            .send_message(ZoneReport::full(&state.key, &state.zone));
        // Holds that ran out while the zone was down expire now.
        state.rearm(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.close().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if message.is_counted() {
            metrics::mailbox_left();
        }
        let span = tracing::debug_span!("zone", zone = %state.key, message = ?message);
        async {
            match message {
                ZoneMsg::Prepare {
                    token,
                    layout,
                    reply,
                } => state.prepare(&myself, token, layout, reply),
                ZoneMsg::Commit { token, reply } => state.commit_layout(token, reply).await,
                ZoneMsg::Abort { token } => state.abort_layout(token).await,
                ZoneMsg::HoldExpired { token } => state.expire_hold(token),
                ZoneMsg::CommitFailed(e) => {
                    if let (StorageError::Fenced { .. }, Some(fenced)) = (&e, &state.context.fenced)
                    {
                        tracing::warn!(zone = %state.key, "fenced by a newer owner; stopping");
                        let _ = fenced.send(crate::node::Fenced {
                            facility: state.key.facility.clone(),
                            instance: state.context.instance,
                        });
                        myself.stop(Some("fenced".into()));
                        return Ok(());
                    }
                    return Err(format!("journal commit failed for {}: {e}", state.key).into());
                }
                ZoneMsg::Epoch(reply) => {
                    let _ = reply.send(state.epoch);
                }
                #[cfg(feature = "testing")]
                ZoneMsg::Panic => panic!("injected panic in zone {}", state.key),
                command => state.command_or_hold(command).await,
            }
            Ok::<(), ActorProcessingErr>(())
        }
        .instrument(span)
        .await?;
        state.rearm(&myself);
        Ok(())
    }
}
