//! A facility's layout change, all or nothing.
//!
//! Storage has no transaction across a facility's zones (one journal per
//! zone, one record per facility), so one write is the commit point: the
//! facility record carrying the new layout. In order:
//!
//! 1. **Prepare.** Every zone whose layout changes, and every zone that
//!    leaves, checks the change against its state once everything it wrote
//!    before is durable, and from then on holds every command that could
//!    change it (bounded by [`crate::zone::HOLD_LIMIT`] and
//!    [`crate::zone::MAX_HELD`]: past them commands are refused as
//!    retryable). A refusal (`spot_has_live_booking`) or a zone that cannot
//!    answer aborts the change: the zones run what they held, and nothing
//!    changed anywhere.
//! 2. **Start** the new zones, not yet routed, on storage emptied of what
//!    an earlier zone under the same id left behind.
//! 3. **Commit point:** write the new record, its seq base moved past every
//!    event of the zones that leave, plus one for the change. A failed
//!    write has an unknown outcome, so the old record is written back
//!    before any zone is released; while storage refuses that too, the
//!    zones keep holding (their commands are refused as retryable), later
//!    changes are refused as retryable, and a background task keeps trying.
//! 4. **Apply:** the zones adopt their layouts and run what they held; the
//!    facility takes their new state from their answers and serves the new
//!    layout in one step, which one delta (marked `relaid`) gives to
//!    subscribers.
//! 5. **Retire** the zones that left: stop them, drop their storage.
//!
//! A crash before the record leaves the old record and zones that never
//! journaled the change. After it, each zone adopts the recorded layout
//! when it starts, which the engine accepts because the zone held every
//! command since its check. Either way the facility is exactly in the old
//! or exactly in the new layout.
//!
//! This module must never release a prepared zone before the record's
//! outcome is known, and never write the record before every zone the
//! change touches has prepared.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parkme_engine::{FacilityId, Seq, ZoneId, ZoneLayout, ZoneState};
use parkme_storage::{Storage, StorageError, ZoneKey};
use ractor::ActorRef;
use tokio::time::{Instant, timeout, timeout_at};

use super::{FacilityMsg, FacilityState, ZoneSlot, spawn_zone, spot_ids};
use crate::error::ActorError;
use crate::probe::{RelayoutStep, StepAction};
use crate::publish::ZoneReport;
use crate::record::FacilityRecord;
use crate::zone::{self, LayoutToken, ZoneMsg};

/// How long the zones together may take to check a change.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one storage call of a change may take. (A write that timed
/// out may still land; the in-process backends serialize it before the
/// write that follows.)
const STORAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the zones together may take to journal their new layouts.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A layout change whose record write failed, while its old record is
/// being written back in the background.
#[derive(Debug)]
pub(super) struct Unresolved {
    token: LayoutToken,
    prepared: Vec<ActorRef<ZoneMsg>>,
    /// Zones that failed meanwhile; restarted once it is settled.
    pub(super) deferred: Vec<ZoneId>,
}

/// What a new layout changes, zone by zone.
#[derive(Debug)]
struct Plan {
    /// Zones that stay with another layout, in the new layout's order.
    changed: Vec<ZoneLayout>,
    /// Zones that leave, in the old layout's order.
    removed: Vec<ZoneId>,
    /// Zones that are new, in the new layout's order.
    added: Vec<ZoneLayout>,
}

impl Plan {
    fn new(state: &FacilityState, record: &FacilityRecord) -> Plan {
        let next: HashMap<&ZoneId, &ZoneLayout> =
            record.layout.zones.iter().map(|z| (&z.id, z)).collect();
        Plan {
            changed: record
                .layout
                .zones
                .iter()
                .filter(|z| {
                    state
                        .zones
                        .get(&z.id)
                        .is_some_and(|slot| slot.layout != **z)
                })
                .cloned()
                .collect(),
            removed: state
                .record
                .layout
                .zones
                .iter()
                .filter(|z| !next.contains_key(&z.id) && state.zones.contains_key(&z.id))
                .map(|z| z.id.clone())
                .collect(),
            added: record
                .layout
                .zones
                .iter()
                .filter(|z| !state.zones.contains_key(&z.id))
                .cloned()
                .collect(),
        }
    }
}

/// A zone that checked the change and now holds its commands.
#[derive(Debug)]
struct Prepared {
    zone: ZoneId,
    actor: ActorRef<ZoneMsg>,
    /// Its seq at the check, which nothing moves until the change ends.
    seq: Seq,
    leaving: bool,
}

fn injected() -> ActorError {
    ActorError::Storage(StorageError::Unavailable("injected failure".into()))
}

fn timed_out(what: &str) -> ActorError {
    ActorError::Storage(StorageError::Unavailable(format!("{what} timed out")))
}

#[cfg(feature = "testing")]
async fn reached(state: &FacilityState, step: RelayoutStep) -> StepAction {
    state.probe.at(step).await
}

#[cfg(not(feature = "testing"))]
async fn reached(_state: &FacilityState, _step: RelayoutStep) -> StepAction {
    StepAction::Continue
}

/// Replaces the facility's layout with the one in `record`, all or
/// nothing (see the module documentation).
pub(super) async fn run(
    myself: &ActorRef<FacilityMsg>,
    state: &mut FacilityState,
    mut record: FacilityRecord,
) -> Result<(), ActorError> {
    if state.unresolved.is_some() {
        return Err(ActorError::Unavailable("facility"));
    }
    state.next_token += 1;
    let token = state.next_token;
    let plan = Plan::new(state, &record);
    let prepared = prepare(state, &plan, token).await?;
    if reached(state, RelayoutStep::Prepared).await == StepAction::Fail {
        abort(&prepared, token);
        return Err(injected());
    }
    let started = match start_new_zones(myself, state, &plan).await {
        Ok(started) => started,
        Err(e) => {
            abort(&prepared, token);
            return Err(e);
        }
    };
    record.created_at = state.record.created_at;
    record.seq_base = state.record.seq_base
        + 1
        + prepared
            .iter()
            .filter(|p| p.leaving)
            .map(|p| p.seq.0)
            .sum::<u64>();
    if let Err(e) = commit_record(state, &record).await {
        stop_started(state, started);
        if fenced(&e) {
            // Refused, so not written: a newer owner holds the record.
            abort(&prepared, token);
        } else {
            settle_failed_commit(myself, state, prepared, token).await;
        }
        return Err(e);
    }
    let acks = commit_zones(state, &prepared, token).await;
    let leaving = install(state, record, &plan, started, acks);
    reached(state, RelayoutStep::Applied).await;
    retire(state, leaving).await;
    Ok(())
}

/// Phase one: every zone the change touches checks it and starts holding.
/// On any refusal or silence every zone asked is told to abort (a zone that
/// answers late gets the abort after its prepare).
async fn prepare(
    state: &FacilityState,
    plan: &Plan,
    token: LayoutToken,
) -> Result<Vec<Prepared>, ActorError> {
    let targets = plan
        .changed
        .iter()
        .map(|layout| (layout.id.clone(), Some(layout.clone())))
        .chain(plan.removed.iter().map(|id| (id.clone(), None)));
    let mut asked = Vec::new();
    for (zone, layout) in targets {
        let Some(slot) = state.zones.get(&zone) else {
            continue;
        };
        let actor = slot.actor.clone();
        let leaving = layout.is_none();
        let answer = zone::request(&actor, |reply| ZoneMsg::Prepare {
            token,
            layout,
            reply,
        });
        asked.push((zone, actor, leaving, answer));
    }
    let deadline = Instant::now() + PREPARE_TIMEOUT;
    let mut prepared = Vec::with_capacity(asked.len());
    let mut everyone = Vec::with_capacity(asked.len());
    let mut failure: Option<ActorError> = None;
    for (zone, actor, leaving, answer) in asked {
        everyone.push(actor.clone());
        let answer = match timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Err(ActorError::Unavailable("zone")),
        };
        match answer {
            Ok(seq) => prepared.push(Prepared {
                zone,
                actor,
                seq,
                leaving,
            }),
            Err(e) => {
                // The first refusal says most; a silent zone only if none.
                let refusal = matches!(e, ActorError::Engine(_));
                if failure
                    .as_ref()
                    .is_none_or(|f| refusal && !matches!(f, ActorError::Engine(_)))
                {
                    failure = Some(e);
                }
            }
        }
    }
    match failure {
        None => Ok(prepared),
        Some(e) => {
            for actor in everyone {
                let _ = actor.send_message(ZoneMsg::Abort { token });
            }
            Err(e)
        }
    }
}

fn abort(prepared: &[Prepared], token: LayoutToken) {
    for zone in prepared {
        let _ = zone.actor.send_message(ZoneMsg::Abort { token });
    }
}

/// Starts the new zones, unrouted, each on storage emptied of what an
/// earlier zone under its id left.
async fn start_new_zones(
    myself: &ActorRef<FacilityMsg>,
    state: &mut FacilityState,
    plan: &Plan,
) -> Result<Vec<(ZoneLayout, ActorRef<ZoneMsg>)>, ActorError> {
    let storage = Arc::clone(state.context.commit.storage());
    let mut started = Vec::with_capacity(plan.added.len());
    for layout in &plan.added {
        let key = ZoneKey::new(state.id.clone(), layout.id.clone());
        let dropped = match timeout(STORAGE_TIMEOUT, storage.drop_zone(&key)).await {
            Ok(result) => result.map_err(ActorError::from),
            Err(_) => Err(timed_out("dropping a zone's old storage")),
        };
        let spawned = match dropped {
            Ok(()) => spawn_zone(myself, &state.id, layout, &state.context)
                .await
                .map_err(|e| {
                    tracing::warn!(zone = %key, error = %e, "new zone failed to start");
                    ActorError::Unavailable("zone")
                }),
            Err(e) => Err(e),
        };
        match spawned {
            Ok(actor) => {
                state.by_actor.insert(actor.get_id(), layout.id.clone());
                started.push((layout.clone(), actor));
            }
            Err(e) => {
                stop_started(state, started);
                return Err(e);
            }
        }
    }
    Ok(started)
}

fn stop_started(state: &mut FacilityState, started: Vec<(ZoneLayout, ActorRef<ZoneMsg>)>) {
    for (_, actor) in started {
        state.by_actor.remove(&actor.get_id());
        actor.stop(Some("layout change abandoned".into()));
    }
}

async fn write_record(state: &FacilityState, bytes: Vec<u8>) -> Result<(), ActorError> {
    let storage = state.context.commit.storage();
    let fence = state.shared.fence;
    match timeout(
        STORAGE_TIMEOUT,
        storage.put_facility(&state.id, bytes, fence),
    )
    .await
    {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(timed_out("writing the facility record")),
    }
}

/// The commit point.
async fn commit_record(state: &FacilityState, record: &FacilityRecord) -> Result<(), ActorError> {
    if reached(state, RelayoutStep::Committing).await == StepAction::Fail {
        return Err(injected());
    }
    write_record(state, record.encode()).await?;
    if reached(state, RelayoutStep::Committed).await == StepAction::Fail {
        return Err(injected());
    }
    Ok(())
}

/// A record write refused because a newer owner claimed the record: it
/// did not land, and no later write of this start will.
fn fenced(e: &ActorError) -> bool {
    matches!(e, ActorError::Storage(StorageError::Fenced { .. }))
}

/// The record write failed and may or may not have landed: write the old
/// record back, and only then release the zones. If storage refuses that
/// too, the zones keep holding while a background task keeps trying. A
/// write-back refused as fenced ends it too: the newer owner claimed the
/// record after whatever landed, and reads it as the layout.
async fn settle_failed_commit(
    myself: &ActorRef<FacilityMsg>,
    state: &mut FacilityState,
    prepared: Vec<Prepared>,
    token: LayoutToken,
) {
    let old = state.record.encode();
    match write_record(state, old.clone()).await {
        Ok(()) => abort(&prepared, token),
        Err(e) if fenced(&e) => abort(&prepared, token),
        Err(e) => {
            tracing::warn!(facility = %state.id, error = %e, "layout change failed and its outcome is unknown; its zones hold until the old layout is written back");
            state.unresolved = Some(Unresolved {
                token,
                prepared: prepared.into_iter().map(|p| p.actor).collect(),
                deferred: Vec::new(),
            });
            write_back_in_background(
                myself.clone(),
                Arc::clone(state.context.commit.storage()),
                (state.id.clone(), state.shared.fence),
                old,
                token,
            );
        }
    }
}

fn write_back_in_background(
    myself: ActorRef<FacilityMsg>,
    storage: Arc<dyn Storage>,
    (id, fence): (FacilityId, Option<parkme_storage::Epoch>),
    old: Vec<u8>,
    token: LayoutToken,
) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            if matches!(
                myself.get_status(),
                ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
            ) {
                return;
            }
            let written = storage.put_facility(&id, old.clone(), fence);
            match timeout(STORAGE_TIMEOUT, written).await {
                Ok(Ok(()) | Err(StorageError::Fenced { .. })) => {
                    let _ = myself.send_message(FacilityMsg::RelayoutResolved { token });
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(facility = %id, error = %e, "writing back the old layout failed; retrying");
                }
                Err(_) => {
                    tracing::warn!(facility = %id, "writing back the old layout timed out; retrying");
                }
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    });
}

/// The old record is durable again: release the zones of that change.
pub(super) fn resolved(myself: &ActorRef<FacilityMsg>, state: &mut FacilityState, token: u64) {
    let Some(unresolved) = state.unresolved.take_if(|u| u.token == token) else {
        return;
    };
    tracing::info!(facility = %state.id, "old layout written back; layout change abandoned");
    for actor in &unresolved.prepared {
        let _ = actor.send_message(ZoneMsg::Abort { token });
    }
    for zone in unresolved.deferred {
        super::restart_zone(myself, state, zone);
    }
}

/// Phase two for the zones that stay: each adopts its layout, runs what it
/// held, and answers with its full state once that is durable. A zone that
/// does not answer (it failed, or its journal is slow) gets there on its
/// own: it adopts the recorded layout when its write lands or when it
/// restarts, and reports it then.
async fn commit_zones(
    state: &FacilityState,
    prepared: &[Prepared],
    token: LayoutToken,
) -> HashMap<ZoneId, ZoneReport> {
    let mut asked = Vec::new();
    for zone in prepared.iter().filter(|p| !p.leaving) {
        if reached(state, RelayoutStep::ZoneCommit(zone.zone.clone())).await == StepAction::Fail {
            #[cfg(feature = "testing")]
            let _ = zone.actor.send_message(ZoneMsg::Panic);
        }
        let answer = zone::request(&zone.actor, |reply| ZoneMsg::Commit { token, reply });
        asked.push((zone.zone.clone(), answer));
    }
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let mut acks = HashMap::with_capacity(asked.len());
    for (zone, answer) in asked {
        match timeout_at(deadline, answer).await {
            Ok(Ok(Ok(change))) => {
                acks.insert(zone, change);
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(facility = %state.id, zone = %zone, error = %e, "zone failed to journal its new layout; it adopts it when it restarts");
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(facility = %state.id, zone = %zone, "zone did not confirm its new layout in time; it reports it once it has");
            }
        }
    }
    acks
}

/// Serves the new layout, in one step of the mailbox: the record, the
/// zones' new state, routes, seq and one relaid delta. Returns the zones
/// that left, still running, for [`retire`].
fn install(
    state: &mut FacilityState,
    record: FacilityRecord,
    plan: &Plan,
    started: Vec<(ZoneLayout, ActorRef<ZoneMsg>)>,
    acks: HashMap<ZoneId, ZoneReport>,
) -> Vec<(ZoneId, ActorRef<ZoneMsg>)> {
    for layout in &plan.changed {
        if let Some(slot) = state.zones.get_mut(&layout.id) {
            slot.layout = layout.clone();
            if let Some(ack) = acks.get(&layout.id) {
                slot.routed = ack.spots.iter().map(|s| s.id.clone()).collect();
            }
        }
    }
    let mut leaving = Vec::with_capacity(plan.removed.len());
    for id in &plan.removed {
        if let Some(slot) = state.zones.remove(id) {
            state.by_actor.remove(&slot.actor.get_id());
            leaving.push((id.clone(), slot.actor));
        }
    }
    let mut reports: Vec<ZoneReport> = acks.into_values().collect();
    for (layout, actor) in started {
        // A new zone starts empty at seq 0 (its storage was dropped), and
        // its first report at seq 0 publishes nothing: the read model (and
        // the delta) must already hold its spots and counts.
        let key = ZoneKey::new(state.id.clone(), layout.id.clone());
        reports.push(ZoneReport::full(
            &key,
            &ZoneState::new(state.id.clone(), layout.clone()),
        ));
        let slot = ZoneSlot {
            routed: spot_ids(&layout),
            actor,
            layout,
        };
        state.zones.insert(slot.layout.id.clone(), slot);
    }
    state.model.relayout(
        &record.layout,
        record.seq_base,
        reports,
        std::time::Instant::now(),
    );
    state.record = record;
    state.publish_routes();
    leaving
}

/// Stops the zones that left and drops their storage. Waits for each: its
/// last writes must land before the drop, or a zone declared again under
/// its id would recover them. A drop that fails only leaves garbage: the
/// storage of a zone id is dropped again before that id is declared again.
async fn retire(state: &FacilityState, leaving: Vec<(ZoneId, ActorRef<ZoneMsg>)>) {
    for (zone, actor) in leaving {
        let _ = actor
            .stop_and_wait(
                Some("zone removed from layout".into()),
                Some(Duration::from_secs(4)),
            )
            .await;
        let key = ZoneKey::new(state.id.clone(), zone);
        let storage = state.context.commit.storage();
        match timeout(STORAGE_TIMEOUT, storage.drop_zone(&key)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(zone = %key, error = %e, "dropping a removed zone failed"),
            Err(_) => tracing::warn!(zone = %key, "dropping a removed zone timed out"),
        }
    }
}
