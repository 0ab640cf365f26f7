//! One task per sensor connection (`GET /v1/sensors/{fid}`): it reports
//! its walk-in spots from the [`ParkingModel`], and the bookable spots
//! when an app's car arrives or leaves ([`SensorCommand`]). Messages are
//! numbered per connection, sent in frames of `--batch`, at most
//! `--window` unacknowledged; a dropped connection is redialled and what
//! was not acked is resent first. Every send and ack goes through the
//! [`AckLedger`], which says at the end what was never acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::checks::{AckLedger, Micros, SensorEvent};
use crate::ctx::Ctx;
use crate::model::{ModelParams, ParkingModel, Sensed};
use crate::stats::{latency_histogram, record};
use crate::wire::{self, SensorBody, SensorReply};

/// An app asks the sensor of a bookable spot to report it.
#[derive(Debug)]
pub struct SensorCommand {
    /// Index of the spot in its facility.
    pub spot: usize,
    pub occupied: bool,
    pub reply: oneshot::Sender<Receipt>,
}

/// When a commanded report was first sent and when it was acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    pub sent_at: Option<Micros>,
    pub acked_at: Option<Micros>,
}

/// Which spots one sensor connection reports.
#[derive(Debug, Clone)]
pub struct SensorSpec {
    /// Global index (names and seeds).
    pub index: usize,
    pub facility: usize,
    /// Walk-in spots (indices in the facility) driven by the model.
    pub walk_in: Vec<usize>,
    pub seed: u64,
}

/// What one sensor connection measured.
#[derive(Debug)]
pub struct SensorOutcome {
    pub sent: u64,
    pub acked: u64,
    pub answered_with_error: u64,
    pub lost: u64,
    pub bogus_acks: u64,
    pub reconnects: u64,
    pub ack_latency: Histogram<u64>,
    pub reconnect_latency: Histogram<u64>,
}

struct Outgoing {
    msg: u64,
    body: SensorBody,
    /// `(spot, occupied)` for delivery-latency stamps.
    change: Option<(usize, bool)>,
    first_sent: Option<Micros>,
    reply: Option<oneshot::Sender<Receipt>>,
}

struct InFlight {
    seq: u64,
    sent_at: Instant,
    out: Outgoing,
}

/// Releases tokens at `per_sec` (only with `--rate`).
struct Pacer {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.per_sec.max(1.0));
        self.last = now;
    }

    fn ready_at(&self, want: f64) -> Instant {
        let missing = (want - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.per_sec.max(1e-9))
    }
}

enum Ended {
    /// Traffic over and everything acknowledged.
    Done,
    /// The drain ran out.
    Abort,
    /// A storm: drop the connection and dial again at once.
    Storm,
    /// The server closed or the socket failed.
    Lost(String),
}

struct Sensor {
    ctx: Arc<Ctx>,
    spec: SensorSpec,
    model: ParkingModel,
    rng: StdRng,
    pacer: Option<Pacer>,
    next_msg: u64,
    resend: VecDeque<Outgoing>,
    commanded: VecDeque<Outgoing>,
    in_flight: VecDeque<InFlight>,
    ledger: AckLedger,
    conn: u32,
    generating: bool,
    commands_open: bool,
    out: SensorOutcome,
}

pub async fn run_sensor(
    ctx: Arc<Ctx>,
    spec: SensorSpec,
    commands: mpsc::Receiver<SensorCommand>,
) -> SensorOutcome {
    let model = ParkingModel::new(spec.walk_in.len(), ModelParams::default(), spec.seed);
    let pacer = (ctx.sensor_rate_per_conn > 0.0).then(|| Pacer {
        per_sec: ctx.sensor_rate_per_conn,
        tokens: 0.0,
        last: Instant::now(),
    });
    let mut sensor = Sensor {
        rng: StdRng::seed_from_u64(spec.seed ^ 0x5eed),
        ctx,
        spec,
        model,
        pacer,
        next_msg: 0,
        resend: VecDeque::new(),
        commanded: VecDeque::new(),
        in_flight: VecDeque::new(),
        ledger: AckLedger::default(),
        conn: 0,
        generating: true,
        commands_open: true,
        out: SensorOutcome {
            sent: 0,
            acked: 0,
            answered_with_error: 0,
            lost: 0,
            bogus_acks: 0,
            reconnects: 0,
            ack_latency: latency_histogram(),
            reconnect_latency: latency_histogram(),
        },
    };
    sensor.run(commands).await;
    sensor.finish()
}

impl Sensor {
    async fn run(&mut self, mut commands: mpsc::Receiver<SensorCommand>) {
        let ctx = Arc::clone(&self.ctx);
        let facility = &ctx.facilities[self.spec.facility];
        let path = format!("/v1/sensors/{}?key={}", facility.id, facility.key_query);
        let protocol = wire::subprotocol(ctx.encoding);
        let mut storm = ctx.storm.clone();
        let mut dropped_at: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            if ctx.abort.is_cancelled() || self.finished() {
                return;
            }
            let dialled = tokio::select! {
                r = ctx.dialer.websocket(&path, Some(protocol), None) => r,
                () = ctx.abort.cancelled() => return,
            };
            let ws = match dialled {
                Ok(ws) => ws,
                Err(e) => {
                    ctx.live.error(&format!("sensor_{}", e.0));
                    failures += 1;
                    let backoff = Duration::from_millis(
                        (50u64 << failures.min(6)) + self.rng.random_range(0..50),
                    );
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = ctx.abort.cancelled() => return,
                    }
                    continue;
                }
            };
            failures = 0;
            if let Some(at) = dropped_at.take() {
                record(&mut self.out.reconnect_latency, at.elapsed());
                self.out.reconnects += 1;
            }
            self.conn += 1;
            ctx.live.connection_opened();
            // A storm that fired while dialling is already behind us.
            storm.borrow_and_update();
            let ended = self.serve(ws, &mut commands, &mut storm).await;
            ctx.live.connection_closed();
            self.connection_gone();
            match ended {
                Ended::Done | Ended::Abort => return,
                Ended::Storm => dropped_at = Some(Instant::now()),
                Ended::Lost(code) => {
                    ctx.live.error(&format!("sensor_{code}"));
                    dropped_at = Some(Instant::now());
                    let pause = Duration::from_millis(self.rng.random_range(20..200));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = ctx.abort.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Traffic is over and nothing is left to send or to be acked.
    fn finished(&self) -> bool {
        !self.generating
            && !self.commands_open
            && self.resend.is_empty()
            && self.commanded.is_empty()
            && self.in_flight.is_empty()
    }

    /// One connection: fill the window, wait for acks, commands, the end.
    async fn serve(
        &mut self,
        ws: crate::net::Ws,
        commands: &mut mpsc::Receiver<SensorCommand>,
        storm: &mut tokio::sync::watch::Receiver<u32>,
    ) -> Ended {
        let ctx = Arc::clone(&self.ctx);
        let (mut sink, mut stream) = ws.split();
        let mut seq = 0u64;
        loop {
            if let Err(code) = self.fill_window(&mut sink, &mut seq).await {
                return Ended::Lost(code);
            }
            if self.finished() {
                // Best effort: a clean close once everything is acked.
                let _ = sink.send(Message::Close(None)).await;
                return Ended::Done;
            }
            let pace_at = self.pace_wait();
            tokio::select! {
                biased;
                () = ctx.abort.cancelled() => return Ended::Abort,
                changed = storm.changed() => {
                    if changed.is_ok() {
                        return Ended::Storm;
                    }
                }
                frame = stream.next() => match self.on_frame(frame) {
                    Err(code) => return Ended::Lost(code),
                    // A ping's pong goes out with the next flush: now.
                    Ok(true) => {
                        if let Err(e) = sink.flush().await {
                            return Ended::Lost(crate::stream::ws_error_code(&e));
                        }
                    }
                    Ok(false) => {}
                },
                cmd = commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => self.commands_open = false,
                },
                () = ctx.apps_done.cancelled(), if self.commands_open => {
                    self.commands_open = false;
                }
                () = ctx.stop.cancelled(), if self.generating => self.generating = false,
                () = sleep_until_opt(pace_at), if pace_at.is_some() => {}
            }
        }
    }

    /// When paced and out of tokens: when enough tokens will be there.
    fn pace_wait(&mut self) -> Option<Instant> {
        if !self.generating || self.in_flight.len() + self.ctx.batch > self.ctx.window {
            return None;
        }
        let batch = self.ctx.batch as f64;
        let pacer = self.pacer.as_mut()?;
        pacer.refill(Instant::now());
        (pacer.tokens < batch).then(|| pacer.ready_at(batch))
    }

    /// The next message to send, if the window and the pace allow one.
    fn next_outgoing(&mut self) -> Option<Outgoing> {
        if let Some(out) = self.resend.pop_front() {
            return Some(out);
        }
        if let Some(out) = self.commanded.pop_front() {
            return Some(out);
        }
        if !self.generating {
            return None;
        }
        if let Some(pacer) = &mut self.pacer {
            pacer.refill(Instant::now());
            if pacer.tokens < 1.0 {
                return None;
            }
            pacer.tokens -= 1.0;
        }
        let intensity = self.ctx.plan.intensity(self.ctx.progress());
        let facility = &self.ctx.facilities[self.spec.facility];
        let (body, change) = match self.model.next(intensity) {
            Some(Sensed::Spot { spot, occupied }) => {
                let index = self.spec.walk_in[spot];
                let body = SensorBody::Spot {
                    spot: Arc::clone(&facility.spot_ids[index]),
                    occupied,
                    at: Some(self.ctx.wall_ms_now()),
                };
                (body, Some((index, occupied)))
            }
            Some(Sensed::Heartbeat { spot }) => {
                let index = self.spec.walk_in[spot];
                let body = SensorBody::Heartbeat {
                    sensor: Arc::clone(&facility.spot_ids[index]),
                };
                (body, None)
            }
            None => (
                SensorBody::Heartbeat {
                    sensor: Arc::clone(&self.ctx.sensor_names[self.spec.index]),
                },
                None,
            ),
        };
        Some(self.outgoing(body, change, None))
    }

    fn outgoing(
        &mut self,
        body: SensorBody,
        change: Option<(usize, bool)>,
        reply: Option<oneshot::Sender<Receipt>>,
    ) -> Outgoing {
        self.next_msg += 1;
        Outgoing {
            msg: self.next_msg,
            body,
            change,
            first_sent: None,
            reply,
        }
    }

    async fn fill_window<S>(&mut self, sink: &mut S, seq: &mut u64) -> Result<(), String>
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    {
        let batch = self.ctx.batch;
        let mut frames = 0usize;
        let mut unflushed = 0usize;
        loop {
            let mut frame: Vec<Outgoing> = Vec::with_capacity(batch);
            while frame.len() < batch && self.in_flight.len() + frame.len() < self.ctx.window {
                match self.next_outgoing() {
                    Some(out) => frame.push(out),
                    None => break,
                }
            }
            if frame.is_empty() {
                break;
            }
            let now = Instant::now();
            let now_micros = self.ctx.micros(now);
            let first = *seq + 1;
            let numbered: Vec<(u64, &SensorBody)> = frame
                .iter()
                .enumerate()
                .map(|(i, out)| (first + i as u64, &out.body))
                .collect();
            let message = wire::sensor_frame(self.ctx.encoding, &numbered);
            for mut out in frame {
                *seq += 1;
                if out.first_sent.is_none() {
                    out.first_sent = Some(now_micros);
                    if let Some((spot, occupied)) = out.change {
                        self.ctx.facilities[self.spec.facility].stamp(spot, occupied, now_micros);
                    }
                }
                self.ledger.record(SensorEvent::Sent {
                    conn: self.conn,
                    seq: *seq,
                    msg: out.msg,
                });
                self.out.sent += 1;
                self.ctx
                    .live
                    .sensor_sent
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.in_flight.push_back(InFlight {
                    seq: *seq,
                    sent_at: now,
                    out,
                });
            }
            sink.feed(message)
                .await
                .map_err(|e| crate::stream::ws_error_code(&e))?;
            frames += 1;
            unflushed += 1;
            // Yield now and then so one fast sensor cannot starve the others.
            if unflushed == 16 {
                unflushed = 0;
                sink.flush()
                    .await
                    .map_err(|e| crate::stream::ws_error_code(&e))?;
                tokio::task::yield_now().await;
            }
        }
        if frames > 0 {
            sink.flush()
                .await
                .map_err(|e| crate::stream::ws_error_code(&e))?;
        }
        Ok(())
    }

    fn on_command(&mut self, cmd: SensorCommand) {
        let facility = &self.ctx.facilities[self.spec.facility];
        let Some(spot) = facility.spot_ids.get(cmd.spot).map(Arc::clone) else {
            let _ = cmd.reply.send(Receipt::default());
            return;
        };
        let body = SensorBody::Spot {
            spot,
            occupied: cmd.occupied,
            at: Some(self.ctx.wall_ms_now()),
        };
        let out = self.outgoing(body, Some((cmd.spot, cmd.occupied)), Some(cmd.reply));
        self.commanded.push_back(out);
    }

    /// Handles one frame from the server; `Err` ends the connection,
    /// `Ok(true)` asks for a flush (a pong is waiting).
    fn on_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<bool, String> {
        let message = match frame {
            None => return Err("eof".into()),
            Some(Err(e)) => return Err(crate::stream::ws_error_code(&e)),
            Some(Ok(m)) => m,
        };
        let replies = match &message {
            Message::Text(text) => wire::parse_sensor_text(text.as_str()),
            Message::Binary(bytes) => wire::parse_sensor_binary(bytes),
            Message::Close(frame) => {
                let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                return Err(format!("closed_{code}"));
            }
            Message::Ping(_) => return Ok(true),
            _ => return Ok(false),
        };
        match replies {
            Ok(replies) => {
                for reply in replies {
                    self.on_reply(reply);
                }
            }
            Err(_) => self.ctx.live.error("sensor_malformed_reply"),
        }
        Ok(false)
    }

    fn on_reply(&mut self, reply: SensorReply) {
        match reply {
            SensorReply::Ack { seq } => {
                self.ledger.record(SensorEvent::Acked {
                    conn: self.conn,
                    seq,
                });
                let now = Instant::now();
                while self.in_flight.front().is_some_and(|f| f.seq <= seq) {
                    if let Some(done) = self.in_flight.pop_front() {
                        self.settled(done, now);
                    }
                }
            }
            SensorReply::Error { seq, code } => {
                self.ctx.live.error(&format!("sensor_{code}"));
                let Some(seq) = seq else { return };
                self.ledger.record(SensorEvent::Answered {
                    conn: self.conn,
                    seq,
                });
                let answered = self
                    .in_flight
                    .binary_search_by_key(&seq, |f| f.seq)
                    .ok()
                    .and_then(|i| self.in_flight.remove(i));
                if let Some(done) = answered {
                    self.out.answered_with_error += 1;
                    self.settled(done, Instant::now());
                }
            }
        }
    }

    fn settled(&mut self, done: InFlight, now: Instant) {
        record(&mut self.out.ack_latency, now - done.sent_at);
        self.out.acked += 1;
        self.ctx
            .live
            .sensor_acked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(reply) = done.out.reply {
            let _ = reply.send(Receipt {
                sent_at: done.out.first_sent,
                acked_at: Some(self.ctx.micros(now)),
            });
        }
    }

    /// The connection is gone: what it did not ack is resent first.
    fn connection_gone(&mut self) {
        self.ledger.record(SensorEvent::Dropped { conn: self.conn });
        let unacked: Vec<Outgoing> = self.in_flight.drain(..).map(|f| f.out).collect();
        for out in unacked.into_iter().rev() {
            self.resend.push_front(out);
        }
    }

    fn finish(mut self) -> SensorOutcome {
        for out in self
            .resend
            .drain(..)
            .chain(self.commanded.drain(..))
            .chain(self.in_flight.drain(..).map(|f| f.out))
        {
            if let Some(reply) = out.reply {
                let _ = reply.send(Receipt {
                    sent_at: out.first_sent,
                    acked_at: None,
                });
            }
        }
        self.out.lost = self.ledger.lost() as u64;
        self.out.bogus_acks = self.ledger.bogus_acks();
        self.out
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
