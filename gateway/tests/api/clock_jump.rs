//! The system clock jumping forward and back under the real binary
//! (issue 12's clock fault). The server runs under libfaketime (Debian's
//! `faketime` package, `LD_PRELOAD`), whose offset the test rewrites while
//! the server runs: only the system clock (`CLOCK_REALTIME`) moves, as a
//! `date -s` or an NTP step would; monotonic time does not.
//!
//! What the service promises, one test each: a running node keeps its own
//! time (the system clock read at start, then monotonic), so a step of the
//! system clock neither expires a hold early nor keeps it past its length;
//! the node reports the step (`parkme_clock_offset_seconds`); and a restart
//! after a jump back (the journal then holds times "in the future") or
//! forward (holds past their time) loses nothing acknowledged, never
//! doubles a spot, keeps `seq` increasing and answers every read without a
//! 500.
//!
//! Tests wait on conditions, never on fixed sleeps. They must never change
//! the clock of anything but their own server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::http::{Api, NO_LIMITS, Reply, layout, millis, spot_zone};
use crate::helpers::ws::{self, JSON};
use crate::helpers::{TestServer, poll_until};

/// How long a condition may take.
const WAIT: Duration = Duration::from_secs(30);
const DAY_SECS: i64 = 86_400;
const SPOTS: usize = 12;

/// libfaketime's preload library: `PARKME_TEST_LIBFAKETIME` (set by
/// `scripts/test`), else Debian's path.
fn libfaketime() -> String {
    let path = std::env::var("PARKME_TEST_LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".to_owned());
    assert!(
        std::path::Path::new(&path).is_file(),
        "libfaketime is missing at {path}: scripts/install-test-deps installs Debian's \
         faketime package (or set PARKME_TEST_LIBFAKETIME)"
    );
    path
}

/// A server whose system clock the test moves.
struct Jumpy {
    server: TestServer,
    api: Api,
    sensor_key: String,
    /// libfaketime's offset file, reread by the server at most every second.
    offset_file: PathBuf,
    _offset_dir: tempfile::TempDir,
}

impl Jumpy {
    async fn start() -> Jumpy {
        let offset_dir = tempfile::tempdir().expect("a temp dir");
        let offset_file = offset_dir.path().join("offset");
        std::fs::write(&offset_file, "+0\n").expect("the offset file is written");
        let lib = libfaketime();
        let file = offset_file.to_str().expect("a UTF-8 temp path").to_owned();
        let mut env = NO_LIMITS.to_vec();
        env.extend_from_slice(&[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]);
        let server = TestServer::start(&env).await;
        let api = Api::new(&server);
        let created = api
            .put_facility(
                server.admin_token(),
                "f1",
                layout(vec![spot_zone("z1", "s", SPOTS, "standard")]),
            )
            .await;
        let sensor_key = created["sensor_key"]
            .as_str()
            .expect("sensor key")
            .to_owned();
        Jumpy {
            server,
            api,
            sensor_key,
            offset_file,
            _offset_dir: offset_dir,
        }
    }

    /// Moves the server's system clock to `secs` from the real one (a
    /// step, not a drift).
    fn set_offset(&self, secs: i64) {
        std::fs::write(&self.offset_file, format!("{secs:+}\n")).expect("offset written");
    }

    /// Steps the system clock and waits until the node has seen the step.
    async fn jump(&self, secs: i64) {
        self.set_offset(secs);
        let want = secs as f64;
        poll_until(
            &format!("parkme_clock_offset_seconds near {secs}"),
            WAIT,
            || async {
                let seen = ws::metric(&self.server, "parkme_clock_offset_seconds").await;
                (seen - want).abs() < 60.0
            },
        )
        .await;
    }

    /// A user token valid for three days of real time: still valid with
    /// the server's clock a day ahead.
    fn token(&self) -> String {
        self.server.token_with_claims(&json!({
            "sub": "clock-user",
            "exp": crate::helpers::unix_now() + 3 * DAY_SECS as u64,
        }))
    }

    async fn hold(&self, plate: &str, secs: u32) -> Value {
        let reply = self
            .api
            .book(
                "f1",
                &self.token(),
                json!({"plate": plate, "zone": "z1", "hold_seconds": secs}),
            )
            .await;
        reply.assert_status(201).clone()
    }

    async fn booking(&self, id: &str) -> Value {
        self.api
            .get(&format!("/v1/bookings/{id}"), Some(&self.token()))
            .await
            .assert_status(200)
            .clone()
    }

    async fn status(&self, id: &str) -> String {
        self.booking(id).await["status"]
            .as_str()
            .expect("a status")
            .to_owned()
    }

    /// Waits for `id` to expire; returns when it was first seen expired.
    async fn until_expired(&self, id: &str) -> Instant {
        poll_until(&format!("booking {id} EXPIRED"), WAIT, || async {
            self.status(id).await == "EXPIRED"
        })
        .await;
        Instant::now()
    }

    /// Waits for the hold `id` of `secs`, asked for at `asked`, to expire
    /// (within [`WAIT`]), and checks it did not expire before its length.
    async fn expires_no_sooner_than(&self, id: &str, asked: Instant, secs: u64) {
        let lasted = self.until_expired(id).await.duration_since(asked);
        assert!(
            lasted >= Duration::from_secs(secs),
            "a hold of {secs} s expired after {lasted:?}"
        );
    }

    async fn seq(&self) -> u64 {
        ws::facility_seq(&self.server, "f1").await
    }

    /// Sends readings (`spot`, occupied) and waits for their ack.
    async fn readings(&self, first_seq: u64, spots: &[&str]) {
        let mut socket = ws::sensor(&self.server, "f1", &self.sensor_key, JSON).await;
        let messages: Vec<_> = spots
            .iter()
            .enumerate()
            .map(|(i, spot)| ws::spot(first_seq + i as u64, spot, true))
            .collect();
        ws::send_sensor(&mut socket, JSON, &messages).await;
        let last = first_seq + spots.len() as u64 - 1;
        let errors = ws::await_ack(&mut socket, last).await;
        assert!(errors.is_empty(), "readings refused: {errors:?}");
    }

    /// Every spot's state.
    async fn states(&self) -> Vec<(String, String)> {
        self.api.spot_states("f1", "z1").await
    }

    /// Books until `no_spot_available`; the ids taken.
    async fn book_the_rest(&self, tag: &str) -> Vec<String> {
        let mut taken = Vec::new();
        for i in 0..=SPOTS {
            let reply = self
                .api
                .book(
                    "f1",
                    &self.token(),
                    json!({"plate": format!("{tag}-{i}"), "zone": "z1"}),
                )
                .await;
            if reply.status.as_u16() == 409 {
                reply.assert_error(409, "no_spot_available");
                return taken;
            }
            taken.push(id_of(&reply));
        }
        panic!("the zone of {SPOTS} spots gave {} bookings", taken.len());
    }

    /// Every read route answers without a server error.
    async fn reads_answer(&self) {
        for path in [
            "/health/",
            "/v1/facilities",
            "/v1/facilities/f1",
            "/v1/facilities/f1/zones/z1/spots",
            "/v1/facilities/f1/history",
            "/v1/facilities/f1/history?step=1m",
            "/v1/facilities/f1/ngsi-ld",
            "/v1/datex2/parking-status",
            "/metrics",
        ] {
            let reply = self.api.get(path, None).await;
            assert_eq!(reply.status.as_u16(), 200, "GET {path}: {reply:?}");
        }
    }
}

fn id_of(reply: &Reply) -> String {
    reply.assert_status(201)["id"]
        .as_str()
        .expect("a booking id")
        .to_owned()
}

#[tokio::test]
async fn a_hold_neither_expires_early_nor_lives_longer_when_the_system_clock_jumps_forward() {
    let jumpy = Jumpy::start().await;
    let asked = Instant::now();
    let hold = jumpy.hold("fwd-1", 15).await;
    let id = hold["id"].as_str().expect("id").to_owned();
    jumpy.jump(DAY_SECS).await;
    let after = jumpy.booking(&id).await;
    assert_eq!(
        after["status"], "CONFIRMED",
        "a hold of 15 s, a second into it, after the clock jumped a day ahead: {after}"
    );
    assert_eq!(
        after["expires_at"], hold["expires_at"],
        "its end did not move"
    );
    jumpy.expires_no_sooner_than(&id, asked, 15).await;
    // New holds still end hold_seconds after they start, on the node's clock.
    let next = jumpy.hold("fwd-2", 600).await;
    assert_eq!(
        millis(&next["expires_at"]) - millis(&next["created_at"]),
        600_000
    );
    let output = jumpy.server.output().join("\n");
    assert!(
        output.contains("the system clock moved away from the engine's clock"),
        "the step is logged:\n{output}"
    );
}

#[tokio::test]
async fn a_hold_still_expires_on_time_when_the_system_clock_jumps_back() {
    let jumpy = Jumpy::start().await;
    let asked = Instant::now();
    let hold = jumpy.hold("back-1", 8).await;
    let id = hold["id"].as_str().expect("id").to_owned();
    jumpy.jump(-DAY_SECS).await;
    // Not a day later: within WAIT of its 8 s.
    jumpy.expires_no_sooner_than(&id, asked, 8).await;
    let seen = ws::metric(&jumpy.server, "parkme_clock_offset_seconds").await;
    assert!(seen < -(DAY_SECS as f64) + 60.0, "offset exported: {seen}");
}

#[tokio::test]
async fn acknowledged_bookings_and_readings_survive_kill_9_and_a_restart_with_the_clock_a_day_back()
{
    let mut jumpy = Jumpy::start().await;
    jumpy.readings(1, &["s010", "s011"]).await;
    let confirmed: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(id_of(
                &jumpy
                    .api
                    .book(
                        "f1",
                        &jumpy.token(),
                        json!({"plate": format!("keep-{i}"), "zone": "z1", "hold_seconds": 3600}),
                    )
                    .await,
            ));
        }
        ids
    };
    let before: Vec<Value> = {
        let mut all = Vec::new();
        for id in &confirmed {
            all.push(jumpy.booking(id).await);
        }
        all
    };
    let seq_before = jumpy.seq().await;
    let states_before = jumpy.states().await;

    // The node restarts with its system clock a day behind what it journaled.
    jumpy.set_offset(-DAY_SECS);
    jumpy.server.restart().await;

    assert_eq!(
        jumpy.states().await,
        states_before,
        "every spot as acknowledged"
    );
    for (id, was) in confirmed.iter().zip(&before) {
        let now = jumpy.booking(id).await;
        assert_eq!(now["status"], "CONFIRMED", "{id}: {now}");
        assert_eq!(now["expires_at"], was["expires_at"], "{id} keeps its end");
    }
    let seq_after = jumpy.seq().await;
    assert!(seq_after >= seq_before, "seq {seq_before} then {seq_after}");

    // The spots left are given once each, and seq keeps increasing.
    let taken = jumpy.book_the_rest("after").await;
    assert_eq!(
        taken.len(),
        SPOTS - confirmed.len() - 2,
        "free spots after the restart"
    );
    let new = jumpy.booking(&taken[0]).await;
    let gap = millis(&before[0]["created_at"]) - millis(&new["created_at"]);
    assert!(
        gap > (DAY_SECS - 600) * 1000,
        "the restarted node's clock is a day behind its journal: {} then {}",
        before[0]["created_at"],
        new["created_at"]
    );
    let seq_last = jumpy.seq().await;
    assert!(seq_last > seq_after, "seq {seq_after} then {seq_last}");
    let reserved = jumpy
        .states()
        .await
        .iter()
        .filter(|(_, state)| state == "RESERVED")
        .count();
    assert_eq!(
        reserved,
        confirmed.len() + taken.len(),
        "one booking per spot"
    );
    jumpy.reads_answer().await;
}

#[tokio::test]
async fn after_kill_9_and_a_restart_with_the_clock_a_day_ahead_holds_past_their_end_expire_and_nothing_else_is_lost()
 {
    let mut jumpy = Jumpy::start().await;
    jumpy.readings(1, &["s012"]).await;
    let held: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                jumpy.hold(&format!("short-{i}"), 3600).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        ids
    };
    let seq_before = jumpy.seq().await;

    // A day later by the system clock, every hour-long hold is past its end.
    jumpy.set_offset(DAY_SECS);
    jumpy.server.restart().await;
    for id in &held {
        jumpy.until_expired(id).await;
    }
    let states = jumpy.states().await;
    assert!(
        states
            .iter()
            .any(|(spot, state)| spot == "s012" && state == "OCCUPIED"),
        "the acknowledged reading survives: {states:?}"
    );
    let reserved = states.iter().filter(|(_, s)| s == "RESERVED").count();
    assert_eq!(reserved, 0, "expired holds free their spots: {states:?}");
    let seq_after = jumpy.seq().await;
    assert!(
        seq_after > seq_before,
        "expiries are journaled: {seq_before} then {seq_after}"
    );

    let taken = jumpy.book_the_rest("ahead").await;
    assert_eq!(taken.len(), SPOTS - 1, "every spot but the occupied one");
    jumpy.reads_answer().await;
}
