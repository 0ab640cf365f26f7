//! The app socket, `GET /v1/stream` (contract §5).
//!
//! Anyone may read; a user token (header or `?token=`) also allows `book`
//! and `cancel`, which go through the same validation, limits and node
//! calls as the HTTP API, until the token expires: later booking ops are
//! answered `token_expired` and the socket goes on reading. Sockets per
//! IP and ops per socket and per IP are capped ([`super::guard`]). One
//! task per connection holds:
//!
//! - the writer ([`super::socket::write_loop`]) draining the connection's
//!   [`Outbox`];
//! - one *forwarder* future per subscribed facility, moving deltas from
//!   the facility's broadcast into the outbox (which conflates them when
//!   the client is behind) and fetching a fresh snapshot when its
//!   facility lapsed (the merge outgrew its bound, the broadcast lagged,
//!   the layout changed) and the writer reached it;
//! - booking ops in flight, and the reader of client ops.
//!
//! Deltas and snapshots are encoded once per wire shape and the bytes
//! shared by every subscriber (the `encoded` caches of [`Delta`] and
//! [`Snapshot`]; the facility hands every subscriber at one seq the same
//! `Arc<Snapshot>`).
//!
//! This module must never let a client that does not read grow the
//! server's memory: everything it holds per connection is bounded.
//!
//! Over 600 lines only with its unit tests (the `tests` module at the end).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{
    Message, Utf8Bytes, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use parkme_actors::{Booked, Delta, Start, Subscription};
use parkme_engine::{BookingId, FacilityId, Seq};
use parkme_protocol::app::{self, ClientOp, Detail, JSON_PROTOCOL, ServerMessage, Unreadable};
use parkme_protocol::rest;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::guard::{OpLimiter, SocketSlot, Verdict};
use super::outbox::{Item, Outbox, Pushed, Taken};
use super::socket::{self, Buffers, ConnectionGauge, Liveness, Next, Pulse, close, write_loop};
use crate::auth::{Principal, Session, bearer, unix_now};
use crate::bookings::{self, checked_idempotency_key};
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::metrics;
use crate::rate_limit::LimitKey;
use crate::state::AppState;
use crate::wire;

/// Apps send small ops: a small read buffer keeps idle subscribers cheap.
const BUFFERS: Buffers = Buffers {
    read: 1024,
    write: 4 * 1024,
};
/// Facilities one connection may follow.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// Booking ops running at once per connection before reading pauses.
const MAX_OPS_IN_FLIGHT: usize = 16;

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `GET /v1/stream`.
#[utoipa::path(get, path = "/v1/stream", operation_id = "app_socket", tag = "websockets",
    summary = "The app websocket (contract §5)",
    description = "A websocket upgrade; its messages are described in this document's `x-websocket` section.",
    params(("token" = Option<String>, Query, description = "A user token, when no Authorization header can be sent.")),
    security((), ("user" = [])),
    responses((status = 101, description = "Switching protocols: the socket is open")))]
pub async fn handshake(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = match bearer(&headers) {
        Ok(Some(token)) => Some(token.to_owned()),
        Ok(None) => Query::<TokenQuery>::try_from_uri(&uri)
            .ok()
            .and_then(|Query(q)| q.token)
            .filter(|t| !t.is_empty()),
        Err(error) => return error.into_response(),
    };
    let session = match app.auth().session(token.as_deref()) {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return super::not_an_upgrade(&rejection).into_response(),
    };
    let Some(slot) = app.stream_guard().admit(ip) else {
        metrics::ws_refused("sockets_per_ip");
        return ApiError {
            code: "too_many_connections",
            message: "too many app sockets open from this address; close one or retry later".into(),
            ..ApiError::rate_limited(1)
        }
        .into_response();
    };
    let connections = app.connections().clone();
    socket::configure(ws, BUFFERS)
        .protocols([JSON_PROTOCOL])
        .on_upgrade(move |socket| {
            connections.track_future(run(socket, app, session, token, ip, slot))
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared bytes as a text frame, without copying them per subscriber.
fn shared_text(text: &Arc<str>) -> Message {
    struct Shared(Arc<str>);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    let bytes = Bytes::from_owner(Shared(Arc::clone(text)));
    Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from(&**text)))
}

/// The writer's side of the outbox: what to send next, encoded.
fn next_frame(outbox: &Mutex<Outbox>) -> Next {
    let taken = lock(outbox).take();
    let item = match taken {
        Taken::Item(item) => item,
        Taken::Close(code, reason) => return Next::Close(code, reason),
        Taken::Nothing => return Next::Idle,
    };
    match item {
        Item::Reply(reply) => Next::Send(Message::Text(reply.to_json().into()), None),
        Item::Ping => Next::Send(Message::Ping(Bytes::new()), None),
        Item::Snapshot(snapshot, detail) => {
            let text =
                wire::encoded_once(&snapshot.edge, detail, || wire::snapshot(&snapshot, detail));
            Next::Send(shared_text(&text), None)
        }
        Item::Delta(delta, detail) => {
            let text =
                wire::encoded_once(&delta.edge, detail, || wire::shared_delta(&delta, detail));
            Next::Send(shared_text(&text), Some(delta.published_at))
        }
        Item::Merged(merged) => Next::Send(
            Message::Text(merged.to_json().into()),
            Some(merged.published_at()),
        ),
    }
}

type Forwarder<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Op = Pin<Box<dyn Future<Output = ServerMessage> + Send>>;

/// Where a forwarder writes.
#[derive(Clone, Copy)]
struct Sink<'a> {
    outbox: &'a Mutex<Outbox>,
    notify: &'a Notify,
}

impl Sink<'_> {
    fn reply(&self, message: ServerMessage) {
        lock(self.outbox).push_reply(message);
        self.notify.notify_one();
    }
}

/// Moves one facility's deltas into the outbox until cancelled. When the
/// facility lapsed and the writer asks (`want`), fetches a fresh snapshot
/// and follows the subscription that comes with it.
async fn forward(
    app: AppState,
    facility: FacilityId,
    generation: u64,
    mut updates: broadcast::Receiver<Arc<Delta>>,
    want: Arc<Notify>,
    cancel: CancellationToken,
    sink: Sink<'_>,
) {
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let (conflated, dropped) = metrics::ws_merges();
    loop {
        let received = tokio::select! {
            biased;
            () = &mut cancelled => return,
            () = want.notified() => {
                match resubscribe(&app, &facility, generation, &cancel, sink).await {
                    Some(fresh) => updates = fresh,
                    None => return,
                }
                sink.notify.notify_one();
                continue;
            }
            received = updates.recv() => received,
        };
        match received {
            Ok(delta) => match lock(sink.outbox).push_delta(generation, delta) {
                Pushed::Queued | Pushed::Stale | Pushed::Lapsed | Pushed::Resync => {}
                Pushed::Conflated => conflated.increment(1),
                Pushed::Dropped => dropped.increment(1),
                Pushed::Unsubscribed => return,
            },
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(facility = %facility, missed, "subscriber lagged; a fresh snapshot follows");
                if !lock(sink.outbox).lapse(generation, &facility) {
                    return;
                }
            }
            Err(RecvError::Closed) => {
                // The facility stopped here (it moved to another node, or
                // restarted): follow it where it is now, from a fresh
                // snapshot; an error only if it is nowhere.
                if !lock(sink.outbox).lapse(generation, &facility) {
                    return;
                }
                match resubscribe(&app, &facility, generation, &cancel, sink).await {
                    Some(fresh) => updates = fresh,
                    None => return,
                }
            }
        }
        sink.notify.notify_one();
    }
}

/// Swaps a fresh snapshot into a lapsed facility's queue; its live
/// updates, or `None` when the subscription ended.
async fn resubscribe(
    app: &AppState,
    facility: &FacilityId,
    generation: u64,
    cancel: &CancellationToken,
    sink: Sink<'_>,
) -> Option<broadcast::Receiver<Arc<Delta>>> {
    // A facility between two owners answers 503 for a moment (up to a
    // failover, twice the lease): keep following it meanwhile.
    let mut tries = 0;
    let fresh = loop {
        let fresh = subscribe_anywhere(app, facility, None).await;
        if cancel.is_cancelled() {
            return None;
        }
        match fresh {
            Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE && tries < 40 => {
                tries += 1;
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            }
            fresh => break fresh,
        }
    };
    let subscription = match fresh {
        Ok(subscription) => subscription,
        Err(error) => {
            sink.reply(ServerMessage::error(
                None,
                Some(facility.as_str()),
                error.code,
                error.message,
            ));
            return None;
        }
    };
    let Subscription {
        start: Start::Snapshot(snapshot),
        catch_up,
        updates,
    } = subscription
    else {
        debug_assert!(
            false,
            "a subscription without `since` starts with a snapshot"
        );
        return None;
    };
    if !lock(sink.outbox).resync(generation, snapshot, catch_up) {
        return None;
    }
    metrics::ws_snapshot_resent();
    Some(updates)
}

struct Conn<'a> {
    app: AppState,
    session: Session,
    /// The user token of the handshake (booking ops on a cluster node).
    token: Option<String>,
    ip: IpAddr,
    ops_limit: OpLimiter,
    sink: Sink<'a>,
    subscriptions: HashMap<FacilityId, CancellationToken>,
    generation: u64,
    forwarders: FuturesUnordered<Forwarder<'a>>,
    ops: FuturesUnordered<Op>,
}

impl<'a> Conn<'a> {
    fn error(
        &self,
        req: Option<&Value>,
        facility: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.sink
            .reply(ServerMessage::error(req, facility, code, message));
    }

    /// How booking ops go on a cluster node (`None`: straight to this
    /// node's actors, as on a single node).
    fn via_routes(&self) -> Option<ViaRoutes> {
        Some(ViaRoutes {
            routes: self.app.routes()?.clone(),
            token: self.token.clone()?,
            ip: self.ip,
        })
    }

    fn can_read(&self) -> bool {
        self.ops.len() < MAX_OPS_IN_FLIGHT && !lock(self.sink.outbox).replies_full()
    }

    /// Counts one op against the socket's and the IP's rates: `Ok` to go
    /// on, `Err` with a close code for a flood. A refused op is answered
    /// `rate_limited` (echoing its `req` when readable) and not run.
    fn admit_op(&mut self, message: &Message) -> Result<bool, (u16, &'static str)> {
        let verdict = self.ops_limit.check();
        let per_ip = match verdict {
            Verdict::Allowed => return Ok(true),
            Verdict::Flood => {
                metrics::ws_refused("op_flood");
                return Err((close::POLICY, "op flood past the rate limit"));
            }
            Verdict::Limited { per_ip } => per_ip,
        };
        metrics::ws_refused("rate_limited");
        let req = match message {
            Message::Text(text) => app::parse_op(text).map_or_else(|e| e.req, ClientOp::req),
            _ => None,
        };
        let message = if per_ip {
            "too many ops from this address; slow down (a flood closes the socket)"
        } else {
            "too many ops on this socket; slow down (a flood closes the socket)"
        };
        self.error(req.as_ref(), None, "rate_limited", message);
        Ok(false)
    }

    async fn on_message(&mut self, message: Message) {
        let text = match &message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.error(
                    None,
                    None,
                    "unsupported_frame",
                    "the app socket speaks JSON text frames",
                );
                return;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return,
        };
        metrics::ws_frame_in("app");
        match app::parse_op(text) {
            Ok(op) => self.on_op(op).await,
            Err(Unreadable { req, message }) => {
                self.error(req.as_ref(), None, "malformed_message", message);
            }
        }
    }

    async fn on_op(&mut self, op: ClientOp) {
        match op {
            ClientOp::Subscribe {
                facility,
                detail,
                since,
                req,
            } => self.subscribe(req, &facility, detail, since).await,
            ClientOp::Unsubscribe { facility, .. } => {
                if let Ok(id) = FacilityId::parse(&facility) {
                    if let Some(cancel) = self.subscriptions.remove(&id) {
                        cancel.cancel();
                    }
                    lock(self.sink.outbox).unsubscribe(&id);
                }
            }
            ClientOp::Book {
                req,
                facility,
                input,
                idempotency_key,
            } => {
                let Some(app) = self.signed_in(req.as_ref()) else {
                    return;
                };
                let principal = self.session.principal.clone();
                let via = self.via_routes();
                self.ops.push(Box::pin(async move {
                    let booked = async {
                        let key = idempotency_key
                            .as_deref()
                            .map(checked_idempotency_key)
                            .transpose()?;
                        let facility = FacilityId::parse(&facility)
                            .map_err(|_| ApiError::unknown("facility", &facility))?;
                        if let Some(via) = via {
                            let body = serde_json::to_vec(&input).unwrap_or_default();
                            let path = format!("/v1/facilities/{facility}/bookings");
                            return via.send(Method::POST, &path, key.as_deref(), body).await;
                        }
                        check_user_limit(&app, &principal).await?;
                        bookings::book(&app, &principal, &facility, input, key)
                            .await
                            .map(|(Booked::Created(b) | Booked::Replayed(b))| (&b).into())
                            .map_err(Refused::from)
                    }
                    .await;
                    booking_reply(req, booked)
                }));
            }
            ClientOp::Cancel { req, booking } => {
                let Some(app) = self.signed_in(req.as_ref()) else {
                    return;
                };
                let principal = self.session.principal.clone();
                let via = self.via_routes();
                self.ops.push(Box::pin(async move {
                    let cancelled = async {
                        let id = BookingId::parse(&booking)
                            .map_err(|_| ApiError::unknown("booking", &booking))?;
                        if let Some(via) = via {
                            let path = format!("/v1/bookings/{id}");
                            return via.send(Method::DELETE, &path, None, Vec::new()).await;
                        }
                        check_user_limit(&app, &principal).await?;
                        bookings::cancel(&app, &principal, &id)
                            .await
                            .map(|b| (&b).into())
                            .map_err(Refused::from)
                    }
                    .await;
                    booking_reply(req, cancelled)
                }));
            }
        }
    }

    /// The app state for a booking op, or an error reply for anonymous
    /// callers and for a token that expired since the handshake.
    fn signed_in(&self, req: Option<&Value>) -> Option<AppState> {
        if self.session.principal == Principal::Anonymous {
            self.error(
                req,
                None,
                "unauthorized",
                "a user token is required to book or cancel",
            );
            return None;
        }
        if self.session.expired_at(unix_now()) {
            self.error(
                req,
                None,
                "token_expired",
                "the token of this socket has expired: reading goes on, booking needs a new connection with a fresh token",
            );
            return None;
        }
        Some(self.app.clone())
    }

    async fn subscribe(
        &mut self,
        req: Option<Value>,
        facility: &str,
        detail: Detail,
        since: Option<u64>,
    ) {
        let Ok(id) = FacilityId::parse(facility) else {
            let unknown = ApiError::unknown("facility", facility);
            self.error(req.as_ref(), Some(facility), unknown.code, unknown.message);
            return;
        };
        if !self.subscriptions.contains_key(&id) && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            self.error(
                req.as_ref(),
                Some(facility),
                "too_many_subscriptions",
                format!("one connection may follow at most {MAX_SUBSCRIPTIONS} facilities"),
            );
            return;
        }
        if let Some(previous) = self.subscriptions.remove(&id) {
            previous.cancel();
        }
        self.generation += 1;
        let generation = self.generation;
        let want = Arc::new(Notify::new());
        let begun = start(self.sink, &self.app, &id, generation, detail, since, &want).await;
        let updates = match begun {
            Ok(updates) => updates,
            Err(error) => {
                lock(self.sink.outbox).unsubscribe(&id);
                self.error(req.as_ref(), Some(facility), error.code, error.message);
                return;
            }
        };
        self.sink.notify.notify_one();
        let cancel = CancellationToken::new();
        self.forwarders.push(Box::pin(forward(
            self.app.clone(),
            id.clone(),
            generation,
            updates,
            want,
            cancel.clone(),
            self.sink,
        )));
        self.subscriptions.insert(id, cancel);
    }
}

/// Queues how a subscription starts (a snapshot, or the deltas after
/// `since`) and returns its live updates. History that does not line up
/// with `since` lapses the facility: the writer then asks for a snapshot.
async fn start(
    sink: Sink<'_>,
    app: &AppState,
    id: &FacilityId,
    generation: u64,
    detail: Detail,
    since: Option<u64>,
    want: &Arc<Notify>,
) -> Result<broadcast::Receiver<Arc<Delta>>, ApiError> {
    let subscription = subscribe_anywhere(app, id, since.map(Seq)).await?;
    let want = Arc::clone(want);
    let mut outbox = lock(sink.outbox);
    match subscription.start {
        Start::Snapshot(snapshot) => {
            outbox.start_snapshot(generation, detail, snapshot, subscription.catch_up, want);
        }
        Start::Resume(deltas) => {
            let since = Seq(since.unwrap_or_default());
            outbox.start_resume(generation, detail, id, since, deltas, want);
        }
    }
    Ok(subscription.updates)
}

/// A subscription to `id` wherever it is served: this node's own
/// facility, or (cluster mode) this node's copy of one owned elsewhere,
/// fed by the owner's published deltas ([`crate::cluster::fanout`]).
async fn subscribe_anywhere(
    app: &AppState,
    id: &FacilityId,
    since: Option<Seq>,
) -> Result<Subscription, ApiError> {
    let node = app.node();
    if let Some(mirrors) = app.cluster().and_then(|c| c.mirrors())
        && !node.serves(id)
        && node.is_known(id).await
    {
        return mirrors.subscribe(id, since).await.map_err(|e| ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        });
    }
    Ok(node.subscribe(id, since).await?)
}

/// The answer to a booking op.
fn booking_reply(req: Option<Value>, result: Result<rest::Booking, Refused>) -> ServerMessage {
    match result {
        Ok(booking) => ServerMessage::Booking {
            req,
            booking: Box::new(booking),
        },
        Err(Refused { code, message }) => ServerMessage::Error {
            req,
            facility: None,
            code,
            message,
        },
    }
}

/// Why a booking op was refused: the code and message of the error its
/// HTTP twin answers.
struct Refused {
    code: Cow<'static, str>,
    message: String,
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused {
            code: Cow::Borrowed(e.code),
            message: e.message,
        }
    }
}

/// A cluster node's booking ops go through its own routes, exactly as
/// `POST /v1/facilities/{fid}/bookings` and `DELETE /v1/bookings/{id}`
/// would from this client: to the facility's owner, waiting out a move,
/// resent under the same idempotency key, with the same auth and limits.
#[derive(Clone)]
struct ViaRoutes {
    routes: axum::Router,
    token: String,
    ip: IpAddr,
}

/// Largest answer read back from a booking route.
const ROUTE_ANSWER_LIMIT: usize = 64 * 1024;

impl ViaRoutes {
    async fn send(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<rest::Booking, Refused> {
        use tower::ServiceExt;
        let unavailable = |message: &str| Refused {
            code: Cow::Borrowed("unavailable"),
            message: message.to_owned(),
        };
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let Ok(mut request) = request.body(axum::body::Body::from(body)) else {
            return Err(unavailable("the booking could not be sent; retry"));
        };
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                self.ip, 0,
            )));
        let Ok(response) = self.routes.clone().oneshot(request).await;
        let status = response.status();
        let Ok(bytes) = axum::body::to_bytes(response.into_body(), ROUTE_ANSWER_LIMIT).await else {
            return Err(unavailable(
                "the booking's answer was lost; retry with the same key",
            ));
        };
        if status.is_success() {
            return serde_json::from_slice::<rest::Booking>(&bytes).map_err(|_| {
                unavailable("the booking's answer was unreadable; retry with the same key")
            });
        }
        match serde_json::from_slice::<rest::ErrorBody>(&bytes) {
            Ok(body) => Err(Refused {
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(unavailable(
                "the booking was refused without a reason; retry",
            )),
        }
    }
}

/// The general per-user request limit, as every HTTP request counts.
async fn check_user_limit(app: &AppState, principal: &Principal) -> Result<(), ApiError> {
    if let Principal::User(user) = principal {
        app.limits()
            .check_shared(LimitKey::User(user.to_string()))
            .await
            .map_err(ApiError::rate_limited)?;
    }
    Ok(())
}

/// One app connection, from upgrade to close; `_slot` counts it against
/// its IP's cap while it lives.
pub async fn run(
    socket: WebSocket,
    app: AppState,
    session: Session,
    token: Option<String>,
    ip: IpAddr,
    _slot: SocketSlot,
) {
    let _gauge = ConnectionGauge::open("app");
    let (mut sink, mut stream) = socket.split();
    let outbox = Mutex::new(Outbox::new(app.stream_guard().merge_max()));
    let notify = Notify::new();
    let writer = write_loop(&mut sink, &notify, "app", || next_frame(&outbox));
    tokio::pin!(writer);
    // A child of the shared token, awaited by one pinned future: polling
    // it at every wake-up locks only this connection's node.
    let shutdown = app.shutdown().child_token().cancelled_owned();
    tokio::pin!(shutdown);
    let ops_limit = app.stream_guard().ops(ip);
    let mut conn = Conn {
        app,
        session,
        token,
        ip,
        ops_limit,
        sink: Sink {
            outbox: &outbox,
            notify: &notify,
        },
        subscriptions: HashMap::new(),
        generation: 0,
        forwarders: FuturesUnordered::new(),
        ops: FuturesUnordered::new(),
    };
    let mut liveness = Liveness::default();
    let mut ticker = socket::liveness_ticker();
    let (code, reason) = loop {
        let can_read = conn.can_read();
        tokio::select! {
            biased;
            () = &mut shutdown => break (close::GOING_AWAY, "server shutting down"),
            // Forwarders run first so the writer sees what they queued in
            // the same wake-up. They only complete when they stop.
            Some(()) = conn.forwarders.next(), if !conn.forwarders.is_empty() => {}
            Some(reply) = conn.ops.next(), if !conn.ops.is_empty() => conn.sink.reply(reply),
            written = &mut writer => {
                if let Err(e) = written {
                    tracing::debug!(error = %e, "app socket write failed");
                }
                return;
            }
            frame = stream.next(), if can_read => {
                liveness.heard();
                match frame {
                    None => break (1000, ""),
                    Some(Err(error)) => match socket::close_code_for(&error) {
                        Some(close::TOO_BIG) => break (close::TOO_BIG, "frame over 64 KiB"),
                        Some(code) => break (code, "protocol error"),
                        None => break (1000, ""),
                    },
                    Some(Ok(Message::Close(_))) => break (1000, ""),
                    Some(Ok(message @ (Message::Ping(_) | Message::Pong(_)))) => drop(message),
                    Some(Ok(message)) => match conn.admit_op(&message) {
                        Ok(true) => conn.on_message(message).await,
                        Ok(false) => {}
                        Err((code, reason)) => break (code, reason),
                    },
                }
            }
            _ = ticker.tick() => match liveness.tick() {
                Pulse::Dead => break (1000, ""),
                Pulse::Ping => {
                    lock(&outbox).push_ping();
                    notify.notify_one();
                }
                Pulse::Fine => {}
            },
        }
    };
    for cancel in conn.subscriptions.values() {
        cancel.cancel();
    }
    lock(&outbox).close(code, reason);
    notify.notify_one();
    // Send what is queued and the close frame, then read (and drop) what
    // the client still sends until its own close frame: a socket dropped
    // with unread input is reset, and the reset can destroy the close
    // frame before the client reads it.
    let closing = async {
        if (&mut writer).await.is_err() {
            return;
        }
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(socket::CLOSE_GRACE, closing).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use parkme_actors::{FacilityView, Snapshot};
    use parkme_engine::ZoneCounts;

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            view: FacilityView {
                id: FacilityId::parse("f1").expect("id"),
                name: "F".into(),
                timezone: "UTC".into(),
                location: None,
                seq: Seq(7),
                totals: ZoneCounts::default(),
                zones: Vec::new(),
            },
            spots: Vec::new(),
            edge: Default::default(),
        })
    }

    fn text_of(next: Next) -> Utf8Bytes {
        match next {
            Next::Send(Message::Text(text), _) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[test]
    fn every_subscriber_of_one_snapshot_sends_the_same_encoded_bytes() {
        let shared = snapshot();
        let frames: Vec<Utf8Bytes> = (0..40)
            .map(|_| {
                let outbox = Mutex::new(Outbox::default());
                lock(&outbox).start_snapshot(
                    1,
                    Detail::Spots,
                    Arc::clone(&shared),
                    Vec::new(),
                    Arc::new(Notify::new()),
                );
                text_of(next_frame(&outbox))
            })
            .collect();
        let first = frames[0].as_str().as_ptr();
        assert!(
            frames.iter().all(|f| f.as_str().as_ptr() == first),
            "encoded once, shared"
        );
        let value: Value = serde_json::from_str(frames[0].as_str()).expect("JSON");
        assert_eq!(
            (value["t"].as_str(), value["seq"].as_u64()),
            (Some("snapshot"), Some(7))
        );
    }
}
