//! A layout replace is all or nothing, through the real binary: layout
//! PUTs racing bookings, service toggles and sensor readings, the process
//! killed with `kill -9` in the middle, restarted on the same data dir.
//! The facility then serves exactly one whole layout (the one last
//! acknowledged, or one whose PUT was still in flight), and every way of
//! naming a spot agrees with it: `GET` facility and spots, booking by spot
//! id, service toggles and sensor readings.

use crate::helpers::{http, ws};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::helpers::TestServer;
use crate::helpers::http::{Api, layout};
use crate::helpers::ws::{JSON, Ws};
use parkme_protocol::sensor::SensorReply;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// A zone of a test layout: `n` spots `{zone}-001`... or a counter.
#[derive(Debug, Clone, Copy)]
enum Zone {
    Spots(&'static str, usize),
    Counter(&'static str, u32),
}

/// The layouts the race moves between: each changes most zones at once
/// (spots added and dropped, zones added and removed, a counter zone).
fn layouts() -> Vec<Vec<Zone>> {
    use Zone::*;
    vec![
        vec![Spots("A", 4), Spots("B", 4), Spots("C", 4), Spots("D", 4)],
        vec![
            Spots("A", 6),
            Spots("B", 3),
            Spots("C", 5),
            Spots("D", 2),
            Spots("E", 3),
        ],
        vec![Spots("A", 3), Spots("B", 6), Spots("C", 2), Spots("E", 4)],
        vec![
            Spots("A", 5),
            Spots("B", 2),
            Spots("C", 6),
            Spots("D", 3),
            Counter("F", 3),
        ],
        vec![Spots("A", 2), Spots("B", 5), Spots("D", 5), Spots("E", 2)],
    ]
}

fn spot_id(zone: &str, n: usize) -> String {
    format!("{zone}-{n:03}")
}

fn document(zones: &[Zone]) -> Value {
    layout(
        zones
            .iter()
            .map(|zone| match *zone {
                Zone::Spots(id, n) => http::spot_zone(id, &format!("{id}-"), n, "standard"),
                Zone::Counter(id, capacity) => json!({"id": id, "capacity": capacity}),
            })
            .collect(),
    )
}

/// What a layout declares: zone ids in order, each with its spot ids.
type Served = Vec<(String, Vec<String>)>;

fn declared(zones: &[Zone]) -> Served {
    zones
        .iter()
        .map(|zone| match *zone {
            Zone::Spots(id, n) => (id.to_owned(), (1..=n).map(|i| spot_id(id, i)).collect()),
            Zone::Counter(id, _) => (id.to_owned(), Vec::new()),
        })
        .collect()
}

fn universe() -> Vec<String> {
    let all: BTreeSet<String> = layouts()
        .iter()
        .flat_map(|l| declared(l))
        .flat_map(|(_, spots)| spots)
        .collect();
    all.into_iter().collect()
}

/// One request of the race; `None` once the server is gone.
async fn try_send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// What the race saw: every PUT in the order sent with its answer (`None`:
/// no answer, the process died), and every booking acknowledged.
#[derive(Debug, Default)]
struct Seen {
    puts: Vec<(usize, Option<u16>)>,
    booked: Vec<String>,
}

struct Race {
    base: String,
    admin: String,
    user: String,
    key: String,
    ws: String,
}

impl Race {
    /// PUTs the layouts one after another; `sent` counts the PUTs sent.
    async fn put_layouts(
        &self,
        seen: Arc<Mutex<Seen>>,
        stop: Arc<AtomicBool>,
        first: usize,
        sent: tokio::sync::watch::Sender<usize>,
    ) {
        let client = reqwest::Client::new();
        let all = layouts();
        for i in first.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let which = i % all.len();
            let url = format!("{}/v1/facilities/f1", self.base);
            let index = {
                let mut seen = seen.lock().await;
                seen.puts.push((which, None));
                seen.puts.len() - 1
            };
            let request = try_send(
                &client,
                reqwest::Method::PUT,
                url,
                &self.admin,
                Some(document(&all[which])),
            );
            sent.send_replace(index + 1);
            let answer = request.await;
            let Some((status, body)) = answer else { return };
            assert!(
                matches!(status, 200 | 409 | 503),
                "layout PUT answered {status}: {body}"
            );
            seen.lock().await.puts[index].1 = Some(status);
        }
    }

    async fn book_and_cancel(&self, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>, seed: u64) {
        let client = reqwest::Client::new();
        let spots = universe();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut mine: Vec<String> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let url = format!("{}/v1/facilities/f1/bookings", self.base);
            let zone = ["A", "B", "C", "D", "E", "F"][rng.random_range(0..6)];
            let spot = &spots[rng.random_range(0..spots.len())];
            // Short holds, most bookings cancelled again at once: few spots
            // are held at any moment, so layout changes that drop spots
            // often get through, racing the bookings that come next.
            let hold = 1;
            let body = match rng.random_range(0..3) {
                0 => json!({"plate": "RACE-1", "zone": zone, "hold_seconds": hold}),
                _ => json!({"plate": "RACE-1", "spot": spot, "hold_seconds": hold}),
            };
            let Some((status, body)) =
                try_send(&client, reqwest::Method::POST, url, &self.user, Some(body)).await
            else {
                return;
            };
            assert_ne!(status, 500, "a booking answered 500: {body}");
            if status == 201 {
                let id = body["id"].as_str().expect("booking id").to_owned();
                seen.lock().await.booked.push(id.clone());
                mine.push(id);
            }
            // Most bookings are cancelled again soon, so that layout changes
            // often find the spots they drop free and get through.
            if !mine.is_empty() && rng.random_bool(0.85) {
                let id = mine.remove(rng.random_range(0..mine.len()));
                let url = format!("{}/v1/bookings/{id}", self.base);
                if try_send(&client, reqwest::Method::DELETE, url, &self.user, None)
                    .await
                    .is_none()
                {
                    return;
                }
            }
        }
    }

    async fn toggle_service(&self, stop: Arc<AtomicBool>, seed: u64) {
        let client = reqwest::Client::new();
        let spots = universe();
        let mut rng = StdRng::seed_from_u64(seed);
        while !stop.load(Ordering::Relaxed) {
            let spot = &spots[rng.random_range(0..spots.len())];
            let url = format!("{}/v1/facilities/f1/spots/{spot}/service", self.base);
            let body = json!({"out_of_service": rng.random_bool(0.3)});
            let Some((status, body)) =
                try_send(&client, reqwest::Method::PUT, url, &self.admin, Some(body)).await
            else {
                return;
            };
            assert_ne!(status, 500, "a service toggle answered 500: {body}");
        }
    }

    async fn sense(&self, stop: Arc<AtomicBool>, seed: u64) {
        let spots = universe();
        let mut rng = StdRng::seed_from_u64(seed);
        let Some(mut ws) = self.sensor().await else {
            return;
        };
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let spot = &spots[rng.random_range(0..spots.len())];
            // Mostly "vacated": a reading that occupies a held spot makes
            // its booking ACTIVE, which holds the spot until it is vacated.
            let message = ws::spot(seq, spot, rng.random_bool(0.25));
            use futures_util::SinkExt;
            let frame = tokio_tungstenite::tungstenite::Message::text(
                serde_json::to_string(&message).expect("JSON"),
            );
            if ws.send(frame).await.is_err() || read_reply(&mut ws, seq).await.is_none() {
                return;
            }
        }
    }

    async fn sensor(&self) -> Option<Ws> {
        let url = format!("{}/v1/sensors/f1", self.ws);
        let bearer = format!("Bearer {}", self.key);
        ws::open(
            &url,
            &[
                ("authorization", bearer.as_str()),
                ("sec-websocket-protocol", JSON),
            ],
        )
        .await
        .ok()
    }
}

/// The server's answer to sensor message `seq`: `Ok` for an ack, the error
/// code otherwise; `None` if the socket closed.
async fn read_reply(ws: &mut Ws, seq: u64) -> Option<Result<(), String>> {
    loop {
        let said = ws::next_within(ws, Duration::from_secs(10)).await?;
        let text = match said {
            ws::Said::Text(text) => text,
            _ => return None,
        };
        let reply: SensorReply = serde_json::from_str(&text).ok()?;
        match reply {
            SensorReply::Error {
                seq: Some(s), code, ..
            } if s == seq => return Some(Err(code)),
            SensorReply::Ack { seq: acked } if acked >= seq => return Some(Ok(())),
            _ => {}
        }
    }
}

/// The layouts the facility may be in after the race: the one last
/// acknowledged (or `before`, if none was), or any sent after it that was
/// not refused (its outcome unknown to the client).
fn possible(seen: &Seen, before: usize) -> Vec<usize> {
    let last_ok = seen.puts.iter().rposition(|(_, s)| *s == Some(200));
    let (current, later) = match last_ok {
        Some(i) => (seen.puts[i].0, &seen.puts[i + 1..]),
        None => (before, &seen.puts[..]),
    };
    let mut possible = vec![current];
    possible.extend(
        later
            .iter()
            .filter(|(_, status)| *status != Some(409))
            .map(|(which, _)| *which),
    );
    possible
}

/// Asserts the facility serves one of `candidates` whole and consistently;
/// returns which.
async fn assert_serves_one_of(
    server: &TestServer,
    race: &Race,
    candidates: &[usize],
    booked: &[String],
) -> usize {
    let api = Api::new(server);
    let admin = server.admin_token();
    let facility = api.get("/v1/facilities/f1", None).await;
    let zones: Vec<String> = facility.assert_status(200)["zones"]
        .as_array()
        .expect("zones")
        .iter()
        .map(|z| z["id"].as_str().expect("zone id").to_owned())
        .collect();
    let mut served: Served = Vec::new();
    let mut listed: HashMap<String, Value> = HashMap::new();
    for zone in &zones {
        let reply = api
            .get(&format!("/v1/facilities/f1/zones/{zone}/spots"), None)
            .await;
        let spots = reply.assert_status(200)["spots"]
            .as_array()
            .expect("spots")
            .clone();
        served.push((
            zone.clone(),
            spots
                .iter()
                .map(|s| s["id"].as_str().expect("spot id").to_owned())
                .collect(),
        ));
        for spot in spots {
            listed.insert(spot["id"].as_str().expect("spot id").to_owned(), spot);
        }
    }
    let all = layouts();
    let which = candidates
        .iter()
        .copied()
        .find(|&i| declared(&all[i]) == served)
        .unwrap_or_else(|| {
            panic!("the facility serves {served:?}, not one whole layout of {candidates:?}")
        });

    let mut ws = race.sensor().await.expect("the sensor socket opens");
    let mut seq = 0;
    let plate = json!("CHECK-1");
    for (id, spot) in &listed {
        let state = spot["state"].as_str().expect("state");
        let service = api
            .put(
                &format!("/v1/facilities/f1/spots/{id}/service"),
                Some(admin),
                json!({"out_of_service": state == "OUT_OF_SERVICE"}),
            )
            .await;
        service.assert_status(200);
        // Booked or taken (a race hold may have run out since the
        // listing), never unknown.
        let booked = api
            .book(
                "f1",
                &race.user,
                json!({"plate": plate, "spot": id, "hold_seconds": 60}),
            )
            .await;
        match booked.status.as_u16() {
            201 => {
                let booking = booked.json["id"].as_str().expect("id");
                api.delete(&format!("/v1/bookings/{booking}"), Some(&race.user))
                    .await
                    .assert_status(200);
            }
            _ => booked.assert_error(409, "spot_not_available"),
        }
        seq += 1;
        ws::send_sensor(&mut ws, JSON, &[ws::spot(seq, id, state == "OCCUPIED")]).await;
        assert_eq!(
            read_reply(&mut ws, seq).await,
            Some(Ok(())),
            "a reading for listed spot {id}"
        );
        if let Some(booking) = spot["booking"].as_str() {
            let record = api
                .get(&format!("/v1/bookings/{booking}"), Some(admin))
                .await;
            let record = record.assert_status(200);
            assert_eq!(record["spot"].as_str(), Some(id.as_str()), "{record}");
        }
    }
    for id in universe().iter().filter(|id| !listed.contains_key(*id)) {
        api.put(
            &format!("/v1/facilities/f1/spots/{id}/service"),
            Some(admin),
            json!({"out_of_service": true}),
        )
        .await
        .assert_error(404, "unknown_spot");
        api.book("f1", &race.user, json!({"plate": plate, "spot": id}))
            .await
            .assert_error(404, "unknown_spot");
        seq += 1;
        ws::send_sensor(&mut ws, JSON, &[ws::spot(seq, id, true)]).await;
        assert_eq!(
            read_reply(&mut ws, seq).await,
            Some(Err("unknown_spot".to_owned())),
            "a reading for unlisted spot {id}"
        );
    }
    for booking in booked {
        let record = api
            .get(&format!("/v1/bookings/{booking}"), Some(admin))
            .await;
        let record = record.assert_status(200);
        if !matches!(record["status"].as_str(), Some("CONFIRMED" | "ACTIVE")) {
            continue;
        }
        match record["spot"].as_str() {
            Some(spot) => assert_eq!(
                listed.get(spot).and_then(|s| s["booking"].as_str()),
                Some(booking.as_str()),
                "live booking {record} holds a listed spot"
            ),
            None => assert!(
                zones
                    .iter()
                    .any(|z| Some(z.as_str()) == record["zone"].as_str()),
                "live counter booking {record} is in a listed zone"
            ),
        }
    }
    which
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_puts_racing_bookings_and_kill_9_leave_exactly_one_whole_layout() {
    let mut env = http::NO_LIMITS.to_vec();
    env.push(("PARKME_RATE_SENSOR_PER_SEC", "0"));
    let mut server = TestServer::start(&env).await;
    let api = Api::new(&server);
    let created = api
        .put_facility(server.admin_token(), "f1", document(&layouts()[0]))
        .await;
    let race = Arc::new(Race {
        base: server.url(),
        admin: server.admin_token().to_owned(),
        user: server.user_token("racer"),
        key: created["sensor_key"]
            .as_str()
            .expect("sensor key")
            .to_owned(),
        ws: server.ws_url(),
    });
    let mut current = 0;
    let mut booked = Vec::new();
    let mut seed = StdRng::seed_from_u64(0x1a);
    for round in 0..8u64 {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let (sent, mut puts_sent) = tokio::sync::watch::channel(0);
        {
            let (race, seen, stop) = (Arc::clone(&race), Arc::clone(&seen), Arc::clone(&stop));
            let first = current + 1;
            tasks.push(tokio::spawn(async move {
                race.put_layouts(seen, stop, first, sent).await
            }));
        }
        for _ in 0..4 {
            let (race, seen, stop) = (Arc::clone(&race), Arc::clone(&seen), Arc::clone(&stop));
            let s = seed.random();
            tasks.push(tokio::spawn(async move {
                race.book_and_cancel(seen, stop, s).await
            }));
        }
        {
            let (race, stop) = (Arc::clone(&race), Arc::clone(&stop));
            let s = seed.random();
            tasks.push(tokio::spawn(
                async move { race.toggle_service(stop, s).await },
            ));
        }
        {
            let (race, stop) = (Arc::clone(&race), Arc::clone(&stop));
            let s = seed.random();
            tasks.push(tokio::spawn(async move { race.sense(stop, s).await }));
        }
        // Kill in the middle of it all, a few milliseconds into the n-th
        // layout PUT of the round (a different one each round), so that
        // the process dies while a layout change is under way.
        let nth = seed.random_range(3..20);
        let _ = puts_sent.wait_for(|sent| *sent >= nth).await;
        let delay = seed.random_range(0..4000);
        tokio::time::sleep(Duration::from_micros(delay)).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("race task");
        }

        server.restart().await;
        let seen = seen.lock().await;
        assert!(
            seen.puts.iter().any(|(_, s)| s.is_some()),
            "round {round}: no layout PUT was answered before the kill"
        );
        booked.extend(seen.booked.iter().cloned());
        let candidates = possible(&seen, current);
        current = assert_serves_one_of(&server, &race, &candidates, &booked).await;

        // And it is a layout like any other: the next change goes through.
        let before = api.get("/v1/facilities/f1", None).await.json["seq"]
            .as_u64()
            .expect("seq");
        let next = (current + 2) % layouts().len();
        let reply = api
            .put(
                "/v1/facilities/f1",
                Some(server.admin_token()),
                document(&layouts()[next]),
            )
            .await;
        match reply.status.as_u16() {
            200 => {
                current = next;
                assert!(reply.json["seq"].as_u64().expect("seq") > before);
            }
            _ => {
                reply.assert_status(409);
                let code = reply.json["error"]["code"].as_str();
                assert!(
                    matches!(
                        code,
                        Some("spot_has_live_booking" | "zone_has_live_booking")
                    ),
                    "refused with {reply:?}"
                );
            }
        }
        assert_serves_one_of(&server, &race, &[current], &booked).await;
    }
}
