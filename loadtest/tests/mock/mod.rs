//! A deliberately tiny stand-in for ParkMe (contract §3–5, only what the
//! harness uses) that can be told to break an invariant, so the tests can
//! prove the harness notices: stop acking, skip a delta, double-book.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use parkme_loadtest::wire::bincode_wire::{SensorMessage, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// What the mock gets wrong on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Never ack beyond this seq on a sensor connection.
    pub ack_limit: Option<u64>,
    /// Skip the n-th delta sent to every subscriber.
    pub skip_delta: Option<u64>,
    /// Book spots that are already held.
    pub double_book: bool,
}

#[derive(Debug, Clone)]
struct Held {
    id: String,
    expires_ms: i64,
    active: bool,
}

#[derive(Debug)]
struct Facility {
    spots: Vec<(String, String)>,
    index: HashMap<String, usize>,
    occupied: Vec<bool>,
    held: Vec<Option<Held>>,
    seq: u64,
    tx: broadcast::Sender<Arc<(u64, u64, String)>>,
}

impl Facility {
    fn spot_json(&self, i: usize) -> Value {
        let state = if self.occupied[i] {
            "OCCUPIED"
        } else if self.held[i].is_some() {
            "RESERVED"
        } else {
            "AVAILABLE"
        };
        let mut v = json!({"id": self.spots[i].0, "zone": self.spots[i].1, "kind": "standard", "state": state});
        if let (Some(h), Value::Object(map)) = (&self.held[i], &mut v) {
            map.insert("booking".into(), json!(h.id));
        }
        v
    }

    fn expire(&mut self, fid: &str) {
        let now = now_ms();
        for i in 0..self.held.len() {
            if self.held[i]
                .as_ref()
                .is_some_and(|h| !h.active && h.expires_ms <= now)
            {
                self.held[i] = None;
                self.publish(fid, i);
            }
        }
    }

    fn publish(&mut self, fid: &str, i: usize) {
        let prev = self.seq;
        self.seq += 1;
        let text = json!({"t": "delta", "facility": fid, "prev": prev, "seq": self.seq,
            "zones": [], "spots": [self.spot_json(i)]})
        .to_string();
        let _ = self.tx.send(Arc::new((prev, self.seq, text)));
    }
}

#[derive(Debug, Default)]
struct Inner {
    facilities: HashMap<String, Facility>,
    bookings: HashMap<String, (String, usize)>,
    next: u64,
}

#[derive(Debug, Clone)]
struct Mock {
    inner: Arc<Mutex<Inner>>,
    faults: Faults,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": code}})),
    )
        .into_response()
}

/// Serves the mock on a free loopback port; returns its URL.
pub async fn start(faults: Faults) -> String {
    let mock = Mock {
        inner: Arc::default(),
        faults,
    };
    let app = Router::new()
        .route("/v1/facilities/{fid}", put(put_facility))
        .route("/v1/facilities/{fid}/bookings", post(book_http))
        .route("/v1/bookings/{id}", delete(cancel_http))
        .route("/v1/facilities/{fid}/zones/{zid}/spots", get(spots))
        .route("/v1/sensors/{fid}", get(sensor_ws))
        .route("/v1/stream", get(stream_ws))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn put_facility(
    State(mock): State<Mock>,
    Path(fid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut spots = Vec::new();
    for zone in body["zones"].as_array().into_iter().flatten() {
        let zid = zone["id"].as_str().unwrap_or_default().to_owned();
        for spot in zone["spots"].as_array().into_iter().flatten() {
            spots.push((
                spot["id"].as_str().unwrap_or_default().to_owned(),
                zid.clone(),
            ));
        }
    }
    let n = spots.len();
    let facility = Facility {
        index: spots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0.clone(), i))
            .collect(),
        spots,
        occupied: vec![false; n],
        held: vec![None; n],
        seq: 0,
        tx: broadcast::channel(100_000).0,
    };
    mock.inner
        .lock()
        .expect("lock")
        .facilities
        .insert(fid.clone(), facility);
    (
        StatusCode::CREATED,
        Json(json!({"id": fid, "sensor_key": format!("key-{fid}")})),
    )
        .into_response()
}

/// Books in `zone`; `Err(code)` when full.
fn book(mock: &Mock, fid: &str, zone: &str, hold: i64) -> Result<Value, &'static str> {
    let mut inner = mock.inner.lock().expect("lock");
    inner.next += 1;
    let id = format!("bk{}", inner.next);
    let f = inner.facilities.get_mut(fid).ok_or("unknown_facility")?;
    f.expire(fid);
    let free = (0..f.spots.len()).find(|&i| {
        f.spots[i].1 == zone && !f.occupied[i] && (mock.faults.double_book || f.held[i].is_none())
    });
    let i = free.ok_or("no_spot_available")?;
    let expires_ms = now_ms() + hold * 1000;
    f.held[i] = Some(Held {
        id: id.clone(),
        expires_ms,
        active: false,
    });
    f.publish(fid, i);
    let spot = f.spots[i].0.clone();
    inner.bookings.insert(id.clone(), (fid.to_owned(), i));
    Ok(
        json!({"id": id, "facility": fid, "zone": zone, "spot": spot, "status": "CONFIRMED",
        "created_at": rfc3339(now_ms()), "expires_at": rfc3339(expires_ms)}),
    )
}

fn cancel(mock: &Mock, id: &str) -> Result<Value, &'static str> {
    let mut inner = mock.inner.lock().expect("lock");
    let (fid, i) = inner.bookings.get(id).cloned().ok_or("unknown_booking")?;
    let f = inner.facilities.get_mut(&fid).ok_or("unknown_facility")?;
    if f.held[i].as_ref().is_some_and(|h| h.id == id && !h.active) {
        f.held[i] = None;
        f.publish(&fid, i);
        Ok(json!({"id": id, "status": "CANCELLED"}))
    } else {
        Err("not_cancellable")
    }
}

async fn book_http(
    State(mock): State<Mock>,
    Path(fid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let zone = body["zone"].as_str().unwrap_or("R");
    let hold = body["hold_seconds"].as_i64().unwrap_or(900);
    match book(&mock, &fid, zone, hold) {
        Ok(b) => (StatusCode::CREATED, Json(b)).into_response(),
        Err(code) => error(StatusCode::CONFLICT, code),
    }
}

async fn cancel_http(State(mock): State<Mock>, Path(id): Path<String>) -> Response {
    match cancel(&mock, &id) {
        Ok(b) => Json(b).into_response(),
        Err(code) => error(StatusCode::CONFLICT, code),
    }
}

async fn spots(State(mock): State<Mock>, Path((fid, zid)): Path<(String, String)>) -> Response {
    let mut inner = mock.inner.lock().expect("lock");
    let Some(f) = inner.facilities.get_mut(&fid) else {
        return error(StatusCode::NOT_FOUND, "unknown_facility");
    };
    f.expire(&fid);
    let spots: Vec<Value> = (0..f.spots.len())
        .filter(|&i| f.spots[i].1 == zid)
        .map(|i| f.spot_json(i))
        .collect();
    Json(json!({"spots": spots})).into_response()
}

fn sense(mock: &Mock, fid: &str, spot: &str, occupied: bool) {
    let mut inner = mock.inner.lock().expect("lock");
    let Some(f) = inner.facilities.get_mut(fid) else {
        return;
    };
    let Some(&i) = f.index.get(spot) else { return };
    if f.occupied[i] == occupied {
        return;
    }
    f.occupied[i] = occupied;
    match (&mut f.held[i], occupied) {
        (Some(h), true) => h.active = true,
        (Some(h), false) if h.active => f.held[i] = None,
        _ => {}
    }
    f.publish(fid, i);
}

async fn sensor_ws(
    State(mock): State<Mock>,
    Path(fid): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.protocols(["parkme.v1.json", "parkme.v1.bincode"])
        .on_upgrade(move |socket| sensor_loop(mock, fid, socket))
}

async fn sensor_loop(mock: Mock, fid: String, mut socket: WebSocket) {
    let binary = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == b"parkme.v1.bincode");
    while let Some(Ok(message)) = socket.recv().await {
        let mut last = 0;
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let msgs = match value {
                    Value::Array(all) => all,
                    one => vec![one],
                };
                for m in msgs {
                    last = m["seq"].as_u64().unwrap_or(last);
                    if m["t"] == "spot" {
                        let spot = m["spot"].as_str().unwrap_or_default();
                        sense(&mock, &fid, spot, m["occupied"].as_bool().unwrap_or(false));
                    }
                }
            }
            Message::Binary(bytes) => {
                let msgs = parkme_engine::codec::decode_wire::<SensorMessage>(&bytes)
                    .map(|m| vec![m])
                    .or_else(|_| parkme_engine::codec::decode_wire_batch::<SensorMessage>(&bytes))
                    .unwrap_or_default();
                for m in msgs {
                    match m {
                        SensorMessage::Spot {
                            seq,
                            spot,
                            occupied,
                            ..
                        } => {
                            last = seq;
                            sense(&mock, &fid, &spot, occupied);
                        }
                        SensorMessage::Heartbeat { seq, .. }
                        | SensorMessage::Count { seq, .. }
                        | SensorMessage::Plate { seq, .. } => last = seq,
                    }
                }
            }
            Message::Close(_) => return,
            _ => continue,
        }
        let ack = mock.faults.ack_limit.map_or(last, |limit| last.min(limit));
        if ack == 0 {
            continue;
        }
        let reply = if binary {
            Message::Binary(
                parkme_engine::codec::encode_wire(&ServerMessage::Ack { seq: ack }).into(),
            )
        } else {
            Message::Text(json!({"t": "ack", "seq": ack}).to_string().into())
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

async fn stream_ws(State(mock): State<Mock>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| stream_loop(mock, socket))
}

async fn stream_loop(mock: Mock, mut socket: WebSocket) {
    let mut updates: Option<broadcast::Receiver<Arc<(u64, u64, String)>>> = None;
    let mut sent = 0u64;
    loop {
        let next = async {
            match &mut updates {
                Some(rx) => rx.recv().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else { return };
                let op: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let reply = match op["op"].as_str() {
                    Some("subscribe") => {
                        let fid = op["facility"].as_str().unwrap_or_default().to_owned();
                        let inner = mock.inner.lock().expect("lock");
                        let Some(f) = inner.facilities.get(&fid) else { continue };
                        updates = Some(f.tx.subscribe());
                        let spots: Vec<Value> = (0..f.spots.len()).map(|i| f.spot_json(i)).collect();
                        json!({"t": "snapshot", "facility": fid, "seq": f.seq, "zones": [], "spots": spots})
                    }
                    Some("book") => {
                        let req = op["req"].clone();
                        let fid = op["facility"].as_str().unwrap_or_default();
                        let zone = op["zone"].as_str().unwrap_or("R");
                        let hold = op["hold_seconds"].as_i64().unwrap_or(900);
                        match book(&mock, fid, zone, hold) {
                            Ok(b) => json!({"t": "booking", "req": req, "booking": b}),
                            Err(code) => json!({"t": "error", "req": req, "code": code, "message": code}),
                        }
                    }
                    Some("cancel") => {
                        let req = op["req"].clone();
                        match cancel(&mock, op["booking"].as_str().unwrap_or_default()) {
                            Ok(b) => json!({"t": "booking", "req": req, "booking": b}),
                            Err(code) => json!({"t": "error", "req": req, "code": code, "message": code}),
                        }
                    }
                    _ => continue,
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            delta = next => {
                let Some(delta) = delta else { return };
                sent += 1;
                if mock.faults.skip_delta == Some(sent) {
                    continue;
                }
                if socket.send(Message::Text(delta.2.clone().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
