//! The app socket (`GET /v1/stream`), shared by apps and idle watchers:
//! subscribes with spot detail, follows every subscription's seq through a
//! [`SeqTracker`], measures delivery latency (sensor send → the first delta
//! that shows the spot in its new state) and routes `booking`/`error`
//! replies to whoever sent the matching `req`.
//!
//! A watcher may be told to stall (stop reading, as a slow consumer does)
//! and to reconnect with each storm, resuming with `since`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::checks::{SeqTracker, SeqViolation, StreamEvent};
use crate::ctx::Ctx;
use crate::stats::{latency_histogram, record};
use crate::wire::{self, StreamMsg};

/// Violations kept verbatim per stream (all are counted).
const KEEP_VIOLATIONS: usize = 20;

/// Replies awaited by `req`.
pub type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<StreamMsg>>>>;

/// How a stream behaves.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Facility indices to subscribe to.
    pub facilities: Vec<usize>,
    /// A user JWT (apps) or none (anonymous watchers).
    pub token: Option<String>,
    /// Stop reading during `[from, to)`.
    pub stall: Option<(Instant, Instant)>,
    /// Reconnect (with `since`) whenever sensors storm.
    pub resume_on_storm: bool,
}

/// The app side of a stream: send ops, await replies.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    pub ops: mpsc::Sender<String>,
    pub pending: Pending,
}

#[derive(Debug)]
pub struct StreamOutcome {
    pub snapshots: u64,
    pub deltas: u64,
    pub violations: Vec<SeqViolation>,
    pub violation_count: u64,
    pub delivery: Histogram<u64>,
    pub reconnects: u64,
    /// For stalled watchers: a message arrived after the stall ended.
    pub recovered: bool,
    pub stalled: bool,
}

struct Subscription {
    facility: usize,
    tracker: SeqTracker,
    /// Per spot: the change stamp already measured.
    seen: Vec<u64>,
}

/// A short snake_case name of a websocket error.
pub fn ws_error_code(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed => "closed".into(),
        E::Io(io) => crate::net::io_code(io),
        E::Protocol(_) => "protocol".into(),
        E::Capacity(_) => "too_large".into(),
        _ => "ws_error".into(),
    }
}

pub fn handle_pair() -> (StreamHandle, mpsc::Receiver<String>) {
    let (ops, rx) = mpsc::channel(64);
    (
        StreamHandle {
            ops,
            pending: Arc::new(Mutex::new(HashMap::new())),
        },
        rx,
    )
}

enum Ended {
    Abort,
    Storm,
    Lost(String),
}

pub async fn run_stream(
    ctx: Arc<Ctx>,
    spec: StreamSpec,
    pending: Pending,
    mut ops: mpsc::Receiver<String>,
) -> StreamOutcome {
    let mut subs: HashMap<String, Subscription> = spec
        .facilities
        .iter()
        .map(|&f| {
            let facility = &ctx.facilities[f];
            (
                facility.id.clone(),
                Subscription {
                    facility: f,
                    tracker: SeqTracker::default(),
                    seen: vec![0; facility.spot_ids.len()],
                },
            )
        })
        .collect();
    let mut out = StreamOutcome {
        snapshots: 0,
        deltas: 0,
        violations: Vec::new(),
        violation_count: 0,
        delivery: latency_histogram(),
        reconnects: 0,
        recovered: false,
        stalled: spec.stall.is_some(),
    };
    let mut storm = ctx.storm.clone();
    let mut connected_once = false;
    let mut failures = 0u32;
    loop {
        if ctx.abort.is_cancelled() {
            break;
        }
        let dialled = tokio::select! {
            r = ctx.dialer.websocket("/v1/stream", None, spec.token.as_deref()) => r,
            () = ctx.abort.cancelled() => break,
        };
        let ws = match dialled {
            Ok(ws) => ws,
            Err(e) => {
                ctx.live.error(&format!("stream_{}", e.0));
                failures += 1;
                let backoff = Duration::from_millis(100 << failures.min(5));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = ctx.abort.cancelled() => break,
                }
            }
        };
        failures = 0;
        if connected_once {
            out.reconnects += 1;
        }
        connected_once = true;
        ctx.live.connection_opened();
        storm.borrow_and_update();
        let ended = serve(
            &ctx, &spec, ws, &mut subs, &pending, &mut ops, &mut storm, &mut out,
        )
        .await;
        ctx.live.connection_closed();
        match ended {
            Ended::Abort => break,
            Ended::Storm => {}
            Ended::Lost(code) => {
                ctx.live.error(&format!("stream_{code}"));
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = ctx.abort.cancelled() => break,
                }
            }
        }
    }
    // Whoever still waits for a reply gets none.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    out
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    ctx: &Ctx,
    spec: &StreamSpec,
    ws: crate::net::Ws,
    subs: &mut HashMap<String, Subscription>,
    pending: &Pending,
    ops: &mut mpsc::Receiver<String>,
    storm: &mut tokio::sync::watch::Receiver<u32>,
    out: &mut StreamOutcome,
) -> Ended {
    let (mut sink, mut stream) = ws.split();
    for (id, sub) in subs.iter_mut() {
        let since = sub.tracker.last();
        if since.is_none() {
            sub.tracker.observe(StreamEvent::Restarted);
        }
        if let Err(e) = sink
            .feed(Message::text(wire::subscribe_op(id, since)))
            .await
        {
            return Ended::Lost(ws_error_code(&e));
        }
    }
    if let Err(e) = sink.flush().await {
        return Ended::Lost(ws_error_code(&e));
    }
    let mut ops_open = true;
    loop {
        let now = Instant::now();
        let (stalled, wake) = match spec.stall {
            Some((from, _)) if now < from => (false, Some(from)),
            Some((from, to)) if now < to => {
                debug_assert!(from <= now);
                (true, Some(to))
            }
            _ => (false, None),
        };
        tokio::select! {
            biased;
            () = ctx.abort.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ended::Abort;
            }
            changed = storm.changed(), if spec.resume_on_storm => {
                if changed.is_ok() {
                    return Ended::Storm;
                }
            }
            op = ops.recv(), if ops_open => match op {
                Some(text) => {
                    if let Err(e) = sink.send(Message::text(text)).await {
                        return Ended::Lost(ws_error_code(&e));
                    }
                }
                None => ops_open = false,
            },
            frame = stream.next(), if !stalled => {
                let message = match frame {
                    None => return Ended::Lost("eof".into()),
                    Some(Err(e)) => return Ended::Lost(ws_error_code(&e)),
                    Some(Ok(m)) => m,
                };
                if spec.stall.is_some_and(|(_, to)| Instant::now() >= to) {
                    out.recovered = true;
                }
                match message {
                    Message::Text(text) => on_text(ctx, spec, text.as_str(), subs, pending, out),
                    Message::Close(frame) => {
                        let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                        return Ended::Lost(format!("closed_{code}"));
                    }
                    Message::Ping(_) => {
                        if let Err(e) = sink.flush().await {
                            return Ended::Lost(ws_error_code(&e));
                        }
                    }
                    Message::Binary(_) => ctx.live.error("stream_unexpected_binary"),
                    _ => {}
                }
            }
            () = sleep_until_opt(wake), if wake.is_some() => {}
        }
    }
}

fn on_text(
    ctx: &Ctx,
    spec: &StreamSpec,
    text: &str,
    subs: &mut HashMap<String, Subscription>,
    pending: &Pending,
    out: &mut StreamOutcome,
) {
    let msg = match wire::parse_stream_text(text) {
        Ok(msg) => msg,
        Err(_) => {
            ctx.live.error("stream_malformed");
            return;
        }
    };
    match msg.t.as_str() {
        "snapshot" | "delta" => on_state(ctx, spec, &msg, subs, out),
        "booking" | "error" => {
            let waiter = msg.req.as_ref().and_then(|req| {
                pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(req)
            });
            match waiter {
                Some(tx) => {
                    let _ = tx.send(msg);
                }
                None if msg.t == "error" => {
                    let code = msg.code.as_deref().unwrap_or("unnamed");
                    ctx.live.error(&format!("stream_{code}"));
                }
                None => {}
            }
        }
        _ => {}
    }
}

fn on_state(
    ctx: &Ctx,
    spec: &StreamSpec,
    msg: &StreamMsg,
    subs: &mut HashMap<String, Subscription>,
    out: &mut StreamOutcome,
) {
    let Some(sub) = msg.facility.as_ref().and_then(|f| subs.get_mut(f)) else {
        ctx.live.error("stream_unsubscribed_facility");
        return;
    };
    let Some(seq) = msg.seq else {
        ctx.live.error("stream_missing_seq");
        return;
    };
    let event = if msg.t == "snapshot" {
        out.snapshots += 1;
        StreamEvent::Snapshot { seq }
    } else {
        out.deltas += 1;
        ctx.live.deltas_received.fetch_add(1, Ordering::Relaxed);
        match msg.prev {
            Some(prev) => StreamEvent::Delta { prev, seq },
            None => {
                ctx.live.error("stream_delta_without_prev");
                return;
            }
        }
    };
    if let Some(violation) = sub.tracker.observe(event) {
        out.violation_count += 1;
        if out.violations.len() < KEEP_VIOLATIONS {
            out.violations.push(violation);
        }
    }
    if msg.t != "delta" || spec.stall.is_some() {
        return;
    }
    let now = ctx.micros(Instant::now());
    let facility = &ctx.facilities[sub.facility];
    for spot in msg.spots.iter().flatten() {
        let Some(&index) = facility.index.get(spot.id.as_str()) else {
            continue;
        };
        let Some((sent_at, occupied, stamp)) = facility.last_change(index) else {
            continue;
        };
        let Some(seen) = sub.seen.get_mut(index) else {
            continue;
        };
        if *seen == stamp || occupied != (spot.state == "OCCUPIED") {
            continue;
        }
        *seen = stamp;
        record(
            &mut out.delivery,
            Duration::from_micros(now.saturating_sub(sent_at)),
        );
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
