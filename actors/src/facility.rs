//! The facility actor: supervisor of its zone actors and sequencer of what
//! readers see.
//!
//! It starts one zone actor per zone (`spawn_linked`), restarts a zone that
//! fails from durable state while the other zones keep serving, keeps the
//! read model (counts per zone, every spot) that answers `GET`s and
//! snapshots, numbers the changes that zones publish into the facility
//! `seq`, keeps a bounded history for resuming subscribers and broadcasts
//! each delta once to all of them.
//!
//! It also coordinates layout changes ([`relayout`]), which storage cannot
//! write in one transaction (one journal per zone, one record per
//! facility). The facility record is the one commit point: the zones a
//! change touches first *prepare* (check it against their durable state
//! and hold every later command), then the new record is written, then the
//! zones adopt it and run what they held. A refusal anywhere aborts the
//! change before the record, so nothing changed anywhere; after the record
//! the change completes, and a zone that missed it (a crash, a failure)
//! adopts the recorded layout when it starts. Listing and routing come from
//! what each zone reports holding, so they agree at every moment.
//!
//! It must never take part in a booking decision: bookings go straight to
//! the zone that owns the spot.

mod relayout;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use parkme_engine::{
    FacilityId, Seq, SpotId, SpotKind, SpotView, ZoneCounts, ZoneId, ZoneLayout, ZoneShape,
};
use parkme_storage::ZoneKey;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{broadcast, oneshot};

use crate::error::ActorError;
use crate::publish::{Delta, FacilityView, Snapshot, Start, Subscription, ZoneView};
use crate::record::FacilityRecord;
use crate::zone::{LayoutToken, ZoneActor, ZoneArgs, ZoneChange, ZoneContext, ZoneMsg};

/// Deltas kept for subscribers resuming with `since`.
pub const HISTORY: usize = 1024;
/// Deltas buffered per subscriber before it must resync with a snapshot.
pub const BROADCAST: usize = 1024;

/// Where a facility's commands go; replaced when a zone restarts or the
/// layout changes.
#[derive(Debug, Default)]
pub struct Routes {
    pub zones: HashMap<ZoneId, ActorRef<ZoneMsg>>,
    pub spots: HashMap<SpotId, ZoneId>,
    /// Zone ids in layout order.
    pub order: Vec<ZoneId>,
}

/// State a facility shares with the node's request paths.
#[derive(Debug)]
pub struct FacilityShared {
    pub routes: RwLock<Arc<Routes>>,
}

impl FacilityShared {
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.routes.read().unwrap_or_else(|e| e.into_inner()))
    }
}

pub enum FacilityMsg {
    ZoneChanged(ZoneChange),
    Ready(oneshot::Sender<()>),
    View(oneshot::Sender<FacilityView>),
    Spots {
        zone: ZoneId,
        reply: oneshot::Sender<Result<Vec<SpotView>, ActorError>>,
    },
    Candidates {
        kind: Option<SpotKind>,
        reply: oneshot::Sender<Vec<ZoneId>>,
    },
    Subscribe {
        since: Option<Seq>,
        reply: oneshot::Sender<Subscription>,
    },
    Relayout {
        record: FacilityRecord,
        reply: oneshot::Sender<Result<(), ActorError>>,
    },
    /// Stores a new sensor key (its generation and hash) in the record.
    SetSensorKey {
        generation: u64,
        hash: [u8; 32],
        reply: oneshot::Sender<Result<(), ActorError>>,
    },
    /// The old record of an abandoned layout change is durable again.
    RelayoutResolved {
        token: LayoutToken,
    },
    /// A failed zone is running again at a new address.
    ZoneRestarted {
        zone: ZoneId,
        layout: ZoneLayout,
        actor: ActorRef<ZoneMsg>,
    },
}

impl std::fmt::Debug for FacilityMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FacilityMsg::ZoneChanged(_) => "ZoneChanged",
            FacilityMsg::Ready(_) => "Ready",
            FacilityMsg::View(_) => "View",
            FacilityMsg::Spots { .. } => "Spots",
            FacilityMsg::Candidates { .. } => "Candidates",
            FacilityMsg::Subscribe { .. } => "Subscribe",
            FacilityMsg::Relayout { .. } => "Relayout",
            FacilityMsg::SetSensorKey { .. } => "SetSensorKey",
            FacilityMsg::RelayoutResolved { .. } => "RelayoutResolved",
            FacilityMsg::ZoneRestarted { .. } => "ZoneRestarted",
        })
    }
}

#[derive(Debug)]
pub struct FacilityActor;

#[derive(Debug)]
pub struct FacilityArgs {
    pub record: FacilityRecord,
    pub context: ZoneContext,
    pub shared: Arc<FacilityShared>,
    #[cfg(feature = "testing")]
    pub probe: crate::probe::Probe,
}

#[derive(Debug)]
struct ZoneSlot {
    /// The layout the facility record declares for the zone.
    layout: ZoneLayout,
    /// The spots the zone last reported holding: what is routed to it.
    routed: Vec<SpotId>,
    actor: ActorRef<ZoneMsg>,
    /// Zone seq published so far (`None` until the zone first reports).
    seq: Option<Seq>,
    view: ZoneView,
    spots: Vec<SpotView>,
    spot_index: HashMap<SpotId, usize>,
}

#[derive(Debug)]
pub struct FacilityState {
    id: FacilityId,
    record: FacilityRecord,
    context: ZoneContext,
    shared: Arc<FacilityShared>,
    zones: HashMap<ZoneId, ZoneSlot>,
    by_actor: HashMap<ActorId, ZoneId>,
    seq: Seq,
    history: VecDeque<Arc<Delta>>,
    updates: broadcast::Sender<Arc<Delta>>,
    waiting: Vec<oneshot::Sender<()>>,
    /// The last snapshot handed to a subscriber, shared (with its
    /// encodings) by every subscriber that starts at the same state, so a
    /// reconnect or relayout storm builds and encodes it once.
    last_snapshot: Option<Arc<Snapshot>>,
    /// Names the next layout change.
    next_token: LayoutToken,
    /// A layout change whose record write failed, while its old record is
    /// being written back; its zones hold until then.
    unresolved: Option<relayout::Unresolved>,
    #[cfg(feature = "testing")]
    probe: crate::probe::Probe,
}

fn spot_ids(layout: &ZoneLayout) -> Vec<SpotId> {
    match &layout.shape {
        ZoneShape::Spots(spots) => spots.iter().map(|s| s.id.clone()).collect(),
        ZoneShape::Counter { .. } => Vec::new(),
    }
}

fn empty_view(layout: &ZoneLayout) -> ZoneView {
    ZoneView {
        id: layout.id.clone(),
        name: layout.name.clone(),
        capacity: match layout.shape {
            ZoneShape::Counter { capacity, .. } => Some(capacity),
            ZoneShape::Spots(_) => None,
        },
        counts: ZoneCounts::default(),
    }
}

impl ZoneSlot {
    /// Takes what a zone reported into the read model; says whether the
    /// spots it holds differ from what was routed to it (a zone that missed
    /// a layout change until it restarted), which are then routed instead.
    fn take(&mut self, change: &ZoneChange) -> bool {
        let before = self.view.counts.clone();
        self.view.name.clone_from(&change.name);
        self.view.capacity = change.capacity;
        self.view.counts = change.counts.clone();
        let mut reroute = false;
        if change.full {
            self.spot_index = change
                .spots
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect();
            self.spots = change.spots.clone();
            if !self.routed.iter().eq(self.spots.iter().map(|s| &s.id)) {
                self.routed = self.spots.iter().map(|s| s.id.clone()).collect();
                reroute = true;
            }
        } else {
            for spot in &change.spots {
                if let Some(&i) = self.spot_index.get(&spot.id) {
                    self.spots[i] = spot.clone();
                }
            }
        }
        record_spot_gauges(&before, &self.view.counts);
        reroute
    }
}

async fn spawn_zone(
    myself: &ActorRef<FacilityMsg>,
    state_id: &FacilityId,
    layout: &ZoneLayout,
    context: &ZoneContext,
) -> Result<ActorRef<ZoneMsg>, ActorProcessingErr> {
    let args = ZoneArgs {
        key: ZoneKey::new(state_id.clone(), layout.id.clone()),
        layout: layout.clone(),
        context: context.clone(),
        facility: myself.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, ZoneActor, args, myself.get_cell()).await?;
    Ok(actor)
}

impl FacilityState {
    fn publish_routes(&self) {
        let mut routes = Routes::default();
        for zone in &self.record.layout.zones {
            let Some(slot) = self.zones.get(&zone.id) else {
                continue;
            };
            routes.order.push(zone.id.clone());
            routes.zones.insert(zone.id.clone(), slot.actor.clone());
            for spot in &slot.routed {
                routes.spots.insert(spot.clone(), zone.id.clone());
            }
        }
        *self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    fn view(&self) -> FacilityView {
        let layout = &self.record.layout;
        let mut totals = ZoneCounts::default();
        let zones: Vec<ZoneView> = layout
            .zones
            .iter()
            .filter_map(|z| self.zones.get(&z.id))
            .map(|slot| {
                totals.add(&slot.view.counts);
                slot.view.clone()
            })
            .collect();
        FacilityView {
            id: layout.id.clone(),
            name: layout.name.clone(),
            timezone: layout.timezone.clone(),
            location: layout.location,
            seq: self.seq,
            totals,
            zones,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let spots = self
            .record
            .layout
            .zones
            .iter()
            .filter_map(|z| self.zones.get(&z.id))
            .flat_map(|slot| slot.spots.iter().cloned())
            .collect();
        Snapshot {
            view: self.view(),
            spots,
            encoded: Default::default(),
        }
    }

    fn ready(&self) -> bool {
        self.zones.values().all(|z| z.seq.is_some())
    }

    fn wake_waiters(&mut self) {
        if self.ready() {
            for waiter in self.waiting.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn push_delta(&mut self, delta: Delta) {
        let delta = Arc::new(delta);
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Arc::clone(&delta));
        // No receivers is fine: nobody is watching.
        let _ = self.updates.send(delta);
    }

    fn zone_changed(&mut self, change: ZoneChange) {
        let Some(slot) = self.zones.get_mut(&change.key.zone) else {
            return;
        };
        let known = slot.seq;
        // Older than what is shown (queued before a layout change took the
        // zone's state directly): nothing new. A full report of the same
        // seq is harmless.
        if known.is_some_and(|k| change.zone_seq < k || (change.zone_seq == k && !change.full)) {
            return;
        }
        self.last_snapshot = None;
        let reroute = slot.take(&change);
        let advance = change
            .zone_seq
            .0
            .saturating_sub(known.unwrap_or(Seq::ZERO).0);
        slot.seq = Some(change.zone_seq.max(known.unwrap_or(Seq::ZERO)));
        let view = slot.view.clone();
        if advance > 0 && known.is_some() {
            let prev = self.seq;
            self.seq = Seq(prev.0 + advance);
            self.push_delta(Delta {
                facility: self.id.clone(),
                prev,
                seq: self.seq,
                zones: vec![view],
                spots: change.spots,
                relaid: change.full,
                published_at: std::time::Instant::now(),
                encoded: Default::default(),
            });
        } else if known.is_none() {
            // First report of a zone at start-up: part of the initial state.
            self.seq = Seq(self.seq.0 + change.zone_seq.0);
        }
        if reroute {
            self.publish_routes();
        }
        self.wake_waiters();
    }

    fn shared_snapshot(&mut self) -> Arc<Snapshot> {
        if let Some(snapshot) = &self.last_snapshot
            && snapshot.view.seq == self.seq
        {
            return Arc::clone(snapshot);
        }
        let snapshot = Arc::new(self.snapshot());
        self.last_snapshot = Some(Arc::clone(&snapshot));
        snapshot
    }

    fn subscribe(&mut self, since: Option<Seq>) -> Subscription {
        let updates = self.updates.subscribe();
        let start = match since {
            Some(since) if since == self.seq => Start::Resume(Vec::new()),
            Some(since) if since < self.seq => {
                let resumable = self
                    .history
                    .front()
                    .is_some_and(|first| first.prev <= since)
                    && self.history.iter().all(|d| !d.relaid || d.prev < since);
                if resumable {
                    Start::Resume(
                        self.history
                            .iter()
                            .filter(|d| d.prev >= since)
                            .cloned()
                            .collect(),
                    )
                } else {
                    Start::Snapshot(self.shared_snapshot())
                }
            }
            _ => Start::Snapshot(self.shared_snapshot()),
        };
        Subscription { start, updates }
    }

    fn candidates(&self, kind: Option<SpotKind>) -> Vec<ZoneId> {
        let available = |slot: &ZoneSlot| match kind {
            Some(k) => slot.view.counts.by_kind[k.index()].available,
            None => slot.view.counts.overall.available,
        };
        let mut zones: Vec<(u32, usize, ZoneId)> = self
            .record
            .layout
            .zones
            .iter()
            .enumerate()
            .filter_map(|(i, z)| {
                self.zones
                    .get(&z.id)
                    .map(|slot| (available(slot), i, z.id.clone()))
            })
            .collect();
        // Zones that look free first (the read model may lag a commit),
        // then the rest in layout order, so a stale count never hides room.
        zones.sort_by_key(|(free, i, _)| (*free == 0, *i));
        zones.into_iter().map(|(_, _, id)| id).collect()
    }
}

fn record_spot_gauges(before: &ZoneCounts, after: &ZoneCounts) {
    for state in parkme_engine::SpotState::ALL {
        let diff = f64::from(after.overall.get(state)) - f64::from(before.overall.get(state));
        if diff != 0.0 {
            metrics::gauge!("parkme_spots", "state" => state.as_str()).increment(diff);
        }
    }
}

/// Sends a request to a zone actor and waits for its answer; a zone that
/// is gone (restarting) is `Unavailable`.
pub(crate) async fn ask_zone<T>(
    actor: &ActorRef<ZoneMsg>,
    make: impl FnOnce(oneshot::Sender<Result<T, ActorError>>) -> ZoneMsg,
) -> Result<T, ActorError> {
    send_zone(actor, make)
        .await
        .unwrap_or(Err(ActorError::Unavailable("zone")))
}

/// Sends a request to a zone actor; its answer comes on the receiver,
/// which closes unanswered if the zone is gone.
pub(crate) fn send_zone<T>(
    actor: &ActorRef<ZoneMsg>,
    make: impl FnOnce(oneshot::Sender<Result<T, ActorError>>) -> ZoneMsg,
) -> oneshot::Receiver<Result<T, ActorError>> {
    let (tx, rx) = oneshot::channel();
    metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").increment(1.0);
    if actor.send_message(make(tx)).is_err() {
        metrics::gauge!("parkme_actor_mailbox_len", "actor" => "zone").decrement(1.0);
    }
    rx
}

impl Actor for FacilityActor {
    type Msg = FacilityMsg;
    type State = FacilityState;
    type Arguments = FacilityArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: FacilityArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let id = args.record.layout.id.clone();
        let mut zones = HashMap::new();
        let mut by_actor = HashMap::new();
        for layout in &args.record.layout.zones {
            let actor = spawn_zone(&myself, &id, layout, &args.context).await?;
            by_actor.insert(actor.get_id(), layout.id.clone());
            zones.insert(
                layout.id.clone(),
                ZoneSlot {
                    layout: layout.clone(),
                    routed: spot_ids(layout),
                    actor,
                    seq: None,
                    view: empty_view(layout),
                    spots: Vec::new(),
                    spot_index: HashMap::new(),
                },
            );
        }
        let (updates, _) = broadcast::channel(BROADCAST);
        let state = FacilityState {
            id,
            seq: Seq(args.record.seq_base),
            record: args.record,
            context: args.context,
            shared: args.shared,
            zones,
            by_actor,
            history: VecDeque::new(),
            updates,
            waiting: Vec::new(),
            last_snapshot: None,
            next_token: 0,
            unresolved: None,
            #[cfg(feature = "testing")]
            probe: args.probe,
        };
        state.publish_routes();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            FacilityMsg::ZoneChanged(change) => state.zone_changed(change),
            FacilityMsg::Ready(reply) => {
                state.waiting.push(reply);
                state.wake_waiters();
            }
            FacilityMsg::View(reply) => {
                let _ = reply.send(state.view());
            }
            FacilityMsg::Spots { zone, reply } => {
                let result = state
                    .zones
                    .get(&zone)
                    .map(|slot| slot.spots.clone())
                    .ok_or_else(|| ActorError::UnknownZone(zone.to_string()));
                let _ = reply.send(result);
            }
            FacilityMsg::Candidates { kind, reply } => {
                let _ = reply.send(state.candidates(kind));
            }
            FacilityMsg::Subscribe { since, reply } => {
                let _ = reply.send(state.subscribe(since));
            }
            FacilityMsg::ZoneRestarted {
                zone,
                layout,
                actor,
            } => match state.zones.get_mut(&zone) {
                Some(slot) if slot.layout == layout => {
                    slot.actor = actor.clone();
                    state.by_actor.insert(actor.get_id(), zone);
                    metrics::counter!("parkme_actor_restarts_total", "actor" => "zone")
                        .increment(1);
                    state.publish_routes();
                }
                // Its layout changed while it was restarting: start it
                // again on the one now declared.
                Some(_) => {
                    actor.stop(Some("zone layout changed while restarting".into()));
                    restart_zone(&myself, state, zone);
                }
                // It left the layout while it was restarting.
                None => actor.stop(Some("zone no longer in this layout".into())),
            },
            FacilityMsg::Relayout { record, reply } => {
                let result = relayout::run(&myself, state, record).await;
                let _ = reply.send(result);
            }
            FacilityMsg::SetSensorKey {
                generation,
                hash,
                reply,
            } => {
                let _ = reply.send(set_sensor_key(state, generation, hash).await);
            }
            FacilityMsg::RelayoutResolved { token } => {
                relayout::resolved(&myself, state, token);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop the zones gracefully: each answers what its pump holds and
        // writes a final snapshot. Left to ractor, a stopping supervisor
        // *kills* its children, which skips their `post_stop`, and they
        // would still hold storage after this facility is gone.
        myself
            .stop_children_and_wait(
                Some("facility stopping".into()),
                Some(std::time::Duration::from_secs(4)),
            )
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        let Some(zone) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        metrics::counter!("parkme_actor_failures_total", "actor" => "zone").increment(1);
        tracing::warn!(facility = %state.id, zone = %zone, error = %error, "zone actor failed; restarting from durable state");
        match &mut state.unresolved {
            // Not while a layout change it may have been part of is open:
            // it would serve commands its hold was keeping out.
            Some(unresolved) => unresolved.deferred.push(zone),
            None => restart_zone(&myself, state, zone),
        }
        Ok(())
    }
}

/// Starts a failed zone again from durable state, on the layout its slot
/// declares. Off the mailbox: storage may be down for a while, and the
/// facility keeps answering (requests for this zone get "restarting,
/// retry" from its dead address) until the zone is back.
fn restart_zone(myself: &ActorRef<FacilityMsg>, state: &FacilityState, zone: ZoneId) {
    let Some(layout) = state.zones.get(&zone).map(|slot| slot.layout.clone()) else {
        return;
    };
    let context = state.context.clone();
    let facility = state.id.clone();
    let myself = myself.clone();
    tokio::spawn(async move {
        let mut delay = std::time::Duration::from_millis(50);
        loop {
            if matches!(
                myself.get_status(),
                ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
            ) {
                return;
            }
            match spawn_zone(&myself, &facility, &layout, &context).await {
                Ok(actor) => {
                    let restarted = FacilityMsg::ZoneRestarted {
                        zone,
                        layout,
                        actor: actor.clone(),
                    };
                    if myself.send_message(restarted).is_err() {
                        actor.stop(Some("facility stopped".into()));
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(facility = %facility, zone = %zone, error = %e, "zone restart failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    });
}

/// Writes the record with a new sensor key; the record in memory changes
/// only once that write is durable.
async fn set_sensor_key(
    state: &mut FacilityState,
    generation: u64,
    hash: [u8; 32],
) -> Result<(), ActorError> {
    let mut record = state.record.clone();
    record.sensor_key_generation = generation;
    record.sensor_key_hash = hash;
    record.updated_at = state.context.clock.now();
    state
        .context
        .commit
        .storage()
        .put_facility(&state.id, record.encode())
        .await?;
    state.record = record;
    Ok(())
}

/// A facility's snapshot-encoding cache slot, for the edge.
pub fn encoded_slot(cache: &[OnceLock<Arc<str>>; 2], with_spots: bool) -> &OnceLock<Arc<str>> {
    &cache[usize::from(with_spots)]
}
