//! `GET /v1/facilities/{fid}/history?from=&to=&step=` (contract §3.1): the
//! query read and checked, the samples read through the node, the points
//! made by `parkme_actors::history`.
//!
//! This module must never read more than the retention keeps, nor answer
//! more than 2,000 points.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use parkme_actors::history::{self, SampleCounts, Step};
use parkme_engine::{FacilityId, Millis};
use parkme_protocol::rest::{Counts, History, HistoryPoint, parse_time, rfc3339};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Id};
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

/// The steps of `?step=`, as the OpenAPI document lists them (each one
/// is [`Step::parse`]'s, unit-tested).
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub enum StepName {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "15m")]
    QuarterHour,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

fn counts(c: &SampleCounts) -> Counts {
    Counts {
        total: c.total,
        available: c.available,
        reserved: c.reserved,
        occupied: c.occupied,
        out_of_service: c.out_of_service,
        unknown: c.unknown,
    }
}

/// A time of the query: an unencoded `+` of an offset arrives as a space.
fn time(field: &'static str, raw: &str) -> ApiResult<Millis> {
    Ok(parse_time(field, &raw.trim().replace(' ', "+"))?)
}

#[utoipa::path(get, path = "/v1/facilities/{fid}/history", operation_id = "get_history", tag = "facilities",
    summary = "Occupancy over time",
    description = "Each point holds the counts as of the end of its step. More than 2,000 points (from `from`, `to` and `step` together) is 400 `too_many_points`; `from` after `to` is 400 `invalid_range`.",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01"),
        ("from" = Option<String>, Query, format = DateTime, description = "RFC 3339; default 24 h before `to`."),
        ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339; default now."),
        ("step" = Option<StepName>, Query, description = "The step between points (default `5m`).")),
    security((), ("user" = []), ("admin" = [])),
    responses((status = 200, description = "The points", body = History)))]
pub async fn get(
    State(app): State<AppState>,
    _caller: Caller,
    Id(id): Id<FacilityId>,
    uri: Uri,
) -> ApiResult<Json<History>> {
    let query = axum::extract::Query::<HistoryQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?
        .0;
    let step = match query.step.as_deref() {
        None => Step::DEFAULT,
        Some(raw) => Step::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_step",
                format!("step must be 1m, 5m, 15m, 1h or 1d, not {raw:?}"),
            )
        })?,
    };
    let now = app.node().now();
    let to = query
        .to
        .as_deref()
        .map(|t| time("to", t))
        .transpose()?
        .unwrap_or(now);
    let from = match query.from.as_deref() {
        Some(raw) => time("from", raw)?,
        None => Millis(to.0.saturating_sub(DAY_MS)),
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "from must not be after to",
        ));
    }
    let ends = history::point_times(from, to, step).ok_or_else(|| {
        ApiError::bad_request(
            "too_many_points",
            format!(
                "from {} to {} at {} is more than {} points; widen the step or narrow the range",
                rfc3339(from),
                rfc3339(to),
                step.as_str(),
                history::MAX_POINTS
            ),
        )
    })?;
    // A point looks back one step, or two samples, whichever is longer.
    let every = i64::try_from(app.node().history_every().as_millis()).unwrap_or(i64::MAX);
    let reach = step.millis().max(every.saturating_mul(2));
    let read_from = Millis(from.0.saturating_sub(reach));
    let samples = app.node().history_samples(&id, read_from, to).await?;
    let points = history::points(&samples, &ends, reach)
        .into_iter()
        .map(|p| HistoryPoint {
            at: rfc3339(p.at),
            totals: counts(&p.sample.totals),
            zones: history::zones_by_id(&p.sample)
                .into_iter()
                .map(|(zone, c)| (zone.to_owned(), counts(&c)))
                .collect(),
        })
        .collect();
    Ok(Json(History {
        facility: id.to_string(),
        step: step.as_str().to_owned(),
        points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_steps_are_the_steps_the_route_reads() {
        for (name, step) in [
            (StepName::Minute, Step::Minute),
            (StepName::FiveMinutes, Step::FiveMinutes),
            (StepName::QuarterHour, Step::QuarterHour),
            (StepName::Hour, Step::Hour),
            (StepName::Day, Step::Day),
        ] {
            let json = serde_json::to_value(name).expect("json");
            assert_eq!(json.as_str().and_then(Step::parse), Some(step), "{name:?}");
        }
    }
}
