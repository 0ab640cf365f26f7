//! Websocket benchmarks against the real `parkme` binary on loopback
//! (not timed tests: run them and read the figures).
//!
//! ```text
//! cargo build --release -p parkme-gateway --bin parkme --example ws_bench
//! target/release/examples/ws_bench all
//! ```
//!
//! - `sensors`: acknowledged sensor events per second, end to end (frame
//!   sent → durable → ack read), with batched bincode frames and with
//!   single JSON messages, several pipelined connections.
//! - `fanout`: N subscribers (default 10,000) follow one facility; events
//!   are sent one at a time and every subscriber's delivery latency is
//!   measured (from the sensor frame's send, and from its ack).
//! - the same N subscribers, idle, give the server's RSS per subscriber.
//! - `storm`: one client sends `--subscribes` subscribes with spot detail
//!   to a `--storm-spots` facility (each after the previous snapshot came),
//!   first while it is still (every subscribe shares one snapshot), then
//!   with a change before each (every subscribe needs a new one); server
//!   CPU per subscribe.
//! - `slow-readers`: `--slow-readers` sockets follow that facility with
//!   spot detail and never read while `--changes` changes flow; server RSS
//!   before and after, then they read and must end on the facility's state.
//!
//! The app socket's own limits are lifted (`PARKME_WS_*=0`) so the figures
//! are the server's raw costs.
//!
//! The server runs as its own process (so its RSS is its own), with
//! embedded storage in a temp dir unless `--storage memory`.
//!
//! `fanout --relay` runs the same clients against the machine's ceiling
//! instead: this binary re-executed as a minimal tokio-tungstenite server
//! (`relay-server`, not for direct use) that answers a subscribe with a
//! fixed snapshot and, for each sensor message, encodes one delta frame
//! once and hands the same bytes to every subscriber's socket. No engine,
//! no storage, no JSON per subscriber: what is left is the websocket and
//! the kernel's loopback TCP, so the engine's figure over the relay's is
//! the engine's own overhead.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use parkme_engine::codec::{decode_wire, encode_wire};
use parkme_protocol::sensor::{SensorMessage, SensorReply};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const ADMIN: &str = "bench-admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    All,
    Sensors,
    Fanout,
    Storm,
    SlowReaders,
    /// Internal: the minimal relay `fanout --relay` runs against.
    #[value(hide = true)]
    RelayServer,
}

#[derive(Debug, Parser)]
#[command(about = "ParkMe websocket benchmarks")]
struct Args {
    #[arg(value_enum, default_value = "all")]
    part: Part,
    /// Seconds per sensor throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sensor connections (one zone each).
    #[arg(long, default_value_t = 8)]
    sensors: usize,
    /// Messages per bincode frame.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Unacknowledged messages allowed per sensor connection.
    #[arg(long, default_value_t = 16_000)]
    window: u64,
    /// Subscribers for the fan-out and idle-RSS runs.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Events sent during the fan-out run (one at a time).
    #[arg(long, default_value_t = 30)]
    events: usize,
    /// Pause between fan-out events, in milliseconds.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Subscribes sent by the `storm` client.
    #[arg(long, default_value_t = 40)]
    subscribes: usize,
    /// Spots of the `storm` and `slow-readers` facility (60 zones).
    #[arg(long, default_value_t = 60_000)]
    storm_spots: usize,
    /// Sockets that never read in `slow-readers`.
    #[arg(long, default_value_t = 10)]
    slow_readers: usize,
    /// Changes sent while the slow readers do not read.
    #[arg(long, default_value_t = 120_000)]
    changes: usize,
    /// `embedded` (default, durable) or `memory`.
    #[arg(long, default_value = "embedded")]
    storage: String,
    /// `fanout` against the minimal relay (the machine's ceiling) instead
    /// of `parkme`.
    #[arg(long)]
    relay: bool,
    /// Port of `relay-server`.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// The `parkme` process under test.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
    /// The minimal relay, not `parkme`: no facilities, seq starts at 0.
    relay: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id()).unwrap_or(0)
    }

    async fn start(storage: &str) -> Result<Server> {
        let exe = std::env::current_exe()?;
        let binary = exe
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("parkme"))
            .context("locating the parkme binary")?;
        if !binary.exists() {
            bail!(
                "{} is missing: cargo build --release -p parkme-gateway --bin parkme",
                binary.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data = tempfile::tempdir()?;
        // A shell raises the server's file limit for 10k sockets.
        let child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 65536 2>/dev/null; exec \"$0\" serve")
            .arg(&binary)
            .env("PARKME_LISTEN", format!("127.0.0.1:{port}"))
            .env("PARKME_STORAGE", storage)
            .env("PARKME_DATA_DIR", data.path())
            .env("PARKME_ADMIN_TOKEN", ADMIN)
            .env("PARKME_JWT_SECRET", "bench-secret")
            .env("PARKME_RATE_SENSOR_PER_SEC", "0")
            .env("PARKME_RATE_ANON_PER_HOUR", "0")
            // Thousands of sockets from one address, opened at once.
            .env("PARKME_MAX_CONNECTIONS_PER_IP", "0")
            .env("PARKME_MAX_CONNECTIONS", "0")
            .env("PARKME_WS_SOCKETS_PER_IP", "0")
            .env("PARKME_WS_OPS_PER_SEC", "0")
            .env("PARKME_WS_OPS_PER_IP_PER_SEC", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting parkme")?;
        let server = Server {
            child,
            port,
            _data: data,
            relay: false,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/health/", server.url())).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("parkme did not become healthy")
    }

    /// Starts this binary as the minimal relay (`relay-server`).
    async fn start_relay() -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 65536 2>/dev/null; exec \"$0\" relay-server --port \"$1\"")
            .arg(std::env::current_exe()?)
            .arg(port.to_string())
            .env("PARKME_BENCH_REEXEC", "1")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the relay")?;
        let server = Server {
            child,
            port,
            _data: tempfile::tempdir()?,
            relay: true,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the relay did not start")
    }

    /// Creates a facility of `zones` spot zones of `spots` each; returns
    /// its sensor key.
    async fn facility(&self, fid: &str, zones: usize, spots: usize) -> Result<String> {
        if self.relay {
            return Ok("relay".to_owned());
        }
        let zones: Vec<Value> = (0..zones)
            .map(|z| {
                let spots: Vec<Value> = (0..spots).map(|s| json!({"id": spot_id(z, s)})).collect();
                json!({"id": format!("Z{z}"), "spots": spots})
            })
            .collect();
        let body: Value = reqwest::Client::new()
            .put(format!("{}/v1/facilities/{fid}", self.url()))
            .bearer_auth(ADMIN)
            .json(&json!({"name": fid, "zones": zones}))
            .send()
            .await?
            .json()
            .await?;
        body["sensor_key"]
            .as_str()
            .map(str::to_owned)
            .context("no sensor_key")
    }

    async fn seq(&self, fid: &str) -> Result<u64> {
        if self.relay {
            return Ok(0);
        }
        let body: Value = reqwest::get(format!("{}/v1/facilities/{fid}", self.url()))
            .await?
            .json()
            .await?;
        body["seq"].as_u64().context("no seq")
    }
}

fn spot_id(zone: usize, spot: usize) -> String {
    format!("Z{zone}-{spot}")
}

/// CPU time (user + system) a process used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces).
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// The p50 and p99 of a Prometheus histogram, from its buckets.
async fn scraped_quantiles(url: &str, family: &str) -> Option<(f64, f64)> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{family}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    };
    Some((at(0.5)?, at(0.99)?))
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    url: &str,
    protocol: Option<&str>,
    key: Option<&str>,
    read_buffer: usize,
) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(protocol)?);
    }
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("x-sensor-key", HeaderValue::from_str(key)?);
    }
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = read_buffer;
    config.write_buffer_size = 0;
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(ws)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    BincodeBatch,
    JsonSingle,
}

/// One sensor connection flooding its zone: every message flips a spot,
/// so every one is a real, journaled change. Returns messages acked.
async fn flood(
    ws: Ws,
    encoding: Encoding,
    zone: usize,
    spots: usize,
    batch: usize,
    window: u64,
    until: Instant,
) -> Result<u64> {
    let (mut tx, mut rx) = ws.split();
    let acked = Arc::new(AtomicU64::new(0));
    let moved = Arc::new(Notify::new());
    let reader = {
        let acked = acked.clone();
        let moved = moved.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = rx.next().await {
                let reply: Option<SensorReply> = match message {
                    Message::Binary(b) => decode_wire(&b).ok(),
                    Message::Text(t) => serde_json::from_str(&t).ok(),
                    _ => None,
                };
                match reply {
                    Some(SensorReply::Ack { seq }) => {
                        acked.store(seq, Ordering::Release);
                        moved.notify_one();
                    }
                    Some(SensorReply::Error { code, .. }) => eprintln!("sensor error: {code}"),
                    None => {}
                }
            }
            moved.notify_one();
        })
    };
    let per_frame = if encoding == Encoding::BincodeBatch {
        batch
    } else {
        1
    };
    let mut seq = 0u64;
    while Instant::now() < until {
        while seq - acked.load(Ordering::Acquire) + per_frame as u64 > window {
            tx.flush().await?;
            moved.notified().await;
        }
        let mut frames = 0;
        while frames < 64 && seq - acked.load(Ordering::Acquire) + per_frame as u64 <= window {
            let messages: Vec<SensorMessage> = (0..per_frame)
                .map(|_| {
                    seq += 1;
                    let n = seq as usize - 1;
                    SensorMessage::Spot {
                        seq,
                        spot: spot_id(zone, n % spots),
                        occupied: (n / spots).is_multiple_of(2),
                        at: None,
                    }
                })
                .collect();
            let frame = match encoding {
                Encoding::BincodeBatch => Message::binary(encode_wire(&messages)),
                Encoding::JsonSingle => Message::text(serde_json::to_string(&messages[0])?),
            };
            tx.feed(frame).await?;
            frames += 1;
        }
        tx.flush().await?;
    }
    let last = seq;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Acquire) < last && Instant::now() < deadline {
        tokio::time::timeout(Duration::from_millis(100), moved.notified())
            .await
            .ok();
    }
    let _ = tx.close().await;
    reader.abort();
    Ok(acked.load(Ordering::Acquire))
}

async fn sensors(args: &Args) -> Result<()> {
    for encoding in [Encoding::BincodeBatch, Encoding::JsonSingle] {
        let server = Server::start(&args.storage).await?;
        let spots = 1000;
        let key = server.facility("bench", args.sensors, spots).await?;
        let url = format!("{}/v1/sensors/bench", server.ws_url());
        let protocol = match encoding {
            Encoding::BincodeBatch => "parkme.v1.bincode",
            Encoding::JsonSingle => "parkme.v1.json",
        };
        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        let mut tasks = Vec::new();
        for zone in 0..args.sensors {
            let ws = connect(&url, Some(protocol), Some(&key), 64 * 1024).await?;
            let (batch, window) = (args.batch, args.window);
            tasks.push(tokio::spawn(flood(
                ws, encoding, zone, spots, batch, window, until,
            )));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "sensors {encoding:?}: {} connections, {total} events acked in {elapsed:.1} s = {:.0} acked events/s (storage {}, server RSS {} MiB)",
            args.sensors,
            total as f64 / elapsed,
            args.storage,
            server.rss_kib() / 1024,
        );
    }
    Ok(())
}

/// Finds `"seq":N` in a delta without parsing the rest.
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find("\"seq\":")? + 6;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn fanout(args: &Args) -> Result<()> {
    let server = if args.relay {
        Server::start_relay().await?
    } else {
        Server::start(&args.storage).await?
    };
    let against = if args.relay {
        "the minimal relay (ceiling)"
    } else {
        "parkme"
    };
    println!("fan-out against {against}");
    let key = server.facility("fan", 1, 100).await?;
    let seq0 = server.seq("fan").await?;
    let url = format!("{}/v1/stream", server.ws_url());
    let n = args.subscribers;
    let events = args.events as u64;
    let target = seq0 + events;
    let rss_before = server.rss_kib();
    let connecting = Instant::now();
    // Connect and subscribe everyone (a few hundred handshakes at a time).
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut subscribers = Vec::with_capacity(n);
    for _ in 0..n {
        let url = url.clone();
        let ready = ready.clone();
        let gate = gate.clone();
        subscribers.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.ok();
            let mut ws = connect(&url, None, None, 4096).await?;
            ws.send(Message::text(
                r#"{"op":"subscribe","facility":"fan","detail":"zones"}"#,
            ))
            .await?;
            let mut received: Vec<(u64, Instant)> = Vec::with_capacity(events as usize);
            // The snapshot first.
            while let Some(message) = ws.next().await {
                if let Message::Text(text) = message?
                    && text.contains("\"snapshot\"")
                {
                    break;
                }
            }
            drop(permit);
            ready.add_permits(1);
            while let Some(message) = ws.next().await {
                if let Message::Text(text) = message? {
                    let at = Instant::now();
                    if let Some(seq) = seq_of(&text) {
                        received.push((seq, at));
                        if seq >= target {
                            break;
                        }
                    }
                }
            }
            anyhow::Ok(received)
        }));
    }
    let all_ready = ready.acquire_many(n as u32).await?;
    all_ready.forget();
    let connect_secs = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();
    println!(
        "idle subscribers: {n} connected and subscribed in {connect_secs:.1} s; server RSS {} → {} MiB = {:.2} KiB per idle subscriber",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
    );

    // Events one at a time, each acked before the next.
    let mut sensor = connect(
        &format!("{}/v1/sensors/fan", server.ws_url()),
        Some("parkme.v1.json"),
        Some(&key),
        64 * 1024,
    )
    .await?;
    let server_cpu = cpu_seconds(server.child.id());
    let bench_cpu = cpu_seconds(std::process::id());
    let mut sent_at = std::collections::HashMap::new();
    let mut acked_at = std::collections::HashMap::new();
    for i in 1..=events {
        let message = SensorMessage::Spot {
            seq: i,
            spot: spot_id(0, 0),
            occupied: i % 2 == 1,
            at: None,
        };
        let sent = Instant::now();
        sensor
            .send(Message::text(serde_json::to_string(&message)?))
            .await?;
        loop {
            match sensor.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(SensorReply::Ack { seq }) = serde_json::from_str(&text)
                        && seq >= i
                    {
                        break;
                    }
                }
                Some(Ok(_)) => continue,
                _ => bail!("sensor socket closed"),
            }
        }
        sent_at.insert(seq0 + i, sent);
        acked_at.insert(seq0 + i, Instant::now());
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    let server_cpu = cpu_seconds(server.child.id()) - server_cpu;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu;
    let server_side = scraped_quantiles(&server.url(), "parkme_delivery_latency_seconds").await;
    let mut from_send = Vec::new();
    let mut from_ack = Vec::new();
    let mut complete = 0;
    for subscriber in subscribers {
        let received = match tokio::time::timeout(Duration::from_secs(30), subscriber).await {
            Ok(Ok(Ok(received))) => received,
            _ => continue,
        };
        if received.last().is_some_and(|(seq, _)| *seq >= target) {
            complete += 1;
        }
        for (seq, at) in received {
            if let (Some(sent), Some(acked)) = (sent_at.get(&seq), acked_at.get(&seq)) {
                from_send.push(at.duration_since(*sent).as_secs_f64() * 1000.0);
                from_ack.push(at.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
            }
        }
    }
    println!(
        "fan-out CPU during the events: server {:.0} µs per delivery, bench clients {:.0} µs per delivery; \
         server-side publication → socket hand-off (sampled histogram buckets): p50 ≤ {:?} s, p99 ≤ {:?} s",
        server_cpu * 1e6 / (n as f64 * events as f64),
        bench_cpu * 1e6 / (n as f64 * events as f64),
        server_side.map(|q| q.0),
        server_side.map(|q| q.1),
    );
    from_send.sort_by(f64::total_cmp);
    from_ack.sort_by(f64::total_cmp);
    println!(
        "fan-out to {n} subscribers, {events} events ({} deliveries, {complete} subscribers complete): \
         latency from sensor send p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; from ack p50 {:.1} ms, p99 {:.1} ms",
        from_send.len(),
        percentile(&from_send, 50.0),
        percentile(&from_send, 99.0),
        from_send.last().copied().unwrap_or(f64::NAN),
        percentile(&from_ack, 50.0),
        percentile(&from_ack, 99.0),
    );
    Ok(())
}

/// Sends `messages` (spot, occupied) as bincode batches of up to 1,000 on
/// one sensor connection and waits for the ack of the last.
async fn send_changes(ws: &mut Ws, seq: &mut u64, messages: &[(String, bool)]) -> Result<()> {
    for chunk in messages.chunks(1000) {
        let batch: Vec<SensorMessage> = chunk
            .iter()
            .map(|(spot, occupied)| {
                *seq += 1;
                SensorMessage::Spot {
                    seq: *seq,
                    spot: spot.clone(),
                    occupied: *occupied,
                    at: None,
                }
            })
            .collect();
        ws.send(Message::binary(encode_wire(&batch))).await?;
    }
    while let Some(message) = ws.next().await {
        if let Message::Binary(bytes) = message?
            && let Ok(SensorReply::Ack { seq: acked }) = decode_wire(&bytes)
            && acked >= *seq
        {
            return Ok(());
        }
    }
    bail!("the sensor socket closed before the last ack")
}

/// Reads app messages until `n` snapshots came; returns their bytes.
async fn snapshots(ws: &mut Ws, n: usize) -> Result<usize> {
    let (mut seen, mut bytes) = (0, 0);
    while seen < n {
        if let Message::Text(text) = ws.next().await.context("the app socket closed")??
            && text.contains("\"t\":\"snapshot\"")
        {
            seen += 1;
            bytes += text.len();
        }
    }
    Ok(bytes)
}

async fn storm(args: &Args) -> Result<()> {
    let server = Server::start(&args.storage).await?;
    let zones = 60;
    let per_zone = args.storm_spots.div_ceil(zones);
    let key = server.facility("big", zones, per_zone).await?;
    let pid = server.child.id();
    let mut app = connect(
        &format!("{}/v1/stream", server.ws_url()),
        None,
        None,
        64 * 1024,
    )
    .await?;
    let mut sensor = connect(
        &format!("{}/v1/sensors/big", server.ws_url()),
        Some("parkme.v1.bincode"),
        Some(&key),
        64 * 1024,
    )
    .await?;
    let op = r#"{"op":"subscribe","facility":"big","detail":"spots"}"#;
    // Warm-up: one subscribe.
    app.send(Message::text(op)).await?;
    snapshots(&mut app, 1).await?;
    let n = args.subscribes;
    let mut seq = 0;
    for changing in [false, true] {
        let cpu = cpu_seconds(pid);
        let started = Instant::now();
        let mut bytes = 0;
        // One at a time: a subscribe to a facility already followed
        // replaces the previous one, queued snapshot included.
        for i in 0..n {
            if changing {
                send_changes(&mut sensor, &mut seq, &[(spot_id(0, 0), i % 2 == 0)]).await?;
            }
            app.send(Message::text(op)).await?;
            bytes += snapshots(&mut app, 1).await?;
        }
        let used = cpu_seconds(pid) - cpu;
        println!(
            "storm, {} facility: {n} subscribes with spot detail to {} spots ({} MiB of snapshots) took {:.2} s; server CPU {:.2} s = {:.1} ms per subscribe",
            if changing { "changing" } else { "still" },
            zones * per_zone,
            bytes / (1024 * 1024),
            started.elapsed().as_secs_f64(),
            used,
            used * 1000.0 / n as f64,
        );
    }
    Ok(())
}

async fn slow_readers(args: &Args) -> Result<()> {
    let server = Server::start(&args.storage).await?;
    let zones = 60;
    let per_zone = args.storm_spots.div_ceil(zones);
    let key = server.facility("big", zones, per_zone).await?;
    let mut sensor = connect(
        &format!("{}/v1/sensors/big", server.ws_url()),
        Some("parkme.v1.bincode"),
        Some(&key),
        64 * 1024,
    )
    .await?;
    // Every change flips a spot, walking the facility.
    let total = zones * per_zone;
    let mut flips = 0usize;
    let mut next_changes = |n: usize| -> Vec<(String, bool)> {
        (0..n)
            .map(|_| {
                let i = flips % total;
                let pass = flips / total;
                flips += 1;
                (spot_id(i % zones, i / zones), pass.is_multiple_of(2))
            })
            .collect()
    };
    let mut seq = 0;
    // Warm-up: fill the delta history.
    send_changes(&mut sensor, &mut seq, &next_changes(30_000)).await?;
    let mut readers = Vec::new();
    for _ in 0..args.slow_readers {
        let mut ws = connect(&format!("{}/v1/stream", server.ws_url()), None, None, 4096).await?;
        ws.send(Message::text(
            r#"{"op":"subscribe","facility":"big","detail":"spots"}"#,
        ))
        .await?;
        snapshots(&mut ws, 1).await?;
        readers.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib();
    let mut rss_peak = rss_before;
    let started = Instant::now();
    let mut sent = 0;
    while sent < args.changes {
        let n = (args.changes - sent).min(5_000);
        send_changes(&mut sensor, &mut seq, &next_changes(n)).await?;
        sent += n;
        rss_peak = rss_peak.max(server.rss_kib());
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after = server.rss_kib();
    println!(
        "slow readers: {} sockets with spot detail on {total} spots never read while {} changes flowed ({secs:.1} s); server RSS {} MiB before, peak {} MiB, {} MiB after",
        args.slow_readers,
        args.changes,
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
    );
    let target = server.seq("big").await?;
    let catching_up = Instant::now();
    let mut resent = 0;
    for ws in &mut readers {
        let mut at = 0;
        while at < target {
            let Message::Text(text) = ws.next().await.context("closed")?? else {
                continue;
            };
            if text.contains("\"t\":\"snapshot\"") {
                resent += 1;
            }
            at = seq_of(&text).unwrap_or(at).max(at);
        }
    }
    println!(
        "slow readers caught up to seq {target} in {:.1} s, receiving {resent} fresh snapshots between them",
        catching_up.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Re-runs this process under `sh -c 'ulimit -n …'` when its file limit
/// is too low for the subscribers it will open.
fn ensure_file_limit(needed: u64) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    if soft >= needed || std::env::var_os("PARKME_BENCH_REEXEC").is_some() {
        return Ok(());
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {needed} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .env("PARKME_BENCH_REEXEC", "1")
        .status()?;
    std::process::exit(status.code().unwrap_or(1));
}

/// The minimal relay: the ceiling `fanout --relay` measures. A sensor
/// message becomes one delta frame, encoded once; every subscriber's task
/// writes those same bytes. Any error ends only that connection.
async fn relay_server(port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (deltas, _) = tokio::sync::broadcast::channel::<Message>(1024);
    loop {
        let (stream, _) = listener.accept().await?;
        let deltas = deltas.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut sensor = false;
            // The signature is tungstenite's handshake callback.
            #[allow(clippy::result_large_err)]
            let pick = |request: &Request, mut response: Response| {
                sensor = request.uri().path().starts_with("/v1/sensors/");
                if sensor {
                    response.headers_mut().insert(
                        "sec-websocket-protocol",
                        HeaderValue::from_static("parkme.v1.json"),
                    );
                }
                Ok::<_, ErrorResponse>(response)
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, pick).await else {
                return;
            };
            if sensor {
                while let Some(Ok(message)) = ws.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(SensorMessage::Spot { seq, occupied, .. }) =
                        serde_json::from_str::<SensorMessage>(&text)
                    else {
                        continue;
                    };
                    let delta = json!({"type": "delta", "facility": "fan", "seq": seq,
                        "zones": [{"id": "Z0", "free": if occupied { 99 } else { 100 }}]});
                    let _ = deltas.send(Message::text(delta.to_string()));
                    let Ok(ack) = serde_json::to_string(&SensorReply::Ack { seq }) else {
                        return;
                    };
                    if ws.send(Message::text(ack)).await.is_err() {
                        return;
                    }
                }
            } else {
                let mut feed = deltas.subscribe();
                // The subscribe, then a fixed snapshot.
                if !matches!(ws.next().await, Some(Ok(Message::Text(_)))) {
                    return;
                }
                let snapshot = r#"{"type":"snapshot","facility":"fan","seq":0,"zones":[{"id":"Z0","free":100}]}"#;
                if ws.send(Message::text(snapshot)).await.is_err() {
                    return;
                }
                loop {
                    match feed.recv().await {
                        Ok(frame) => {
                            if ws.send(frame).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.part == Part::RelayServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(relay_server(args.port));
    }
    if matches!(args.part, Part::All | Part::Fanout) {
        ensure_file_limit(args.subscribers as u64 + 1024)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if matches!(args.part, Part::All | Part::Sensors) {
            sensors(&args).await?;
        }
        if matches!(args.part, Part::All | Part::Fanout) {
            fanout(&args).await?;
        }
        if matches!(args.part, Part::All | Part::Storm) {
            storm(&args).await?;
        }
        if matches!(args.part, Part::All | Part::SlowReaders) {
            slow_readers(&args).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
