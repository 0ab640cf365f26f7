//! One run, start to end: create the facilities, start sensors, apps and
//! watchers, conduct the scenario (storms, the stop), drain, read every
//! spot back, check the invariants and build the report.
//!
//! Phases, each bounded: traffic for `--duration`; then apps finish their
//! current booking and sensors wait for their acks, together at most
//! `--drain`; then every socket closes and the final read runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::LoadtestError;
use crate::api::{Api, mint_jwt};
use crate::apps::{AppOutcome, run_app};
use crate::checks::{FinalSpot, check_bookings};
use crate::cli::Cli;
use crate::ctx::{AtStop, Ctx, EXPIRY_SLACK, FacilityRt, wall_ms};
use crate::net::Dialer;
use crate::report::{Parts, Report};
use crate::scenario::{FacilitySpec, Plan};
use crate::sensors::{SensorCommand, SensorOutcome, SensorSpec, run_sensor};
use crate::stats::{Live, Timeline};
use crate::stream::{StreamOutcome, StreamSpec, handle_pair, run_stream};

/// Runs the load test described by `cli` and returns its report.
pub async fn run(cli: &Cli) -> Result<Report, LoadtestError> {
    cli.validate()?;
    let seed = cli.seed.unwrap_or_else(|| rand::rng().random());
    let run_id = cli
        .run_id
        .clone()
        .unwrap_or_else(|| format!("lt{:06x}", rand::rng().random_range(0..0xff_ffffu32)));
    let plan = Plan::new(cli);
    let dialer = Dialer::new(&cli.url, cli.bind.clone()).await?;
    let api = Api::new(dialer.base(), dialer.binds(), &cli.admin_token)?;

    let specs: Vec<FacilitySpec> = (0..cli.facilities)
        .map(|i| plan.facility(&run_id, i, cli.spots, cli.zone_size))
        .collect();
    let keys = create_facilities(&api, &specs).await?;

    // Sensors: round robin over facilities, spots round robin over a
    // facility's sensors.
    let mut per_facility: Vec<Vec<usize>> = vec![Vec::new(); cli.facilities];
    for s in 0..cli.sensors {
        per_facility[s % cli.facilities].push(s);
    }
    let mut sensor_specs = Vec::with_capacity(cli.sensors);
    let mut receivers = Vec::with_capacity(cli.sensors);
    let mut facilities = Vec::with_capacity(cli.facilities);
    for (f, (spec, key)) in specs.iter().zip(keys).enumerate() {
        let sensors = &per_facility[f];
        let mut senders = Vec::with_capacity(sensors.len());
        let mut walk_in: Vec<Vec<usize>> = vec![Vec::new(); sensors.len()];
        let mut commanders = vec![None; spec.spots.len()];
        for _ in sensors {
            let (tx, rx) = mpsc::channel::<SensorCommand>(256);
            senders.push(tx);
            receivers.push(rx);
        }
        for (i, spot) in spec.spots.iter().enumerate() {
            let owner = i % sensors.len();
            if spot.bookable {
                commanders[i] = Some(senders[owner].clone());
            } else {
                walk_in[owner].push(i);
            }
        }
        for (k, &s) in sensors.iter().enumerate() {
            sensor_specs.push(SensorSpec {
                index: s,
                facility: f,
                walk_in: std::mem::take(&mut walk_in[k]),
                seed: seed ^ (s as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            });
        }
        facilities.push(FacilityRt::new(spec, &key, commanders));
    }

    let token_life = cli.duration + cli.drain + Duration::from_secs(3600);
    let tokens = (0..cli.apps)
        .map(|i| mint_jwt(&cli.jwt_secret, &format!("{run_id}-u{i}"), token_life))
        .collect::<Result<Vec<_>, _>>()?;

    let (storm_tx, storm_rx) = watch::channel(0u32);
    let ctx = Arc::new(Ctx {
        run_id: run_id.clone(),
        seed,
        encoding: cli.encoding,
        batch: cli.batch,
        window: cli.window,
        hold: cli.hold,
        book_via: cli.book_via,
        sensor_rate_per_conn: cli.rate as f64 / cli.sensors as f64,
        start: Instant::now(),
        wall_start_ms: wall_ms(),
        duration: cli.duration,
        stop: CancellationToken::new(),
        apps_done: CancellationToken::new(),
        abort: CancellationToken::new(),
        storm: storm_rx,
        live: Live::default(),
        sensor_names: (0..cli.sensors)
            .map(|s| Arc::from(format!("{run_id}-s{s}").as_str()))
            .collect(),
        dialer,
        api,
        facilities,
        plan,
    });

    let tasks = spawn_all(&ctx, cli, sensor_specs, receivers, tokens);
    let (timeline, at_stop) = conduct(&ctx, cli, &storm_tx).await;
    let outcomes = drain(&ctx, cli, tasks).await;
    let read_started = ctx.micros(Instant::now());
    let final_spots = final_read(&ctx).await;
    let read_ended = ctx.micros(Instant::now());

    let events: Vec<_> = outcomes
        .apps
        .iter()
        .flat_map(|a| a.events.iter().cloned())
        .collect();
    let verdict = check_bookings(
        &events,
        &final_spots,
        (read_started, read_ended),
        EXPIRY_SLACK,
    );
    Ok(Report::build(Parts {
        cli,
        ctx: &ctx,
        at_stop,
        timeline,
        sensors: &outcomes.sensors,
        apps: &outcomes.apps,
        streams: &outcomes.streams,
        verdict,
        final_spots: final_spots.len(),
    }))
}

async fn create_facilities(
    api: &Api,
    specs: &[FacilitySpec],
) -> Result<Vec<String>, LoadtestError> {
    let mut keys = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(16) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|s| api.put_facility(s))).await;
        for (spec, result) in chunk.iter().zip(results) {
            let key = result.map_err(|f| {
                LoadtestError::Setup(format!(
                    "PUT /v1/facilities/{} failed: {} (status {:?}); is the server up and --admin-token right?",
                    spec.id, f.code, f.status
                ))
            })?;
            keys.push(key);
        }
    }
    Ok(keys)
}

struct Tasks {
    sensors: Vec<JoinHandle<SensorOutcome>>,
    apps: Vec<JoinHandle<AppOutcome>>,
    streams: Vec<JoinHandle<StreamOutcome>>,
}

struct Outcomes {
    sensors: Vec<SensorOutcome>,
    apps: Vec<AppOutcome>,
    streams: Vec<StreamOutcome>,
}

fn spawn_all(
    ctx: &Arc<Ctx>,
    cli: &Cli,
    sensor_specs: Vec<SensorSpec>,
    receivers: Vec<mpsc::Receiver<SensorCommand>>,
    tokens: Vec<String>,
) -> Tasks {
    let sensors = sensor_specs
        .into_iter()
        .zip(receivers)
        .map(|(spec, rx)| tokio::spawn(run_sensor(Arc::clone(ctx), spec, rx)))
        .collect();
    let mut streams = Vec::new();
    let mut apps = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let facility = ctx.plan.app_facility(i, cli.facilities);
        let (handle, ops) = handle_pair();
        let spec = StreamSpec {
            facilities: vec![facility],
            token: Some(token.clone()),
            stall: None,
            resume_on_storm: false,
        };
        streams.push(tokio::spawn(run_stream(
            Arc::clone(ctx),
            spec,
            Arc::clone(&handle.pending),
            ops,
        )));
        apps.push(tokio::spawn(run_app(Arc::clone(ctx), i, token, handle)));
    }
    let stall = ctx.plan.stall.map(|(from, to)| {
        (
            ctx.start + cli.duration.mul_f64(from),
            ctx.start + cli.duration.mul_f64(to),
        )
    });
    for w in 0..ctx.plan.subscribers {
        let (handle, ops) = handle_pair();
        // Watchers send nothing: only the stream needs the receiver.
        drop(handle.ops);
        let spec = StreamSpec {
            facilities: vec![w % cli.facilities],
            token: None,
            stall,
            resume_on_storm: ctx.plan.watchers_resume,
        };
        streams.push(tokio::spawn(run_stream(
            Arc::clone(ctx),
            spec,
            handle.pending,
            ops,
        )));
    }
    Tasks {
        sensors,
        apps,
        streams,
    }
}

/// The traffic phase: progress line, timeline, storms, then the stop.
async fn conduct(ctx: &Ctx, cli: &Cli, storm: &watch::Sender<u32>) -> (Timeline, AtStop) {
    let bar = if cli.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(cli.duration.as_millis()).unwrap_or(u64::MAX)),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    };
    let mut timeline = Timeline::default();
    let sample_every = Duration::from_millis(if cli.duration > Duration::from_secs(120) {
        1000
    } else {
        250
    });
    let mut ticker = tokio::time::interval(sample_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = ctx.start + cli.duration;
    let mut storms = ctx.plan.storms.iter().peekable();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        let now = Instant::now();
        let t = now.saturating_duration_since(ctx.start).as_secs_f64();
        timeline.sample(t, &ctx.live);
        if let Some(last) = timeline.samples.last() {
            bar.set_position(u64::try_from((t * 1000.0) as u128).unwrap_or(0));
            bar.set_message(format!(
                "{:>8.0} sensor ev/s {:>6.0} bookings/s {:>6.0} deltas/s {:>5} conns {:>5} errors",
                last.sensor_events_per_sec,
                last.bookings_per_sec,
                last.deltas_per_sec,
                last.connections,
                Live::get(&ctx.live.error_count),
            ));
        }
        if storms.peek().is_some_and(|&&at| ctx.progress() >= at) {
            storms.next();
            storm.send_modify(|n| *n += 1);
            tracing_note(&bar, "storm: every sensor drops its connection");
        }
        if now >= deadline {
            break;
        }
    }
    let at_stop = AtStop {
        elapsed: ctx.start.elapsed(),
        sensor_acked: Live::get(&ctx.live.sensor_acked),
        bookings_created: Live::get(&ctx.live.bookings_created),
        booking_attempts: Live::get(&ctx.live.booking_attempts),
        deltas: Live::get(&ctx.live.deltas_received),
    };
    ctx.stop.cancel();
    bar.finish_and_clear();
    (timeline, at_stop)
}

fn tracing_note(bar: &ProgressBar, note: &str) {
    bar.println(note);
}

/// Apps finish, sensors collect their acks (both within `--drain`), then
/// everything closes. No outcome is dropped: a task that misses the
/// deadline sees the abort and returns what it has.
async fn drain(ctx: &Ctx, cli: &Cli, tasks: Tasks) -> Outcomes {
    let deadline = tokio::time::Instant::now() + cli.drain;
    let abort = ctx.abort.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        abort.cancel();
    });
    let apps = join(ctx, tasks.apps).await;
    ctx.apps_done.cancel();
    let sensors = join(ctx, tasks.sensors).await;
    ctx.abort.cancel();
    timer.abort();
    let streams = join(ctx, tasks.streams).await;
    Outcomes {
        sensors,
        apps,
        streams,
    }
}

async fn join<T>(ctx: &Ctx, handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(outcome) => out.push(outcome),
            Err(_) => ctx.live.error("harness_task_failed"),
        }
    }
    out
}

/// Reads every spot of every facility back.
async fn final_read(ctx: &Ctx) -> Vec<FinalSpot> {
    let mut out = Vec::new();
    for facility in &ctx.facilities {
        for zone in &facility.zones {
            match ctx.api.spots(&facility.id, zone).await {
                Ok(spots) => out.extend(spots.into_iter().map(|s| FinalSpot {
                    facility: facility.id.clone(),
                    spot: s.id,
                    state: s.state,
                    booking: s.booking,
                })),
                Err(f) => ctx.live.error(&format!("final_read_{}", f.code)),
            }
        }
    }
    out
}
