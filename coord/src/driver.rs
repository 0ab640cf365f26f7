//! The async shell around [`Ownership`]: once per tick it announces this
//! node, renews its leases, reads the cluster and carries out what the
//! state machine decides, through a [`Host`] (the node's actors) that
//! claims, starts, flushes and stops facilities.
//!
//! Acquisitions and handoffs run as tasks beside the loop (a recovery can
//! take a while), bounded by the state machine's moves per round; their
//! outcomes come back to the loop, which is the only place the state
//! machine changes. When Redis cannot be read, the tick does nothing:
//! owners keep serving what they hold. A released facility is announced on
//! a hint channel so its next owner takes it at once instead of at its next
//! tick.
//!
//! This module must never decide ownership itself (that is
//! `parkme_cluster::ownership`), and never let a Redis call block a tick
//! past the coordination timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use parkme_cluster::{
    Action, Holding, Member, NodeId, NodeStatus, Observation, Ownership, OwnershipConfig,
};
use parkme_engine::FacilityId;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::redis_ops::{Coordination, Renewal};

/// What the node does for the coordination shell.
pub trait Host: Send + Sync + 'static {
    /// Every facility in the store.
    fn facilities(
        &self,
    ) -> impl std::future::Future<Output = Result<BTreeSet<FacilityId>, String>> + Send;
    /// The lease is ours: claim the facility in the store (fencing any
    /// older writer), recover and serve it. Returns the claimed epoch.
    fn acquire(
        &self,
        facility: &FacilityId,
    ) -> impl std::future::Future<Output = Result<u64, String>> + Send;
    /// Hand over: refuse new requests as retryable, flush, snapshot, stop.
    fn release(&self, facility: &FacilityId) -> impl std::future::Future<Output = ()> + Send;
    /// It is someone else's now: stop serving at once.
    fn drop_facility(&self, facility: &FacilityId) -> impl std::future::Future<Output = ()> + Send;
}

/// Tunables of the shell.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This node as it announces itself.
    pub member: Member,
    /// How often it renews and looks (a fifth of the lease by default).
    pub tick: Duration,
    pub ownership: OwnershipConfig,
}

/// What the rest of the node reads about the cluster: who holds what, as
/// of the last tick, and what this node holds now.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub members: Vec<Member>,
    pub leases: BTreeMap<FacilityId, NodeId>,
    pub epochs: BTreeMap<FacilityId, u64>,
    pub holding: BTreeMap<FacilityId, Holding>,
    /// The last tick could read Redis.
    pub redis_up: bool,
}

impl ClusterView {
    /// The member holding `facility`'s lease, if it is alive.
    pub fn owner(&self, facility: &FacilityId) -> Option<&Member> {
        let holder = self.leases.get(facility)?;
        self.members.iter().find(|m| &m.id == holder)
    }
}

/// A running shell's handle: the cluster view, the drain, and the fenced
/// reports of the store.
#[derive(Debug, Clone)]
pub struct Driver {
    view: Arc<RwLock<ClusterView>>,
    drain: Arc<Notify>,
    drained: CancellationToken,
    fenced: mpsc::UnboundedSender<FacilityId>,
}

enum Outcome {
    Acquired(FacilityId, Option<u64>),
    Released(FacilityId),
}

impl Driver {
    /// Starts the shell; it runs until `shutdown` is cancelled or a drain
    /// completes.
    pub fn spawn<H: Host>(
        coord: Coordination,
        pubsub: Option<redis::Client>,
        host: Arc<H>,
        config: DriverConfig,
        shutdown: CancellationToken,
    ) -> Driver {
        let (fenced, fenced_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            view: Arc::new(RwLock::new(ClusterView::default())),
            drain: Arc::new(Notify::new()),
            drained: CancellationToken::new(),
            fenced,
        };
        let shell = Shell {
            own: Ownership::new(config.member.id.clone(), config.ownership),
            coord,
            host,
            member: config.member,
            tick: config.tick,
            view: Arc::clone(&driver.view),
            fenced: fenced_rx,
        };
        let drain = Arc::clone(&driver.drain);
        let drained = driver.drained.clone();
        tokio::spawn(shell.run(pubsub, drain, drained, shutdown));
        driver
    }

    /// The cluster as of the last tick.
    pub fn view(&self) -> ClusterView {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this node serves `facility` now.
    pub fn owns(&self, facility: &FacilityId) -> bool {
        self.view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .holding
            .get(facility)
            == Some(&Holding::Owned)
    }

    /// The store refused our writes for `facility`: someone else claimed it.
    pub fn report_fenced(&self, facility: FacilityId) {
        let _ = self.fenced.send(facility);
    }

    /// Starts handing everything over (SIGTERM).
    pub fn drain(&self) {
        self.drain.notify_one();
    }

    /// Resolves once a drain handed everything over and this node left.
    pub async fn drained(&self) {
        self.drained.cancelled().await;
    }
}

struct Shell<H> {
    own: Ownership,
    coord: Coordination,
    host: Arc<H>,
    member: Member,
    tick: Duration,
    view: Arc<RwLock<ClusterView>>,
    fenced: mpsc::UnboundedReceiver<FacilityId>,
}

impl<H: Host> Shell<H> {
    async fn run(
        mut self,
        pubsub: Option<redis::Client>,
        drain: Arc<Notify>,
        drained: CancellationToken,
        shutdown: CancellationToken,
    ) {
        let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel::<Outcome>();
        let hints = Arc::new(Notify::new());
        if let Some(client) = pubsub {
            tokio::spawn(listen_for_hints(
                client,
                self.coord.hint_channel(),
                Arc::clone(&hints),
                shutdown.clone(),
            ));
        }
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                () = hints.notified() => {}
                () = drain.notified() => {
                    self.own.drain();
                    self.member.status = NodeStatus::Leaving;
                }
                Some(outcome) = outcomes.recv() => {
                    match outcome {
                        Outcome::Acquired(f, epoch) => self.own.acquired(&f, epoch.is_some()),
                        Outcome::Released(f) => self.own.released(&f),
                    }
                    self.publish_holding();
                    // Draining: start the next handoffs at once rather
                    // than at the next tick.
                    if !self.own.draining() {
                        continue;
                    }
                }
                Some(f) = self.fenced.recv() => {
                    if self.own.lost(&f) {
                        tracing::warn!(facility = %f, "fenced by a newer owner; dropping it");
                        self.host.drop_facility(&f).await;
                    }
                    self.publish_holding();
                    continue;
                }
            }
            self.round(&outcomes_tx).await;
            if self.own.draining() && self.own.is_empty() {
                if let Err(e) = self.coord.leave(&self.member.id).await {
                    tracing::warn!(error = %e, "could not leave the member list; it lapses instead");
                }
                drained.cancel();
                break;
            }
        }
    }

    /// One tick: announce, renew, look, act.
    async fn round(&mut self, outcomes: &mpsc::UnboundedSender<Outcome>) {
        if let Err(e) = self.coord.announce(&self.member).await {
            tracing::warn!(error = %e, "redis unreachable: keeping what this node serves");
            self.set_redis_up(false);
            return;
        }
        self.renew().await;
        let facilities = match self.host.facilities().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "could not list facilities; skipping this round");
                return;
            }
        };
        let listed: Vec<FacilityId> = facilities.iter().cloned().collect();
        let (members, leases, epochs) = match tokio::try_join!(
            self.coord.members(),
            self.coord.leases(&listed),
            self.coord.epochs()
        ) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreadable: keeping what this node serves");
                self.set_redis_up(false);
                return;
            }
        };
        let actions = self.own.observe(Observation {
            members: &members,
            leases: &leases,
            facilities: &facilities,
        });
        {
            let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
            view.members = members;
            view.leases = leases;
            view.epochs = epochs;
            view.redis_up = true;
        }
        for action in actions {
            self.act(action, outcomes);
        }
        self.publish_holding();
    }

    async fn renew(&mut self) {
        let held: Vec<FacilityId> = self.own.held().map(|(f, _)| f.clone()).collect();
        match self.coord.renew(&held, &self.member.id).await {
            Ok(outcomes) => {
                for (f, outcome) in held.iter().zip(outcomes) {
                    if outcome == Renewal::Lost && self.own.lost(f) {
                        tracing::warn!(facility = %f, "lease found in other hands; dropping it");
                        self.host.drop_facility(f).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying next tick"),
        }
    }

    fn act(&self, action: Action, outcomes: &mpsc::UnboundedSender<Outcome>) {
        let coord = self.coord.clone();
        let host = Arc::clone(&self.host);
        let me = self.member.id.clone();
        let outcomes = outcomes.clone();
        match action {
            Action::Acquire {
                facility,
                replacing,
            } => {
                tokio::spawn(async move {
                    let epoch = acquire(&coord, &*host, &facility, replacing.as_ref(), &me).await;
                    let _ = outcomes.send(Outcome::Acquired(facility, epoch));
                });
            }
            Action::Release(facility) => {
                tokio::spawn(async move {
                    host.release(&facility).await;
                    if let Err(e) = coord.release(&facility, &me).await {
                        tracing::warn!(facility = %facility, error = %e, "lease release failed; it lapses instead");
                    }
                    coord.hint_released(&facility).await;
                    let _ = outcomes.send(Outcome::Released(facility));
                });
            }
            Action::Drop(facility) => {
                tokio::spawn(async move {
                    tracing::warn!(facility = %facility, "another node holds the lease; dropping it");
                    host.drop_facility(&facility).await;
                });
            }
        }
    }

    fn set_redis_up(&self, up: bool) {
        self.view
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .redis_up = up;
    }

    fn publish_holding(&self) {
        let holding: BTreeMap<FacilityId, Holding> =
            self.own.held().map(|(f, h)| (f.clone(), h)).collect();
        self.view.write().unwrap_or_else(|e| e.into_inner()).holding = holding;
    }
}

/// Takes the lease, then has the host claim and serve the facility; gives
/// the lease back if the host could not. Returns the claimed epoch.
async fn acquire<H: Host>(
    coord: &Coordination,
    host: &H,
    facility: &FacilityId,
    replacing: Option<&NodeId>,
    me: &NodeId,
) -> Option<u64> {
    match coord.take(facility, replacing, me).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(facility = %facility, error = %e, "could not take the lease");
            return None;
        }
    }
    match host.acquire(facility).await {
        Ok(epoch) => {
            if let Err(e) = coord.set_epoch(facility, epoch).await {
                tracing::warn!(facility = %facility, error = %e, "could not record the epoch");
            }
            tracing::info!(facility = %facility, epoch, "facility acquired");
            Some(epoch)
        }
        Err(e) => {
            tracing::warn!(facility = %facility, error = %e, "could not start the facility; giving the lease back");
            let _ = coord.release(facility, me).await;
            None
        }
    }
}

async fn listen_for_hints(
    client: redis::Client,
    channel: String,
    hints: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(mut pubsub)) => {
                delay = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = messages.next() => match message {
                            Some(_) => hints.notify_one(),
                            None => break,
                        },
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "hint channel unavailable"),
            Err(_) => tracing::debug!("hint channel subscribe timed out"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
