//! The HTTP side of the contract (§3) as the harness uses it: create the
//! run's facilities (admin), book and cancel (user JWTs), read spots. One
//! HTTP client per source address. Every answer is parsed defensively:
//! an unexpected body is an error code, never a panic.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};

use crate::LoadtestError;
use crate::scenario::FacilitySpec;

/// How long one HTTP request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed call, named by the contract's error code (or a transport one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: Option<u16>,
    pub code: String,
    pub retry_after: Option<Duration>,
}

impl ApiFailure {
    fn transport(e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() {
            "http_timeout"
        } else if e.is_connect() {
            "http_connect"
        } else {
            "http_transport"
        };
        Self {
            status: None,
            code: code.into(),
            retry_after: None,
        }
    }
}

/// A booking as the server confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub id: String,
    pub facility: String,
    pub spot: Option<String>,
    pub status: String,
    /// `expires_at` in ms since the epoch.
    pub expires_at_ms: i64,
}

impl Confirmation {
    /// Reads the contract's booking object.
    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let expires = text("expires_at")?;
        let expires_at_ms = chrono::DateTime::parse_from_rfc3339(&expires)
            .ok()?
            .timestamp_millis();
        Some(Self {
            id: text("id")?,
            facility: text("facility").unwrap_or_default(),
            spot: text("spot"),
            status: text("status").unwrap_or_default(),
            expires_at_ms,
        })
    }
}

/// One spot of `GET .../spots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotState {
    pub id: String,
    pub state: String,
    pub booking: Option<String>,
}

#[derive(Debug)]
pub struct Api {
    base: Url,
    clients: Vec<Client>,
    next: AtomicUsize,
    admin_token: String,
}

impl Api {
    pub fn new(base: &Url, binds: &[IpAddr], admin_token: &str) -> Result<Self, LoadtestError> {
        let build = |bind: Option<IpAddr>| {
            Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1024)
                .local_address(bind)
                .build()
                .map_err(|e| LoadtestError::Setup(format!("http client: {e}")))
        };
        let clients = if binds.is_empty() {
            vec![build(None)?]
        } else {
            binds
                .iter()
                .map(|b| build(Some(*b)))
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            base: base.clone(),
            clients,
            next: AtomicUsize::new(0),
            admin_token: admin_token.to_owned(),
        })
    }

    fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i % self.clients.len()]
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// Creates (or replaces) a facility; returns its sensor key.
    pub async fn put_facility(&self, spec: &FacilitySpec) -> Result<String, ApiFailure> {
        let response = self
            .client()
            .put(self.url(&format!("/v1/facilities/{}", spec.id)))
            .bearer_auth(&self.admin_token)
            .json(&spec.layout_json())
            .send()
            .await
            .map_err(|e| ApiFailure::transport(&e))?;
        let body = read(response).await?;
        body.get("sensor_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure {
                status: None,
                code: "no_sensor_key".into(),
                retry_after: None,
            })
    }

    /// `POST /v1/facilities/{fid}/bookings` in a zone.
    pub async fn book(
        &self,
        token: &str,
        facility: &str,
        zone: &str,
        plate: &str,
        hold_seconds: u64,
        idempotency_key: &str,
    ) -> Result<Confirmation, ApiFailure> {
        let response = self
            .client()
            .post(self.url(&format!("/v1/facilities/{facility}/bookings")))
            .bearer_auth(token)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({"plate": plate, "zone": zone, "hold_seconds": hold_seconds}))
            .send()
            .await
            .map_err(|e| ApiFailure::transport(&e))?;
        let body = read(response).await?;
        Confirmation::from_json(&body).ok_or_else(|| ApiFailure {
            status: None,
            code: "malformed_booking".into(),
            retry_after: None,
        })
    }

    /// `DELETE /v1/bookings/{id}`.
    pub async fn cancel(&self, token: &str, booking: &str) -> Result<(), ApiFailure> {
        let response = self
            .client()
            .delete(self.url(&format!("/v1/bookings/{booking}")))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApiFailure::transport(&e))?;
        read(response).await.map(drop)
    }

    /// `GET /v1/facilities/{fid}/zones/{zid}/spots`.
    pub async fn spots(&self, facility: &str, zone: &str) -> Result<Vec<SpotState>, ApiFailure> {
        let response = self
            .client()
            .get(self.url(&format!("/v1/facilities/{facility}/zones/{zone}/spots")))
            .send()
            .await
            .map_err(|e| ApiFailure::transport(&e))?;
        let body = read(response).await?;
        let spots = body
            .get("spots")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiFailure {
                status: None,
                code: "malformed_spots".into(),
                retry_after: None,
            })?;
        Ok(spots
            .iter()
            .filter_map(|s| {
                Some(SpotState {
                    id: s.get("id")?.as_str()?.to_owned(),
                    state: s.get("state")?.as_str()?.to_owned(),
                    booking: s.get("booking").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect())
    }
}

/// The JSON body of a 2xx, or the contract's error code.
async fn read(response: reqwest::Response) -> Result<Value, ApiFailure> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ApiFailure::transport(&e))?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if status.is_success() {
        return body.ok_or_else(|| ApiFailure {
            status: Some(status.as_u16()),
            code: "malformed_body".into(),
            retry_after: None,
        });
    }
    let code = body
        .as_ref()
        .and_then(|b| b.pointer("/error/code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| fallback_code(status));
    Err(ApiFailure {
        status: Some(status.as_u16()),
        code,
        retry_after,
    })
}

fn fallback_code(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
}

/// An HS256 user token for `sub`, valid for `valid_for`.
pub fn mint_jwt(secret: &str, sub: &str, valid_for: Duration) -> Result<String, LoadtestError> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + i64::try_from(valid_for.as_secs()).unwrap_or(86_400);
    jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": sub, "iat": now, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| LoadtestError::Setup(format!("minting a user token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_read_from_the_contract_shape() {
        let body = json!({
            "id": "bk1", "facility": "f", "zone": "R", "spot": "R-0001", "plate": "AB1",
            "status": "CONFIRMED", "created_at": "2025-01-01T00:00:00.000Z",
            "expires_at": "2025-01-01T00:00:04.500Z"
        });
        let c = Confirmation::from_json(&body).expect("parses");
        assert_eq!(c.spot.as_deref(), Some("R-0001"));
        assert_eq!(c.expires_at_ms % 100_000, 4_500);
        assert!(Confirmation::from_json(&json!({"id": 3})).is_none());
    }

    #[test]
    fn minted_tokens_are_three_part_jwts() {
        let token = mint_jwt("s3cret", "lt-u1", Duration::from_secs(60)).expect("mints");
        assert_eq!(token.split('.').count(), 3);
    }
}
