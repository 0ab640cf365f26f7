//! Websocket clients for the `ws_*` and `dashboard` test binaries (include
//! with `#[path = "ws_common/mod.rs"] mod ws_common;` next to
//! `mod common;`). They talk to the real `parkme` binary with
//! `tokio-tungstenite`, as any sensor or app would.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parkme_engine::codec::{decode_wire, encode_wire};
use parkme_gateway::ws::protocol::{SensorMessage, SensorReply};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::common::TestServer;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for any one server message.
pub const WAIT: Duration = Duration::from_secs(10);

pub const JSON: &str = "parkme.v1.json";
pub const BINCODE: &str = "parkme.v1.bincode";

/// Env for servers whose limits must not get in the way.
pub const NO_LIMITS: &[(&str, &str)] = &[
    ("PARKME_RATE_ANON_PER_HOUR", "0"),
    ("PARKME_RATE_USER_PER_HOUR", "0"),
    ("PARKME_RATE_BOOKINGS_PER_HOUR", "0"),
    ("PARKME_RATE_SENSOR_PER_SEC", "0"),
];

/// A spot zone `zone` with spots `{zone}-1..={n}`.
pub fn spot_zone(zone: &str, n: usize) -> Value {
    let spots: Vec<Value> = (1..=n)
        .map(|i| json!({"id": format!("{zone}-{i}"), "kind": "standard"}))
        .collect();
    json!({"id": zone, "name": format!("Zone {zone}"), "spots": spots})
}

/// Creates (or replaces) facility `fid` with `zones`; returns its sensor key.
pub async fn put_facility(server: &TestServer, fid: &str, zones: Vec<Value>) -> String {
    let layout = json!({
        "name": format!("Facility {fid}"),
        "timezone": "UTC",
        "location": {"lat": 45.0, "lon": 7.0},
        "zones": zones,
    });
    let response = reqwest::Client::new()
        .put(format!("{}/v1/facilities/{fid}", server.url()))
        .bearer_auth(server.admin_token())
        .json(&layout)
        .send()
        .await
        .expect("facility PUT");
    assert!(
        response.status().is_success(),
        "facility PUT: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("facility JSON");
    body["sensor_key"]
        .as_str()
        .expect("sensor_key in the PUT answer")
        .to_owned()
}

/// GET a JSON document.
pub async fn get_json(server: &TestServer, path: &str, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    response.json().await.expect("a JSON body")
}

/// The state of every spot of a zone, by id.
pub async fn spot_states(server: &TestServer, fid: &str, zone: &str) -> Vec<(String, String)> {
    let body = get_json(
        server,
        &format!("/v1/facilities/{fid}/zones/{zone}/spots"),
        None,
    )
    .await;
    body["spots"]
        .as_array()
        .expect("spots")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Opens a websocket with extra headers; the handshake error (with its
/// HTTP status) is returned, not unwrapped.
pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).expect("a header value");
        let name: tokio_tungstenite::tungstenite::http::HeaderName =
            name.parse().expect("a header name");
        request.headers_mut().insert(name, value);
    }
    connect_async(request).await.map(|(ws, _)| ws)
}

/// The HTTP status of a refused handshake.
pub fn refused_status(result: Result<Ws, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
    }
}

/// The body of a refused handshake, as JSON.
pub fn refused_body(result: Result<Ws, WsError>) -> (u16, Value) {
    match result {
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (status, body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
    }
}

/// A sensor connection with its key as a bearer token.
pub async fn sensor(server: &TestServer, fid: &str, key: &str, protocol: &str) -> Ws {
    let url = format!("{}/v1/sensors/{fid}", server.ws_url());
    let bearer = format!("Bearer {key}");
    open(
        &url,
        &[
            ("authorization", bearer.as_str()),
            ("sec-websocket-protocol", protocol),
        ],
    )
    .await
    .expect("sensor connects")
}

/// An app connection, anonymous or with a user token.
pub async fn app(server: &TestServer, token: Option<&str>) -> Ws {
    let url = format!("{}/v1/stream", server.ws_url());
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    open(&url, &headers).await.expect("app connects")
}

/// An app connection from a chosen local address (`127.0.0.x`, so a test
/// can be two clients of different IPs), optionally with a small receive
/// buffer (a client that stops reading then fills up quickly). The
/// handshake error is returned, not unwrapped.
pub async fn app_from(
    server: &TestServer,
    local: std::net::Ipv4Addr,
    token: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<Ws, WsError> {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket
        .bind(std::net::SocketAddr::from((local, 0)))
        .expect("bind a loopback address");
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .expect("TCP connect");
    let mut request = format!("{}/v1/stream", server.ws_url()).into_client_request()?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
        request.headers_mut().insert("authorization", value);
    }
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

/// A counter (summed over its label sets) from `/metrics`.
pub async fn metric(server: &TestServer, family: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn spot(seq: u64, spot: &str, occupied: bool) -> SensorMessage {
    SensorMessage::Spot {
        seq,
        spot: spot.into(),
        occupied,
        at: None,
    }
}

/// Sends sensor messages as one frame in the connection's encoding.
pub async fn send_sensor(ws: &mut Ws, protocol: &str, messages: &[SensorMessage]) {
    let frame = match (protocol, messages) {
        (BINCODE, [one]) => Message::binary(encode_wire(one)),
        (BINCODE, many) => Message::binary(encode_wire(&many.to_vec())),
        (_, [one]) => Message::text(serde_json::to_string(one).expect("JSON")),
        (_, many) => Message::text(serde_json::to_string(many).expect("JSON")),
    };
    ws.send(frame).await.expect("send a sensor frame");
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text))
        .await
        .expect("send a text frame");
}

pub async fn send_json(ws: &mut Ws, value: &Value) {
    send_text(ws, &value.to_string()).await;
}

/// What the server said last on a socket.
#[derive(Debug)]
pub enum Said {
    Text(String),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

/// The next data or close frame (pings and pongs are skipped), or a panic
/// after [`WAIT`].
pub async fn next(ws: &mut Ws) -> Said {
    next_within(ws, WAIT)
        .await
        .unwrap_or_else(|| panic!("no message from the server within {WAIT:?}"))
}

/// Like [`next`], `None` if nothing came within `wait`.
pub async fn next_within(ws: &mut Ws, wait: Duration) -> Option<Said> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Said::Text(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => return Said::Binary(bytes.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    return Said::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Said::Closed(None),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()
}

/// The next sensor reply in either encoding.
pub async fn sensor_reply(ws: &mut Ws) -> SensorReply {
    match next(ws).await {
        Said::Text(text) => {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply {text}: {e}"))
        }
        Said::Binary(bytes) => decode_wire(&bytes).unwrap_or_else(|e| panic!("reply: {e}")),
        Said::Closed(code) => panic!("sensor socket closed ({code:?}) while waiting for a reply"),
    }
}

/// Reads replies until an ack of at least `seq`; returns the errors seen.
pub async fn await_ack(ws: &mut Ws, seq: u64) -> Vec<SensorReply> {
    let mut errors = Vec::new();
    loop {
        match sensor_reply(ws).await {
            SensorReply::Ack { seq: acked } if acked >= seq => return errors,
            SensorReply::Ack { .. } => {}
            error @ SensorReply::Error { .. } => errors.push(error),
        }
    }
}

/// The next app message as JSON.
pub async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Said::Text(text) => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}")),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

/// Reads app messages until one matches `want`; panics after [`WAIT`].
pub async fn next_matching(ws: &mut Ws, mut want: impl FnMut(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_within(ws, left).await {
            Some(Said::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if want(&value) {
                    return value;
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("no matching message within {WAIT:?}"),
        }
    }
}

pub async fn subscribe(ws: &mut Ws, fid: &str, detail: &str, since: Option<u64>) {
    let mut op = json!({"op": "subscribe", "facility": fid, "detail": detail});
    if let Some(since) = since {
        op["since"] = since.into();
    }
    send_json(ws, &op).await;
}

/// Follows one facility's stream: checks every message continues the one
/// before it (a snapshot resets; a delta's `prev` is the last `seq`), and
/// keeps the latest state of every spot and zone.
#[derive(Debug, Default)]
pub struct Follower {
    pub seq: Option<u64>,
    pub snapshots: usize,
    pub deltas: usize,
    /// Deltas that spanned more than one event (conflated).
    pub merged: usize,
    pub spots: std::collections::BTreeMap<String, String>,
    pub zones: std::collections::BTreeMap<String, Value>,
}

impl Follower {
    /// Applies one message; panics on a gap.
    #[track_caller]
    pub fn apply(&mut self, message: &Value) {
        match message["t"].as_str() {
            Some("snapshot") => {
                self.snapshots += 1;
                self.spots.clear();
                self.zones.clear();
            }
            Some("delta") => {
                let prev = message["prev"].as_u64().expect("prev");
                let seq = message["seq"].as_u64().expect("seq");
                assert_eq!(Some(prev), self.seq, "gap before {message}");
                assert!(seq > prev, "seq must grow: {message}");
                self.deltas += 1;
                if seq > prev + 1 {
                    self.merged += 1;
                }
            }
            other => panic!("not a stream message: {other:?} in {message}"),
        }
        self.seq = message["seq"].as_u64();
        for zone in message["zones"].as_array().into_iter().flatten() {
            let id = zone["id"].as_str().unwrap_or_default().to_owned();
            self.zones.insert(id, zone.clone());
        }
        for spot in message["spots"].as_array().into_iter().flatten() {
            let id = spot["id"].as_str().unwrap_or_default().to_owned();
            let state = spot["state"].as_str().unwrap_or_default().to_owned();
            self.spots.insert(id, state);
        }
    }
}

/// Keeps sockets that never read alive: a ping frame from the client
/// counts as hearing from it (sending needs no reading), so the server's
/// liveness check does not drop a slow reader while a long test runs.
pub async fn keep_alive(sockets: &mut [Ws]) {
    for ws in sockets {
        ws.send(Message::Ping(Vec::new().into()))
            .await
            .expect("ping from a client that does not read");
    }
}

/// Reads messages into `follower` until it reaches `seq` (or panics
/// after `wait`).
pub async fn follow_until(ws: &mut Ws, follower: &mut Follower, seq: u64, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while follower.seq.is_none_or(|s| s < seq) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_within(ws, left).await {
            Some(Said::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if matches!(value["t"].as_str(), Some("snapshot" | "delta")) {
                    follower.apply(&value);
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!(
                "stream stopped at seq {:?}, expected {seq} within {wait:?}",
                follower.seq
            ),
        }
    }
}

/// The facility's current seq over HTTP.
pub async fn facility_seq(server: &TestServer, fid: &str) -> u64 {
    get_json(server, &format!("/v1/facilities/{fid}"), None).await["seq"]
        .as_u64()
        .expect("seq")
}

/// Polls `check` until it holds or `wait` passes.
pub async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends SIGTERM to the server.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}
