//! Contract §3.1, `GET /v1/facilities/{fid}/history`, against the real
//! binary: points that hold the counts of their step, kept across a
//! kill -9, and a clear error for every bad query. Samples are taken every
//! second here (`PARKME_HISTORY_SAMPLE_SECS`); the contract's minute is
//! the default.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::http::{Api, in_secs, millis, secs_after, server_with_facility, spot_zone};
use crate::helpers::ws::{JSON, await_ack, send_sensor, sensor, spot};
use crate::helpers::{TestServer, poll_until};

async fn sampled_server() -> (TestServer, String) {
    let (server, _, key) = server_with_facility(
        &[("PARKME_HISTORY_SAMPLE_SECS", "1")],
        vec![spot_zone("A", "A-", 3, "standard")],
    )
    .await;
    (server, key)
}

/// From `from` seconds ago to now, both from one reading of this clock:
/// with `to` left to the server's clock (which may read a millisecond
/// behind this one) two minutes back would sometimes be one step and a
/// bit, and the point near now would be missing.
fn query(from: i64, step: &str) -> String {
    let now = chrono::Utc::now();
    let from = secs_after(now, from).replace('+', "%2B");
    let to = secs_after(now, 0).replace('+', "%2B");
    format!("/v1/facilities/f1/history?from={from}&to={to}&step={step}")
}

async fn last_point(api: &Api) -> Option<Value> {
    let reply = api.get(&query(-120, "1m"), None).await;
    reply.assert_status(200)["points"]
        .as_array()
        .and_then(|p| p.last().cloned())
}

#[tokio::test]
async fn each_point_holds_the_counts_at_the_end_of_its_step_and_survives_kill_9() {
    let (mut server, key) = sampled_server().await;
    let api = Api::new(&server);
    let mut ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut ws, JSON, &[spot(1, "A-002", true)]).await;
    assert!(await_ack(&mut ws, 1).await.is_empty());
    poll_until(
        "a sample shows the occupied spot",
        Duration::from_secs(15),
        || async {
            last_point(&api)
                .await
                .is_some_and(|p| p["totals"]["occupied"] == 1)
        },
    )
    .await;
    let reply = api.get(&query(-120, "1m"), None).await;
    let history = reply.assert_status(200).clone();
    assert_eq!(history["facility"], "f1");
    assert_eq!(history["step"], "1m");
    let points = history["points"].as_array().expect("points");
    assert!(points.len() <= 2, "two steps of a minute: {history}");
    let last = points.last().expect("a point");
    assert_eq!(last["zones"]["A"]["occupied"], 1, "{last}");
    for field in [
        "total",
        "available",
        "reserved",
        "occupied",
        "out_of_service",
        "unknown",
    ] {
        assert!(last["totals"][field].is_u64(), "{field} in {last}");
    }
    assert_eq!(last["totals"]["total"], 3);
    // Points are a step apart and end no later than now.
    let times: Vec<i64> = points.iter().map(|p| millis(&p["at"])).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] == 60_000), "{times:?}");

    server.kill9();
    server.restart().await;
    let api = Api::new(&server);
    let kept = api.get(&query(-120, "1m"), None).await;
    let kept = kept.assert_status(200)["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        kept.iter().any(|p| p["totals"]["occupied"] == 1),
        "the samples survive kill -9: {kept:?}"
    );
}

#[tokio::test]
async fn the_default_range_is_the_last_24_hours_at_5_minutes() {
    let (server, _) = sampled_server().await;
    let api = Api::new(&server);
    let reply = api.get("/v1/facilities/f1/history", None).await;
    let history = reply.assert_status(200);
    assert_eq!(history["step"], "5m");
    let points = history["points"].as_array().expect("points");
    assert!(points.len() <= 288, "{}", points.len());
}

#[tokio::test]
async fn bad_history_queries_get_their_contract_error() {
    let (server, _) = sampled_server().await;
    let api = Api::new(&server);
    let three_days = -3 * 86_400;
    for (path, status, code) in [
        (query(-600, "2m"), 400, "invalid_step"),
        (query(three_days, "1m"), 400, "too_many_points"),
        (
            format!(
                "/v1/facilities/f1/history?from={}&to={}",
                in_secs(60),
                in_secs(0)
            )
            .replace('+', "%2B"),
            400,
            "invalid_range",
        ),
        (
            "/v1/facilities/f1/history?from=yesterday".to_owned(),
            400,
            "invalid_time",
        ),
        (
            "/v1/facilities/nope/history".to_owned(),
            404,
            "unknown_facility",
        ),
    ] {
        let reply = api.get(&path, None).await;
        assert_eq!(reply.status.as_u16(), status, "{path}: {}", reply.text);
        reply.assert_error(status, code);
    }
    // 2,000 points are allowed.
    let edge = api.get(&query(-2000 * 60, "1m"), None).await;
    edge.assert_status(200);
}
