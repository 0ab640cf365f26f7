//! Sensors on any node (contract §7): a sensor socket on a node that does
//! not own its facility is served through the owner.
//!
//! The node holding the socket keeps everything of the socket (frames,
//! parsing, the facility's rate limit, acks, back-pressure) and sends the
//! readings of each dispatch to the owner over the signed node channel
//! (`POST /internal/facilities/{fid}/readings`, the readings in bincode,
//! the sensor's key with them), which applies them as its own socket
//! would and answers once they are durable; only then are they acked.
//! When the facility moves, a dispatch the old owner did not take
//! (421, no answer) is resent to the new one, and when it moves to this
//! node it is applied here: the sensor never reconnects. Re-applying a
//! reading is harmless (state-based idempotency, contract §4).
//!
//! Dispatches of one socket reach the owner one at a time and in order
//! (a reading must not overtake an earlier one of the same spot), so one
//! socket's relayed throughput is a dispatch per round trip and commit.
//!
//! This module must never ack: it reports what the owner answered, and a
//! dispatch nobody took within the wait budget comes back as retryable
//! refusals (`unavailable`), never as success.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use parkme_engine::codec;
use parkme_engine::{FacilityId, Reading};
use tokio::time::Instant;

use super::{Cluster, routing, signature};
use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the sensor's key to the owner.
pub const SENSOR_KEY_HEADER: &str = "x-sensor-key";
/// One relayed dispatch's budget per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between attempts while the facility has no owner.
const POLL: Duration = Duration::from_millis(50);

/// Why a relayed reading was not applied: the code and message the owner
/// (or this node) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal {
            code: e.code.to_owned(),
            message: e.message,
        }
    }
}

/// What the owner made of one relayed dispatch.
#[derive(Debug)]
pub enum Relayed {
    /// Per reading, in order: `None` durable, `Some` refused.
    Answered(Vec<Option<Refusal>>),
    /// The key the socket came with is no longer the facility's.
    Revoked(ApiError),
}

/// One sensor socket's way to its facility's owner.
#[derive(Clone)]
pub struct SensorRelay {
    cluster: Arc<Cluster>,
    key: String,
    client: IpAddr,
    /// Held from a dispatch's send to its answer: one at a time, in order.
    order: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for SensorRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorRelay").finish_non_exhaustive()
    }
}

impl SensorRelay {
    pub fn new(cluster: Arc<Cluster>, key: String, client: IpAddr) -> Self {
        SensorRelay {
            cluster,
            key,
            client,
            order: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The handshake: the owner checks the key (an empty dispatch), and
    /// its refusal (401, 403, 404) is this node's answer.
    pub async fn admit(&self, app: &AppState, fid: &FacilityId) -> Result<(), ApiError> {
        match self.send(app, fid, Vec::new()).await {
            Relayed::Answered(_) => Ok(()),
            Relayed::Revoked(error) => Err(error),
        }
    }

    /// Applies `readings` on the facility's owner, wherever it is now;
    /// waits its turn behind this socket's earlier dispatches.
    pub async fn sense(&self, app: &AppState, fid: &FacilityId, readings: Vec<Reading>) -> Relayed {
        let _turn = Arc::clone(&self.order).lock_owned().await;
        self.send(app, fid, readings).await
    }

    async fn send(&self, app: &AppState, fid: &FacilityId, readings: Vec<Reading>) -> Relayed {
        let count = readings.len();
        let deadline = Instant::now() + routing::wait_budget(&self.cluster);
        let body = codec::encode_peer(&readings);
        loop {
            if app.node().serves(fid) && self.cluster.owns(fid) {
                if let Some(relayed) = self.here(app, fid, &readings).await {
                    return relayed;
                }
            } else if let Some(owner) = self.cluster.view().owner(fid).cloned()
                && owner.id != self.cluster.me().id
            {
                match self.there(&owner.url, fid, &body, count).await {
                    Ok(Some(relayed)) => {
                        crate::metrics::forwarded("sensor");
                        return relayed;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(facility = %fid, owner = %owner.url, error = %e, "relaying readings failed; looking again");
                    }
                }
            }
            if Instant::now() >= deadline {
                let refusal = Refusal {
                    code: "unavailable".into(),
                    message: format!("facility {fid} has no reachable owner; resend shortly"),
                };
                return Relayed::Answered(vec![Some(refusal); count]);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// On this node, which owns the facility now; `None` if it let it go
    /// meanwhile.
    async fn here(
        &self,
        app: &AppState,
        fid: &FacilityId,
        readings: &[Reading],
    ) -> Option<Relayed> {
        let node = app.node();
        match node.check_sensor_key(fid, &self.key) {
            parkme_actors::KeyCheck::Valid => {}
            parkme_actors::KeyCheck::UnknownFacility => return None,
            refused => return Some(Relayed::Revoked(refusal_of(refused, fid))),
        }
        if readings.is_empty() {
            return Some(Relayed::Answered(Vec::new()));
        }
        match node.sense(fid, readings.to_vec()).await {
            Ok(results) => Some(Relayed::Answered(
                results
                    .into_iter()
                    .map(|r| r.err().map(|e| Refusal::from(ApiError::from(e))))
                    .collect(),
            )),
            Err(_) if !node.serves(fid) => None,
            Err(e) => {
                let refusal = Refusal::from(ApiError::from(e));
                Some(Relayed::Answered(vec![Some(refusal); readings.len()]))
            }
        }
    }

    /// On the owner at `base`; `Ok(None)` if it does not own the facility.
    async fn there(
        &self,
        base: &str,
        fid: &FacilityId,
        body: &[u8],
        count: usize,
    ) -> Result<Option<Relayed>, String> {
        let mut headers = HeaderMap::new();
        signature::sign(
            &mut headers,
            self.cluster.secret(),
            &self.cluster.me().id.to_string(),
            self.client,
        );
        let key = HeaderValue::from_str(&self.key).map_err(|e| e.to_string())?;
        headers.insert(SENSOR_KEY_HEADER, key);
        let answer = self
            .cluster
            .client()
            .post(format!("{base}/internal/facilities/{fid}/readings"))
            .headers(headers)
            .body(body.to_vec())
            .timeout(ATTEMPT_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        if answer.headers().contains_key(routing::NOT_OWNER) {
            return Ok(None);
        }
        let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
        match status {
            StatusCode::OK => {
                let results: Vec<Option<(String, String)>> =
                    codec::decode_peer(&bytes).map_err(|e| e.to_string())?;
                if results.len() != count {
                    return Err(format!("{} answers for {count} readings", results.len()));
                }
                Ok(Some(Relayed::Answered(
                    results
                        .into_iter()
                        .map(|r| r.map(|(code, message)| Refusal { code, message }))
                        .collect(),
                )))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                let body: Option<parkme_protocol::rest::ErrorBody> =
                    serde_json::from_slice(&bytes).ok();
                let (code, message) = body.map_or_else(
                    || {
                        (
                            "unauthorized".into(),
                            "the owner refused the sensor key".into(),
                        )
                    },
                    |b| (b.error.code, b.error.message),
                );
                let mut error = ApiError::new(status, "unauthorized", message);
                error.code = match code.as_ref() {
                    "forbidden" => "forbidden",
                    "unknown_facility" => "unknown_facility",
                    _ => "unauthorized",
                };
                Ok(Some(Relayed::Revoked(error)))
            }
            // Busy, moving, restarting: look again.
            other => Err(format!("the owner answered {other}")),
        }
    }
}

/// The handshake's answer for a refused key, as on the owner.
pub fn refusal_of(check: parkme_actors::KeyCheck, fid: &FacilityId) -> ApiError {
    match check {
        parkme_actors::KeyCheck::UnknownFacility => ApiError::unknown("facility", fid.as_str()),
        parkme_actors::KeyCheck::Missing => ApiError::unauthorized("a sensor key is required"),
        parkme_actors::KeyCheck::Foreign => {
            ApiError::forbidden("this sensor key belongs to another facility")
        }
        parkme_actors::KeyCheck::Valid | parkme_actors::KeyCheck::Wrong => {
            ApiError::unauthorized("invalid sensor key")
        }
    }
}
