//! The facility actor: supervisor of its zone actors and sequencer of what
//! readers see.
//!
//! It starts one zone actor per zone (`spawn_linked`), restarts a zone that
//! fails from durable state while the other zones keep serving, routes
//! commands to the zone that holds each spot, and feeds what the zones
//! report into its [`ReadModel`] (views, snapshots, `seq`, history, the
//! broadcast), a plain value that does that job alone.
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

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use parkme_engine::{
    EngineError, FacilityId, Reading, Seq, SpotId, SpotKind, SpotView, ZoneId, ZoneLayout,
    ZoneShape,
};
use parkme_storage::{Epoch, ZoneKey};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::error::ActorError;
use crate::metrics;
use crate::publish::{FacilityView, Subscription, ZoneReport};
use crate::read_model::ReadModel;
use crate::record::FacilityRecord;
use crate::zone::{LayoutToken, ZoneArgs, ZoneContext, ZoneMsg};

/// Where a facility's commands go; replaced when a zone restarts or the
/// layout changes.
#[derive(Debug, Default)]
pub struct Routes {
    pub zones: HashMap<ZoneId, ActorRef<ZoneMsg>>,
    pub spots: HashMap<SpotId, ZoneId>,
    /// Zone ids in layout order.
    pub order: Vec<ZoneId>,
}

impl Routes {
    /// The zones a reading goes to (a plate read: every zone; a heartbeat
    /// whose sensor is a spot id: that spot's zone, which keeps the spot
    /// live), or its answer when it goes to none: any other heartbeat is
    /// fine, an unknown spot or zone is refused.
    pub fn zones_of(&self, reading: &Reading) -> Result<&[ZoneId], Result<(), ActorError>> {
        match reading {
            Reading::Spot { spot, .. } => self
                .spots
                .get(spot)
                .map(std::slice::from_ref)
                .ok_or_else(|| Err(EngineError::UnknownSpot(spot.clone()).into())),
            Reading::Count { zone, .. } => self
                .zones
                .get_key_value(zone)
                .map(|(zone, _)| std::slice::from_ref(zone))
                .ok_or_else(|| Err(ActorError::UnknownZone(zone.to_string()))),
            Reading::Plate { .. } => Ok(&self.order),
            Reading::Heartbeat { sensor } => SpotId::parse(sensor)
                .ok()
                .and_then(|spot| self.spots.get(&spot))
                .map(std::slice::from_ref)
                .ok_or(Ok(())),
        }
    }
}

/// State a facility shares with the node's request paths.
#[derive(Debug)]
pub struct FacilityShared {
    pub routes: RwLock<Arc<Routes>>,
    /// Cluster mode: the record fence this start claimed; every record
    /// write goes under it, so an owner that was replaced cannot write
    /// the record late. `None` on a single node.
    pub fence: Option<Epoch>,
}

impl FacilityShared {
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.routes.read().unwrap_or_else(|e| e.into_inner()))
    }
}

pub enum FacilityMsg {
    ZoneChanged(ZoneReport),
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

/// Zones report through a ref derived from these two, so they never see
/// the facility's message type.
impl From<ZoneReport> for FacilityMsg {
    fn from(report: ZoneReport) -> Self {
        FacilityMsg::ZoneChanged(report)
    }
}

impl TryFrom<FacilityMsg> for ZoneReport {
    type Error = FacilityMsg;

    fn try_from(message: FacilityMsg) -> Result<Self, FacilityMsg> {
        match message {
            FacilityMsg::ZoneChanged(report) => Ok(report),
            other => Err(other),
        }
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
}

#[derive(Debug)]
pub struct FacilityState {
    id: FacilityId,
    record: FacilityRecord,
    context: ZoneContext,
    shared: Arc<FacilityShared>,
    zones: HashMap<ZoneId, ZoneSlot>,
    by_actor: HashMap<ActorId, ZoneId>,
    model: ReadModel,
    waiting: Vec<oneshot::Sender<()>>,
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

async fn spawn_zone(
    myself: &ActorRef<FacilityMsg>,
    facility: &FacilityId,
    layout: &ZoneLayout,
    context: &ZoneContext,
) -> Result<ActorRef<ZoneMsg>, ActorProcessingErr> {
    let args = ZoneArgs {
        key: ZoneKey::new(facility.clone(), layout.id.clone()),
        layout: layout.clone(),
        context: context.clone(),
        reports: myself.get_derived(),
    };
    args.spawn(myself.get_cell()).await
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

    fn wake_waiters(&mut self) {
        if self.model.is_ready() {
            for waiter in self.waiting.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// Takes a zone's report into the read model; a full report of spots
    /// other than those routed to the zone (a zone that missed a layout
    /// change until it restarted) routes what the zone really holds.
    fn zone_changed(&mut self, report: ZoneReport) {
        let zone = report.zone.clone();
        let held: Option<Vec<SpotId>> = report
            .full
            .then(|| report.spots.iter().map(|s| s.id.clone()).collect());
        if !self.model.zone_changed(report, Instant::now()) {
            return;
        }
        if let (Some(held), Some(slot)) = (held, self.zones.get_mut(&zone))
            && slot.routed != held
        {
            slot.routed = held;
            self.publish_routes();
        }
        self.wake_waiters();
    }

    fn spots(&self, zone: &ZoneId) -> Result<Vec<SpotView>, ActorError> {
        self.model
            .spots(zone)
            .ok_or_else(|| ActorError::UnknownZone(zone.to_string()))
    }

    fn zone_restarted(
        &mut self,
        myself: &ActorRef<FacilityMsg>,
        zone: ZoneId,
        layout: ZoneLayout,
        actor: ActorRef<ZoneMsg>,
    ) {
        match self.zones.get_mut(&zone) {
            Some(slot) if slot.layout == layout => {
                slot.actor = actor.clone();
                self.by_actor.insert(actor.get_id(), zone);
                metrics::zone_restarted();
                self.publish_routes();
            }
            // Its layout changed while it was restarting: start it again on
            // the one now declared.
            Some(_) => {
                actor.stop(Some("zone layout changed while restarting".into()));
                restart_zone(myself, self, zone);
            }
            // It left the layout while it was restarting.
            None => actor.stop(Some("zone no longer in this layout".into())),
        }
    }
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
            let slot = ZoneSlot {
                layout: layout.clone(),
                routed: spot_ids(layout),
                actor,
            };
            zones.insert(layout.id.clone(), slot);
        }
        let state = FacilityState {
            id,
            model: ReadModel::new(&args.record.layout, Seq(args.record.seq_base), true),
            record: args.record,
            context: args.context,
            shared: args.shared,
            zones,
            by_actor,
            waiting: Vec::new(),
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
        let span = tracing::debug_span!("facility", facility = %state.id, message = ?message);
        async {
            match message {
                FacilityMsg::ZoneChanged(report) => state.zone_changed(report),
                FacilityMsg::Ready(reply) => {
                    state.waiting.push(reply);
                    state.wake_waiters();
                }
                FacilityMsg::View(reply) => {
                    let _ = reply.send(state.model.view());
                }
                FacilityMsg::Spots { zone, reply } => {
                    let _ = reply.send(state.spots(&zone));
                }
                FacilityMsg::Candidates { kind, reply } => {
                    let _ = reply.send(state.model.candidates(kind));
                }
                FacilityMsg::Subscribe { since, reply } => {
                    let _ = reply.send(state.model.subscribe(since, Instant::now()));
                }
                FacilityMsg::ZoneRestarted {
                    zone,
                    layout,
                    actor,
                } => state.zone_restarted(&myself, zone, layout, actor),
                FacilityMsg::Relayout { record, reply } => {
                    let _ = reply.send(relayout::run(&myself, state, record).await);
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
        }
        .instrument(span)
        .await;
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
        metrics::zone_failed();
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
        .put_facility(&state.id, record.encode(), state.shared.fence)
        .await?;
    state.record = record;
    Ok(())
}
