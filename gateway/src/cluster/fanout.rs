//! Cross-node fan-out (contract §1 and §7, "any node, same answers"): app
//! subscriptions on a node that does not own the facility.
//!
//! - **Publishing.** A facility's owner publishes each of its deltas once,
//!   to the Redis pub/sub channel `{prefix}cluster:deltas:{fid}`
//!   ([`spawn_publisher`]), whatever the number of subscribers anywhere.
//! - **Copies.** A node with local subscribers of a facility it does not
//!   own keeps a copy of it ([`Mirrors`]): a [`ReadModel`] fed by those
//!   deltas, started from the owner's image (fetched over the signed
//!   node-to-node channel, `GET /internal/facilities/{fid}/image`). Its
//!   subscribers get what the owner's get: a snapshot, then the same
//!   `prev`/`seq` chain; `since` resumes from the copy's history.
//! - **Gaps.** Pub/sub is lossy (a Redis failover or reconnect, a lagging
//!   publisher, an owner change): a delta that does not follow the copy's
//!   seq, a reconnect, or a quiet channel (no delta for [`RECHECK`]) makes
//!   the copy ask the owner for its image; a newer one reaches the
//!   subscribers as one `relaid` delta, after which each takes a fresh
//!   snapshot. Never a silent hole: the worst case is a snapshot late by
//!   [`RECHECK`], and while Redis is down the copies follow by those
//!   checks alone.
//!
//! Why pub/sub and not streams: deltas are only useful live, a copy
//! resyncs from the owner's image (which it needs anyway to start), so a
//! stream's stored history would buy a shorter recovery at the cost of a
//! write and memory per delta in Redis; the prev/seq chain already
//! detects every loss.
//!
//! This module must never block a facility's owner on Redis (publishing
//! is a task per facility, and a lagging one skips ahead), and never let a
//! copy grow without bound (its inbox and its buffer of early deltas are
//! bounded, and a copy nobody follows stops after [`IDLE`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use parkme_actors::peer::{self, PeerDelta, PeerImage};
use parkme_actors::{Node, ReadModel, Subscription};
use parkme_cluster::NodeId;
use parkme_coord::{Coordination, Driver};
use parkme_engine::{FacilityId, Seq};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::signature;
use crate::metrics;

/// Deltas published in one round trip at most.
const PUBLISH_BATCH: usize = 256;
/// A copy with no delta for this long asks the owner whether it missed one.
pub const RECHECK: Duration = Duration::from_secs(2);
/// A copy nobody follows for this long stops.
pub const IDLE: Duration = Duration::from_secs(30);
/// Messages queued for one copy; past it deltas are dropped (the gap is
/// then seen and mended from the owner's image).
const INBOX: usize = 4096;
/// Deltas a copy keeps while it waits for an image.
const EARLY: usize = 4096;
/// One image request's budget.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Between failed image requests.
const FETCH_RETRY: Duration = Duration::from_millis(200);

/// Why a subscription on a copy could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    #[error("facility {0} has no reachable owner yet; subscribe again shortly")]
    NoOwner(FacilityId),
}

/// Publishes `facility`'s deltas for the other nodes while it is served
/// here (until its read model closes).
pub fn spawn_publisher(node: Node, coord: Coordination, facility: FacilityId) {
    tokio::spawn(async move {
        let Ok(subscription) = node.subscribe(&facility, None).await else {
            return;
        };
        let channel = coord.deltas_channel(&facility);
        let mut updates = subscription.updates;
        loop {
            let first = match updates.recv().await {
                Ok(delta) => delta,
                Err(RecvError::Lagged(missed)) => {
                    // The copies see the gap and resync.
                    tracing::debug!(facility = %facility, missed, "delta publisher lagged");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mut batch = vec![peer::encode_delta(&first)];
            while batch.len() < PUBLISH_BATCH {
                match updates.try_recv() {
                    Ok(delta) => batch.push(peer::encode_delta(&delta)),
                    Err(TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            match coord.publish_all(&channel, &batch).await {
                Ok(()) => metrics::fanout_published(batch.len()),
                Err(e) => {
                    tracing::debug!(facility = %facility, error = %e, "could not publish deltas");
                }
            }
        }
    });
}

/// Where a copy answers a subscription.
type Reply = oneshot::Sender<Result<Subscription, MirrorError>>;

enum Command {
    Subscribe {
        since: Option<Seq>,
        reply: Reply,
    },
    Published(Vec<u8>),
    /// Redis reconnected: something may have been missed.
    Recheck,
}

enum Channel {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// This node's copies of facilities owned elsewhere.
pub struct Mirrors {
    coord: Coordination,
    driver: Driver,
    http: reqwest::Client,
    secret: Vec<u8>,
    me: NodeId,
    wait: Duration,
    copies: Mutex<HashMap<FacilityId, mpsc::Sender<Command>>>,
    channels: mpsc::UnboundedSender<Channel>,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirrors").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for MirrorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSettings")
            .field("me", &self.me)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// What the node tells [`Mirrors::start`].
pub struct MirrorSettings {
    pub coord: Coordination,
    pub driver: Driver,
    pub redis: redis::Client,
    pub http: reqwest::Client,
    pub secret: Vec<u8>,
    pub me: NodeId,
    /// How long a new subscriber waits for a facility without an owner.
    pub wait: Duration,
}

impl Mirrors {
    /// Starts the node's pub/sub listener; it runs until `stop`.
    pub fn start(settings: MirrorSettings, stop: CancellationToken) -> Arc<Mirrors> {
        let (channels, requests) = mpsc::unbounded_channel();
        let mirrors = Arc::new(Mirrors {
            coord: settings.coord,
            driver: settings.driver,
            http: settings.http,
            secret: settings.secret,
            me: settings.me,
            wait: settings.wait,
            copies: Mutex::new(HashMap::new()),
            channels,
        });
        tokio::spawn(listen(
            Arc::downgrade(&mirrors),
            settings.redis,
            requests,
            stop,
        ));
        mirrors
    }

    /// A subscription to this node's copy of `facility` (started on first
    /// use).
    pub async fn subscribe(
        self: &Arc<Self>,
        facility: &FacilityId,
        since: Option<Seq>,
    ) -> Result<Subscription, MirrorError> {
        // A copy that stopped just as it was asked is started again.
        for _ in 0..3 {
            let inbox = self.copy(facility);
            let (reply, answer) = oneshot::channel();
            if inbox
                .send(Command::Subscribe { since, reply })
                .await
                .is_err()
            {
                self.forget(facility, &inbox);
                continue;
            }
            match answer.await {
                Ok(result) => return result,
                Err(_) => self.forget(facility, &inbox),
            }
        }
        Err(MirrorError::NoOwner(facility.clone()))
    }

    /// Copies kept now.
    pub fn len(&self) -> usize {
        lock(&self.copies).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn copy(self: &Arc<Self>, facility: &FacilityId) -> mpsc::Sender<Command> {
        let mut copies = lock(&self.copies);
        if let Some(inbox) = copies.get(facility) {
            return inbox.clone();
        }
        let (inbox, commands) = mpsc::channel(INBOX);
        copies.insert(facility.clone(), inbox.clone());
        metrics::mirrored_facilities(copies.len());
        tokio::spawn(run_copy(
            Arc::clone(self),
            facility.clone(),
            inbox.clone(),
            commands,
        ));
        inbox
    }

    fn forget(&self, facility: &FacilityId, inbox: &mpsc::Sender<Command>) {
        let mut copies = lock(&self.copies);
        if copies.get(facility).is_some_and(|i| i.same_channel(inbox)) {
            copies.remove(facility);
        }
        metrics::mirrored_facilities(copies.len());
    }

    fn route(&self, channel: &str, command: impl FnOnce() -> Command) {
        let Some(facility) = self.coord.deltas_facility(channel) else {
            return;
        };
        let inbox = lock(&self.copies).get(&facility).cloned();
        if let Some(inbox) = inbox
            && inbox.try_send(command()).is_err()
        {
            // Full: the copy sees the gap at its next delta or check.
            metrics::fanout_dropped();
        }
    }

    fn recheck_all(&self) {
        let inboxes: Vec<_> = lock(&self.copies).values().cloned().collect();
        for inbox in inboxes {
            let _ = inbox.try_send(Command::Recheck);
        }
    }

    /// The owner's image of `facility` (`None`: still at `after`).
    async fn fetch(
        &self,
        facility: &FacilityId,
        after: Option<Seq>,
    ) -> Result<Option<PeerImage>, String> {
        let view = self.driver.view();
        let owner = view.owner(facility).ok_or_else(|| "no owner".to_owned())?;
        let mut url = format!("{}/internal/facilities/{facility}/image", owner.url);
        if let Some(after) = after {
            url.push_str(&format!("?after={}", after.0));
        }
        let mut headers = HeaderMap::new();
        signature::sign(
            &mut headers,
            &self.secret,
            &self.me.to_string(),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        );
        let answer = self
            .http
            .get(url)
            .headers(headers)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match answer.status() {
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::OK => {
                let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
                peer::decode_image(&bytes)
                    .map(Some)
                    .map_err(|e| format!("unreadable image: {e}"))
            }
            status => Err(format!("the owner answered {status}")),
        }
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<Option<PeerImage>, String>> + Send>>;

fn fetch_later(
    mirrors: &Arc<Mirrors>,
    facility: &FacilityId,
    after: Option<Seq>,
    delay: Duration,
) -> Fetch {
    let mirrors = Arc::clone(mirrors);
    let facility = facility.clone();
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        mirrors.fetch(&facility, after).await
    })
}

/// One copy: its model, the subscribers waiting for its first image and
/// the deltas that arrived before it.
struct Copy {
    facility: FacilityId,
    model: Option<ReadModel>,
    waiting: Vec<(Option<Seq>, Reply)>,
    early: Vec<PeerDelta>,
    /// A fetch is due (a gap): deltas wait in `early` meanwhile.
    resyncing: bool,
}

impl Copy {
    fn seq(&self) -> Option<Seq> {
        self.model.as_ref().map(ReadModel::seq)
    }

    /// Takes a published delta; `true` if the copy needs the owner's image.
    fn take(&mut self, delta: PeerDelta) -> bool {
        metrics::fanout_received();
        let Some(model) = self.model.as_mut().filter(|_| !self.resyncing) else {
            if self.early.len() < EARLY {
                self.early.push(delta);
            }
            return self.model.is_some();
        };
        if delta.seq <= model.seq() {
            return false;
        }
        let arrived = delta.clone();
        match model.apply_delta(delta.into_delta(Instant::now())) {
            Ok(()) => false,
            Err(gap) => {
                tracing::debug!(facility = %self.facility, %gap, "gap in the published deltas; asking the owner");
                metrics::fanout_resync("gap");
                self.resyncing = true;
                self.early.push(arrived);
                true
            }
        }
    }

    /// Takes the owner's image; `true` if another fetch is needed.
    fn take_image(&mut self, image: PeerImage) -> bool {
        let now = Instant::now();
        let ok = match self.model.as_mut() {
            None => match ReadModel::from_image(image) {
                Ok(model) => {
                    self.model = Some(model);
                    true
                }
                Err(_) => false,
            },
            Some(model) => match model.resync(image, now) {
                Ok(changed) => {
                    if changed {
                        metrics::fanout_resync("image");
                    }
                    true
                }
                Err(_) => false,
            },
        };
        if !ok {
            return true;
        }
        self.resyncing = false;
        let mut again = false;
        if let Some(model) = self.model.as_mut() {
            for delta in std::mem::take(&mut self.early) {
                if delta.seq <= model.seq() {
                    continue;
                }
                if model.apply_delta(delta.into_delta(now)).is_err() {
                    again = true;
                    self.resyncing = true;
                    break;
                }
            }
            for (since, reply) in self.waiting.drain(..) {
                let _ = reply.send(Ok(model.subscribe(since, now)));
            }
        }
        again
    }

    fn followed(&self) -> bool {
        !self.waiting.is_empty() || self.model.as_ref().is_some_and(|m| m.subscribers() > 0)
    }
}

/// Runs one copy until nobody followed it for [`IDLE`]; `own` is its
/// inbox (to leave the registry by, never a newer copy's entry).
async fn run_copy(
    mirrors: Arc<Mirrors>,
    facility: FacilityId,
    own: mpsc::Sender<Command>,
    mut commands: mpsc::Receiver<Command>,
) {
    let channel = mirrors.coord.deltas_channel(&facility);
    let (ack, subscribed) = oneshot::channel();
    if mirrors
        .channels
        .send(Channel::Subscribe(channel.clone(), ack))
        .is_ok()
    {
        // Subscribed before the image is asked for, so no delta falls
        // between; without Redis the copy follows by its checks alone.
        let _ = tokio::time::timeout(Duration::from_secs(2), subscribed).await;
    }
    let mut copy = Copy {
        facility: facility.clone(),
        model: None,
        waiting: Vec::new(),
        early: Vec::new(),
        resyncing: false,
    };
    let mut fetch: Option<Fetch> = Some(fetch_later(&mirrors, &facility, None, Duration::ZERO));
    let mut heard = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let mut unanswered_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Subscribe { since, reply } => match copy.model.as_mut() {
                        // Mid-resync too: the resync reaches it as a
                        // `relaid` delta, then a fresh snapshot.
                        Some(model) => {
                            let _ = reply.send(Ok(model.subscribe(since, Instant::now())));
                        }
                        _ => {
                            unanswered_since.get_or_insert_with(Instant::now);
                            copy.waiting.push((since, reply));
                        }
                    },
                    Command::Published(bytes) => {
                        heard = Instant::now();
                        match peer::decode_delta(&bytes) {
                            Ok(delta) if delta.facility == facility => {
                                if copy.take(delta) && fetch.is_none() {
                                    fetch = Some(fetch_later(&mirrors, &facility, None, Duration::ZERO));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(facility = %facility, error = %e, "unreadable published delta"),
                        }
                    }
                    Command::Recheck => {
                        if fetch.is_none() {
                            metrics::fanout_resync("reconnect");
                            fetch = Some(fetch_later(&mirrors, &facility, copy.seq(), Duration::ZERO));
                        }
                    }
                }
            }
            fetched = async { fetch.as_mut().expect("guarded by the select condition").await }, if fetch.is_some() => {
                fetch = None;
                match fetched {
                    Ok(Some(image)) => {
                        heard = Instant::now();
                        if copy.take_image(image) {
                            fetch = Some(fetch_later(&mirrors, &facility, None, FETCH_RETRY));
                        } else {
                            unanswered_since = None;
                        }
                    }
                    Ok(None) => {
                        heard = Instant::now();
                        if copy.resyncing {
                            fetch = Some(fetch_later(&mirrors, &facility, None, Duration::ZERO));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(facility = %facility, error = %e, "no image from the owner yet");
                        let after = if copy.resyncing { None } else { copy.seq() };
                        fetch = Some(fetch_later(&mirrors, &facility, after, FETCH_RETRY));
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if copy.followed() {
                    idle_since = None;
                } else if now.duration_since(*idle_since.get_or_insert(now)) >= IDLE {
                    break;
                }
                if unanswered_since.is_some_and(|t| now.duration_since(t) >= mirrors.wait) {
                    for (_, reply) in copy.waiting.drain(..) {
                        let _ = reply.send(Err(MirrorError::NoOwner(facility.clone())));
                    }
                    unanswered_since = None;
                }
                if fetch.is_none() && copy.model.is_some() && now.duration_since(heard) >= RECHECK {
                    heard = now;
                    fetch = Some(fetch_later(&mirrors, &facility, copy.seq(), Duration::ZERO));
                }
            }
        }
    }
    mirrors.forget(&facility, &own);
    let _ = mirrors.channels.send(Channel::Unsubscribe(channel));
}

/// The node's one pub/sub connection: subscribes the copies' channels and
/// routes each message to its copy; after a reconnect, resubscribes and
/// has every copy check with its owner.
async fn listen(
    mirrors: std::sync::Weak<Mirrors>,
    client: redis::Client,
    mut requests: mpsc::UnboundedReceiver<Channel>,
    stop: CancellationToken,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    while !stop.is_cancelled() {
        let connected =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await;
        let (mut sink, mut stream) = match connected {
            Ok(Ok(pubsub)) => pubsub.split(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "fan-out channel unavailable");
                // Take requests meanwhile, so copies do not wait on it.
                if !wait_taking(&mut requests, &mut wanted, delay, &stop).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                if !wait_taking(&mut requests, &mut wanted, delay, &stop).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        let mut resubscribed = true;
        for channel in &wanted {
            if sink.subscribe(channel).await.is_err() {
                resubscribed = false;
                break;
            }
        }
        if !resubscribed {
            continue;
        }
        if !first && let Some(mirrors) = mirrors.upgrade() {
            mirrors.recheck_all();
        }
        first = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                request = requests.recv() => match request {
                    None => return,
                    Some(Channel::Subscribe(channel, ack)) => {
                        let done = sink.subscribe(&channel).await.is_ok();
                        wanted.insert(channel);
                        let _ = ack.send(());
                        if !done {
                            break;
                        }
                    }
                    Some(Channel::Unsubscribe(channel)) => {
                        wanted.remove(&channel);
                        if sink.unsubscribe(&channel).await.is_err() {
                            break;
                        }
                    }
                },
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(mirrors) = mirrors.upgrade() else { return };
                    let channel = message.get_channel_name().to_owned();
                    let payload = message.get_payload_bytes().to_vec();
                    mirrors.route(&channel, || Command::Published(payload));
                }
            }
        }
        tracing::info!("fan-out channel lost; reconnecting");
    }
}

/// Sleeps `delay` while noting (and acknowledging) channel requests;
/// `false` when stopping.
async fn wait_taking(
    requests: &mut mpsc::UnboundedReceiver<Channel>,
    wanted: &mut HashSet<String>,
    delay: Duration,
    stop: &CancellationToken,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = stop.cancelled() => return false,
            () = &mut sleep => return true,
            request = requests.recv() => match request {
                None => return false,
                Some(Channel::Subscribe(channel, ack)) => {
                    wanted.insert(channel);
                    let _ = ack.send(());
                }
                Some(Channel::Unsubscribe(channel)) => {
                    wanted.remove(&channel);
                }
            },
        }
    }
}
