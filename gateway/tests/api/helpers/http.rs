//! A thin JSON client for the HTTP API tests; it never retries or hides
//! a status.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::TestServer;

/// Server env that lifts every hourly limit, for tests that need volume.
pub const NO_LIMITS: &[(&str, &str)] = &[
    ("PARKME_RATE_ANON_PER_HOUR", "0"),
    ("PARKME_RATE_USER_PER_HOUR", "0"),
    ("PARKME_RATE_BOOKINGS_PER_HOUR", "0"),
];

/// One answer: status, headers, body as text and (if it parses) JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Asserts the contract's error shape with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {self:?}");
        self.assert_error_shape();
        assert_eq!(self.json["error"]["code"], code, "code of {self:?}");
    }

    /// Asserts `{"error":{"code":"snake_case","message":"..."}}`.
    #[track_caller]
    pub fn assert_error_shape(&self) {
        let error = self.json["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an error object: {self:?}"));
        let code = error["code"].as_str().expect("error.code is a string");
        assert!(
            !code.is_empty()
                && code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "error.code is snake_case: {code:?}"
        );
        assert!(error["message"].is_string(), "error.message: {self:?}");
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "content type of an error: {content_type:?}"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status of {self:?}");
        &self.json
    }
}

/// What to send as a body.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        Api::at(server.url())
    }

    pub fn at(base: String) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Api { client, base }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(bytes) => request
                .header("content-type", "application/json")
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, Body::None, &[]).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::DELETE, path, token, Body::None, &[])
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::PUT, path, token, Body::Json(body), &[])
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Body::Json(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::PATCH, path, token, Body::Json(body), &[])
            .await
    }

    /// `POST /v1/facilities/{fid}/bookings`.
    pub async fn book(&self, fid: &str, token: &str, body: Value) -> Reply {
        self.post(&format!("/v1/facilities/{fid}/bookings"), Some(token), body)
            .await
    }

    /// Creates a facility as the admin; panics unless 200/201.
    pub async fn put_facility(&self, admin: &str, fid: &str, layout: Value) -> Value {
        let reply = self
            .put(&format!("/v1/facilities/{fid}"), Some(admin), layout)
            .await;
        assert!(
            matches!(reply.status.as_u16(), 200 | 201),
            "facility PUT: {reply:?}"
        );
        reply.json
    }

    /// `{spot id: state}` of a zone.
    pub async fn spot_states(&self, fid: &str, zone: &str) -> Vec<(String, String)> {
        let reply = self
            .get(&format!("/v1/facilities/{fid}/zones/{zone}/spots"), None)
            .await;
        reply.assert_status(200)["spots"]
            .as_array()
            .expect("spots array")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().expect("spot id").to_owned(),
                    s["state"].as_str().expect("spot state").to_owned(),
                )
            })
            .collect()
    }
}

/// A server started with [`NO_LIMITS`] plus `extra`, holding facility
/// `f1` of `zones`; its API and the facility's sensor key.
pub async fn server_with_facility(
    extra: &[(&str, &str)],
    zones: Vec<Value>,
) -> (TestServer, Api, String) {
    let mut env = NO_LIMITS.to_vec();
    env.extend_from_slice(extra);
    let server = TestServer::start(&env).await;
    let api = Api::new(&server);
    let created = api
        .put_facility(server.admin_token(), "f1", layout(zones))
        .await;
    let key = created["sensor_key"]
        .as_str()
        .expect("sensor key")
        .to_owned();
    (server, api, key)
}

/// RFC 3339 (UTC) of now plus `secs` (negative: the past).
pub fn in_secs(secs: i64) -> String {
    secs_after(chrono::Utc::now(), secs)
}

/// RFC 3339 (UTC) of `base` plus `secs`: two times of one window from one
/// reading of the clock are exactly as far apart as asked.
pub fn secs_after(base: chrono::DateTime<chrono::Utc>, secs: i64) -> String {
    let at = base + chrono::Duration::seconds(secs);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch of an RFC 3339 time in a reply.
pub fn millis(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a time, got {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

/// A spot zone `zone` with `n` spots `{prefix}{i}` of `kind`.
pub fn spot_zone(zone: &str, prefix: &str, n: usize, kind: &str) -> Value {
    let spots: Vec<Value> = (1..=n)
        .map(|i| json!({"id": format!("{prefix}{i:03}"), "kind": kind}))
        .collect();
    json!({"id": zone, "name": format!("Zone {zone}"), "spots": spots})
}

/// A facility layout around the given zones.
pub fn layout(zones: Vec<Value>) -> Value {
    json!({
        "name": "Test Garage",
        "timezone": "Europe/Paris",
        "location": {"lat": 48.8566, "lon": 2.3522},
        "zones": zones,
    })
}
