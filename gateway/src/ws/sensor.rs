//! The sensor socket, `GET /v1/sensors/{fid}` (contract §4).
//!
//! Handshake: the facility must exist (404) and the key must be this
//! facility's (401 missing or wrong, 403 another facility's), all before
//! any upgrade. Then one task per connection:
//!
//! - frames are read and parsed; bad messages are answered with error
//!   frames at once; good ones are dispatched to the node in arrival
//!   order (the first poll of each dispatch reaches the zone actors before
//!   the next frame is read), coalescing frames that are already buffered;
//! - dispatches are pipelined: reading goes on while earlier ones commit,
//!   up to a bound, then stops (back-pressure through TCP);
//! - answers come back in order and move the cumulative ack
//!   ([`super::acks`]); an ack is only ever sent for what the node
//!   reported durable or refused, so storage that stalls stalls the acks.
//!
//! This module must never ack a message the node has not answered.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{FuturesOrdered, SplitStream};
use futures_util::{FutureExt, StreamExt};
use parkme_actors::{ActorError, KeyCheck, SensorGrant};
use parkme_engine::{FacilityId, Reading};
use parkme_protocol::sensor::{
    self, BINCODE_PROTOCOL, Codec, Encoded, JSON_PROTOCOL, Rejected, SensorReply,
};
use serde::Deserialize;
use tokio::sync::Notify;

use super::acks::{AckTracker, Span};
use super::socket::{self, Buffers, ConnectionGauge, Liveness, Next, Pulse, close, write_loop};
use crate::auth::bearer;
use crate::cluster::relay::{Refusal, Relayed, SensorRelay};
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::extract::Id;
use crate::metrics::{self, SensorSocketCounters};
use crate::rate_limit::LimitKey;
use crate::state::AppState;

/// Sensors send batches of up to a frame: reads of a few KiB at a time.
const BUFFERS: Buffers = Buffers {
    read: 16 * 1024,
    write: 4 * 1024,
};
/// Messages dispatched and not yet answered, per connection.
const MAX_INFLIGHT_MESSAGES: usize = 64 * 1024;
/// Dispatches not yet answered, per connection.
const MAX_INFLIGHT_DISPATCHES: usize = 256;
/// Messages coalesced into one dispatch from frames already buffered.
const MAX_DISPATCH: usize = 1024;
/// Error frames waiting for the writer before reading pauses.
const MAX_QUEUED_ERRORS: usize = 1024;

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The key a sensor presents: `Authorization: Bearer`, `X-Sensor-Key`, or
/// `?key=` for devices that cannot set headers.
fn presented_key(headers: &HeaderMap, uri: &Uri) -> Result<Option<String>, ApiError> {
    if let Some(token) = bearer(headers)? {
        return Ok(Some(token.to_owned()));
    }
    if let Some(value) = headers.get("x-sensor-key") {
        let key = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed X-Sensor-Key header"))?;
        return Ok(Some(key.trim().to_owned()));
    }
    Ok(Query::<KeyQuery>::try_from_uri(uri)
        .ok()
        .and_then(|Query(q)| q.key)
        .filter(|k| !k.is_empty()))
}

/// 404 unknown facility, 401 no or wrong key, 403 another facility's key
/// (one key check against the facility named, whatever their number).
fn authorize(
    app: &AppState,
    id: &FacilityId,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<SensorGrant, ApiError> {
    let key = presented_key(headers, uri)?;
    app.node()
        .admit_sensor(id, key.as_deref())
        .map_err(|refused| match refused {
            KeyCheck::UnknownFacility => ApiError::unknown("facility", id.as_str()),
            KeyCheck::Missing => ApiError::unauthorized("a sensor key is required"),
            KeyCheck::Foreign => ApiError::forbidden("this sensor key belongs to another facility"),
            KeyCheck::Valid | KeyCheck::Wrong => ApiError::unauthorized("invalid sensor key"),
        })
}

/// `GET /v1/sensors/{fid}`.
#[utoipa::path(get, path = "/v1/sensors/{fid}", operation_id = "sensor_socket", tag = "websockets",
    summary = "The sensor websocket (contract §4)",
    description = "A websocket upgrade; its messages are described in this document's `x-websocket` section.",
    params(("fid" = String, Path, description = "The facility id."),
        ("key" = Option<String>, Query, description = "The sensor key, when no Authorization header can be sent.")),
    security(("sensor" = [])),
    responses((status = 101, description = "Switching protocols: the socket is open")))]
pub async fn handshake(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    fid: Result<Id<FacilityId>, ApiError>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let fid = match fid {
        Ok(Id(fid)) => fid,
        Err(error) => return error.into_response(),
    };
    let admitted = admit(&app, &fid, &headers, &uri, ip).await;
    let (grant, relay) = match admitted {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return super::not_an_upgrade(&rejection).into_response(),
    };
    let ws = socket::configure(ws, BUFFERS).protocols([JSON_PROTOCOL, BINCODE_PROTOCOL]);
    let codec = Codec::from_protocol(ws.selected_protocol().and_then(|p| p.to_str().ok()));
    let connections = app.connections().clone();
    ws.on_upgrade(move |socket| {
        super::bulk::run(connections.track_future(run(socket, app, fid, grant, relay, codec)))
    })
}

/// Who may connect: on the facility's owner (or a single node) the key
/// check of [`authorize`], with a relay kept for when the facility moves
/// away; on another cluster node, the owner's check, through the relay
/// the socket will use.
async fn admit(
    app: &AppState,
    fid: &FacilityId,
    headers: &HeaderMap,
    uri: &Uri,
    ip: std::net::IpAddr,
) -> Result<(Option<SensorGrant>, Option<SensorRelay>), ApiError> {
    let Some(cluster) = app.cluster() else {
        return Ok((Some(authorize(app, fid, headers, uri)?), None));
    };
    if !app.node().serves(fid) && app.node().is_known(fid).await {
        let key = presented_key(headers, uri)?
            .ok_or_else(|| ApiError::unauthorized("a sensor key is required"))?;
        let relay = SensorRelay::new(Arc::clone(cluster), key, ip);
        relay.admit(app, fid).await?;
        return Ok((None, Some(relay)));
    }
    let grant = authorize(app, fid, headers, uri)?;
    let relay =
        presented_key(headers, uri)?.map(|key| SensorRelay::new(Arc::clone(cluster), key, ip));
    Ok((Some(grant), relay))
}

/// Replies waiting for the writer. Acks are cumulative, so only the
/// latest is kept; errors go out before it.
#[derive(Debug, Default)]
struct Replies {
    errors: VecDeque<SensorReply>,
    ack: Option<u64>,
    ping: bool,
    close: Option<(u16, &'static str)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn next_reply(replies: &Mutex<Replies>, codec: Codec, counters: &SensorSocketCounters) -> Next {
    let reply = {
        let mut replies = lock(replies);
        if let Some(error) = replies.errors.pop_front() {
            error
        } else if let Some(seq) = replies.ack.take() {
            counters.ack();
            SensorReply::Ack { seq }
        } else if std::mem::take(&mut replies.ping) {
            return Next::Send(Message::Ping(Default::default()), None);
        } else if let Some((code, reason)) = replies.close {
            return Next::Close(code, reason);
        } else {
            return Next::Idle;
        }
    };
    let message = match sensor::encode_reply(codec, &reply) {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    };
    Next::Send(message, None)
}

/// The node's answers to one dispatch, in the order of `seqs`.
struct Answered {
    span: Span,
    seqs: Vec<u64>,
    results: Vec<Result<(), Refusal>>,
    /// The owner no longer takes the key this socket came with.
    revoked: bool,
}

type Dispatch = Pin<Box<dyn Future<Output = Answered> + Send>>;

/// Why the read loop ended.
#[derive(Debug)]
enum End {
    /// Tell the peer this code, then stop.
    Close(u16, &'static str),
    /// The peer closed (or vanished): answer its close if it sent one.
    Gone,
}

/// Messages read but not dispatched yet (frames coalesced together).
#[derive(Default)]
struct Pending {
    readings: Vec<Reading>,
    seqs: Vec<u64>,
}

struct Session<'a> {
    app: AppState,
    fid: FacilityId,
    limit_key: LimitKey,
    replies: &'a Mutex<Replies>,
    notify: &'a Notify,
    acks: AckTracker,
    inflight: FuturesOrdered<Dispatch>,
    inflight_messages: usize,
    pending: Pending,
    counters: SensorSocketCounters,
    /// Cluster mode: the way to the facility's owner when it is not here.
    relay: Option<SensorRelay>,
    /// The facility left this node while the socket was open: every
    /// later dispatch goes through the relay.
    moved: Arc<AtomicBool>,
    revoked: bool,
}

impl Session<'_> {
    fn can_read(&self) -> bool {
        self.inflight_messages < MAX_INFLIGHT_MESSAGES
            && self.inflight.len() < MAX_INFLIGHT_DISPATCHES
            && lock(self.replies).errors.len() < MAX_QUEUED_ERRORS
    }

    fn refuse(&mut self, rejected: Rejected) {
        tracing::debug!(facility = %self.fid, seq = ?rejected.seq, code = rejected.code, "sensor message refused");
        if let Some(seq) = rejected.seq {
            self.acks.settled(seq);
        }
        lock(self.replies).errors.push_back(rejected.into_reply());
    }

    /// Takes one frame in: refusals are answered now, readings wait in
    /// `pending` for [`Session::dispatch`].
    fn absorb(&mut self, message: Message) -> Result<(), End> {
        let frame = match &message {
            Message::Text(text) => sensor::parse_json(text),
            Message::Binary(bytes) => sensor::parse_bincode(bytes),
            Message::Close(_) => return Err(End::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let count = frame.len();
        self.counters.frame_in(count);
        if count == 0 {
            return Ok(());
        }
        let units = u32::try_from(count).unwrap_or(u32::MAX);
        if self
            .app
            .limits()
            .check_n(self.limit_key.clone(), units)
            .is_err()
        {
            metrics::rate_limited();
            tracing::info!(facility = %self.fid, "sensor flood past the rate limit; closing");
            return Err(End::Close(close::POLICY, "rate limit exceeded"));
        }
        for rejected in frame.rejected {
            self.refuse(rejected);
        }
        for message in frame.messages {
            match message.to_reading() {
                Ok(reading) => {
                    self.pending.readings.push(reading);
                    self.pending.seqs.push(message.seq());
                }
                Err(rejected) => self.refuse(rejected),
            }
        }
        Ok(())
    }

    /// Sends what is pending to the node. The dispatch is polled once
    /// right here, which hands every reading to its zone actor before the
    /// next frame is read: readings apply in the order they arrived.
    async fn dispatch(&mut self) {
        let Pending { readings, seqs } = std::mem::take(&mut self.pending);
        let Some(span) = Span::of(seqs.iter().copied()) else {
            return;
        };
        self.acks.dispatched(span);
        self.inflight_messages += seqs.len();
        let app = self.app.clone();
        let fid = self.fid.clone();
        let relay = self.relay.clone();
        let moved = Arc::clone(&self.moved);
        let mut answer: Dispatch = Box::pin(async move {
            let (results, revoked) = sense(app, fid, readings, relay, moved).await;
            Answered {
                span,
                seqs,
                results,
                revoked,
            }
        });
        let first = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(answered) => self
                .inflight
                .push_back(Box::pin(std::future::ready(answered))),
            Poll::Pending => self.inflight.push_back(answer),
        }
    }

    /// The node answered a dispatch: errors out, then the ack it allows.
    fn answered(&mut self, answered: Answered) {
        self.inflight_messages -= answered.seqs.len();
        {
            let mut replies = lock(self.replies);
            for (seq, result) in answered.seqs.iter().zip(answered.results) {
                if let Err(refusal) = result {
                    replies.errors.push_back(SensorReply::Error {
                        seq: Some(*seq),
                        code: refusal.code,
                        message: refusal.message,
                    });
                }
            }
        }
        self.revoked |= answered.revoked;
        self.acks.answered(answered.span);
        self.queue_ack();
    }

    fn queue_ack(&mut self) {
        if let Some(seq) = self.acks.next_ack() {
            lock(self.replies).ack = Some(seq);
        }
        self.notify.notify_one();
    }
}

/// One sensor connection, from upgrade to close. It closes with 1008
/// once the key it came with (`grant`) is no longer the facility's.
pub async fn run(
    socket: WebSocket,
    app: AppState,
    fid: FacilityId,
    grant: Option<SensorGrant>,
    relay: Option<SensorRelay>,
    codec: Codec,
) {
    let _gauge = ConnectionGauge::open("sensor");
    let mut key = grant;
    let mut key_current = key.as_mut().is_none_or(SensorGrant::still_valid);
    tracing::debug!(facility = %fid, ?codec, "sensor connected");
    let (mut sink, mut stream) = socket.split();
    let replies = Mutex::new(Replies::default());
    let notify = Notify::new();
    let counters = SensorSocketCounters::new();
    let writer = write_loop(&mut sink, &notify, "sensor", || {
        next_reply(&replies, codec, &counters)
    });
    tokio::pin!(writer);
    // A child of the shared token, awaited by one pinned future: polling
    // it at every wake-up locks only this connection's node.
    let shutdown = app.shutdown().child_token().cancelled_owned();
    tokio::pin!(shutdown);
    let mut session = Session {
        limit_key: LimitKey::Facility(fid.to_string()),
        app,
        fid,
        replies: &replies,
        notify: &notify,
        acks: AckTracker::default(),
        inflight: FuturesOrdered::new(),
        inflight_messages: 0,
        pending: Pending::default(),
        counters: counters.clone(),
        relay,
        moved: Arc::new(AtomicBool::new(false)),
        revoked: false,
    };
    let mut liveness = Liveness::default();
    let mut ticker = socket::liveness_ticker();
    let end = loop {
        if !key_current || session.revoked {
            tracing::info!(facility = %session.fid, "sensor key revoked; closing");
            break End::Close(close::POLICY, "sensor key revoked");
        }
        let can_read = session.can_read();
        tokio::select! {
            biased;
            () = &mut shutdown => break End::Close(close::GOING_AWAY, "server shutting down"),
            changed = key_changed(&mut key) => match (changed, key.as_mut()) {
                (true, Some(grant)) => key_current = grant.still_valid(),
                // The node is going away: nothing left to watch.
                _ => key = None,
            },
            written = &mut writer => {
                if let Err(e) = written {
                    tracing::debug!(facility = %session.fid, error = %e, "sensor socket write failed");
                }
                return;
            }
            Some(answered) = session.inflight.next(), if !session.inflight.is_empty() => {
                session.answered(answered);
            }
            frame = stream.next(), if can_read => {
                liveness.heard();
                match read_frames(&mut session, &mut stream, frame).await {
                    Ok(()) => {}
                    Err(end) => break end,
                }
            }
            _ = ticker.tick() => match liveness.tick() {
                // A connection stalled by back-pressure is not read, so
                // its pongs are not seen: only a reading one can be dead.
                Pulse::Dead if can_read => break End::Gone,
                Pulse::Ping | Pulse::Dead => {
                    lock(&replies).ping = true;
                    notify.notify_one();
                }
                Pulse::Fine => {}
            },
        }
    };
    let (code, reason) = match end {
        End::Close(code, reason) => (code, reason),
        // Flushes the reply to the peer's close frame, if any.
        End::Gone => (1000, ""),
    };
    if code == close::GOING_AWAY {
        // Let what was dispatched commit and be acked before going (the
        // application bounds how long it waits for every connection).
        let drain = async {
            while let Some(answered) = session.inflight.next().await {
                session.answered(answered);
            }
        };
        tokio::select! {
            () = drain => {}
            _ = &mut writer => return,
        }
    }
    lock(&replies).close = Some((code, reason));
    notify.notify_one();
    let _ = tokio::time::timeout(socket::CLOSE_GRACE, &mut writer).await;
    if code != 1000 {
        linger(&mut stream).await;
    }
}

/// Applies one dispatch where the facility is: on this node's actors, or
/// through the relay once it is elsewhere (resending what the old owner
/// refused because it was leaving). `true` if the key was revoked.
async fn sense(
    app: AppState,
    fid: FacilityId,
    readings: Vec<Reading>,
    relay: Option<SensorRelay>,
    moved: Arc<AtomicBool>,
) -> (Vec<Result<(), Refusal>>, bool) {
    let count = readings.len();
    if let Some(relay) = &relay
        && (moved.load(Ordering::Relaxed) || !app.node().serves(&fid))
    {
        moved.store(true, Ordering::Relaxed);
        return relayed(relay.sense(&app, &fid, readings).await, count);
    }
    let again = relay.as_ref().map(|_| readings.clone());
    let results = match app.node().sense(&fid, readings).await {
        Ok(results) => results,
        Err(e) => vec![Err(e); count],
    };
    let left = |e: &ActorError| e.is_retryable() || matches!(e, ActorError::UnknownFacility(_));
    if let (Some(relay), Some(readings)) = (&relay, again)
        && results.iter().any(|r| r.as_ref().is_err_and(left))
        && !app.node().serves(&fid)
    {
        moved.store(true, Ordering::Relaxed);
        return relayed(relay.sense(&app, &fid, readings).await, count);
    }
    let results = results
        .into_iter()
        .map(|r| r.map_err(|e| Refusal::from(ApiError::from(e))))
        .collect();
    (results, false)
}

fn relayed(relayed: Relayed, count: usize) -> (Vec<Result<(), Refusal>>, bool) {
    match relayed {
        Relayed::Answered(results) => (
            results
                .into_iter()
                .map(|r| match r {
                    None => Ok(()),
                    Some(refusal) => Err(refusal),
                })
                .collect(),
            false,
        ),
        Relayed::Revoked(error) => (vec![Err(Refusal::from(error)); count], true),
    }
}

/// Waits until the facility's key changes: `true` then, `false` if the
/// facility is gone (never, if there is nothing to watch).
async fn key_changed(key: &mut Option<SensorGrant>) -> bool {
    match key {
        Some(grant) => grant.current.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Takes the frame `select!` read plus every frame already buffered behind
/// it (up to [`MAX_DISPATCH`] messages), then dispatches them as one.
async fn read_frames(
    session: &mut Session<'_>,
    stream: &mut SplitStream<WebSocket>,
    first: Option<Result<Message, axum::Error>>,
) -> Result<(), End> {
    let mut next = first;
    let outcome = loop {
        let step = match next {
            None => Err(End::Gone),
            Some(Err(error)) => Err(read_error(&session.fid, &error)),
            Some(Ok(message)) => session.absorb(message),
        };
        if step.is_err() {
            break step;
        }
        if session.pending.readings.len() >= MAX_DISPATCH || !session.can_read() {
            break Ok(());
        }
        match stream.next().now_or_never() {
            Some(frame) => next = frame,
            None => break Ok(()),
        }
    };
    session.dispatch().await;
    session.queue_ack();
    outcome
}

fn read_error(fid: &FacilityId, error: &axum::Error) -> End {
    match socket::close_code_for(error) {
        Some(close::TOO_BIG) => {
            tracing::info!(facility = %fid, "sensor frame over 64 KiB; closing");
            End::Close(close::TOO_BIG, "frame over 64 KiB")
        }
        Some(code) => {
            tracing::debug!(facility = %fid, error = %error, "sensor protocol error");
            End::Close(code, "protocol error")
        }
        None => End::Gone,
    }
}

/// After our close frame, reads (and drops) what the peer still sends
/// until it closes, so the socket is not reset under unread data.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::time::timeout(socket::CLOSE_GRACE, drain).await;
}
