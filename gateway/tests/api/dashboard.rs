//! The dashboard at `GET /`, in a real headless Chromium: it must follow
//! the app socket and show a spot change made through the sensor socket,
//! without reloading. Chromium is driven over the DevTools protocol.
//!
//! This test fails (it does not skip) when Chromium is missing: set
//! `CHROMIUM` to its path if it is not `/usr/bin/chromium`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::helpers::TestServer;
use crate::helpers::ws::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// A headless Chromium, killed on drop.
struct Browser {
    child: Child,
    devtools_port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch(url: &str) -> Browser {
        let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut child = Command::new(&path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("Chromium must be installed at {path} (or set CHROMIUM): {e}")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                    let port = rest
                        .split('/')
                        .next()
                        .and_then(|host| host.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let devtools_port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("Chromium announces its DevTools port");
        Browser {
            child,
            devtools_port,
            _profile: profile,
        }
    }

    /// The DevTools socket of the page showing `url`.
    async fn page(&self, url: &str) -> Page {
        let list = format!("http://127.0.0.1:{}/json/list", self.devtools_port);
        let mut socket_url = None;
        for _ in 0..100 {
            if let Ok(response) = reqwest::get(&list).await {
                let targets: Value = response.json().await.unwrap_or_default();
                socket_url = targets.as_array().into_iter().flatten().find_map(|t| {
                    (t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)))
                        .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                        .flatten()
                });
                if socket_url.is_some() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let socket_url = socket_url.expect("the dashboard page is a DevTools target");
        let (ws, _) = connect_async(socket_url.as_str())
            .await
            .expect("DevTools connects");
        Page { ws, next_id: 0 }
    }
}

struct Page {
    ws: Ws,
    next_id: u64,
}

impl Page {
    /// Sends one DevTools command; its `result` once answered.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(call.to_string()))
            .await
            .expect("DevTools send");
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools socket open")
                .expect("DevTools frame");
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if value["id"] == id {
                return value["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; its value as JSON.
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        self.call("Runtime.evaluate", params).await["result"]["value"].clone()
    }

    /// Polls `expression` until it evaluates to `want`.
    async fn wait_for(&mut self, expression: &str, want: Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            last = self.eval(expression).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{expression}` stayed {last}, expected {want}");
    }
}

const SPOT_STATE: &str =
    r#"(document.querySelector('[data-spot="s1"]') || {dataset: {}}).dataset.state || null"#;
const ZONE_OCCUPIED: &str = r#"(document.querySelector('.zone[data-facility="f1"][data-zone="A"]') || {dataset: {}}).dataset.occupied || null"#;

#[tokio::test]
async fn the_dashboard_shows_a_spot_change_live_in_headless_chromium() {
    let server = TestServer::start(NO_LIMITS).await;
    let spots: Vec<Value> = (1..=6).map(|i| json!({"id": format!("s{i}")})).collect();
    let key = put_facility(
        &server,
        "f1",
        vec![
            json!({"id": "A", "name": "Level A", "spots": spots}),
            json!({"id": "C", "capacity": 10}),
        ],
    )
    .await;
    put_facility(&server, "f2", vec![spot_zone("B", 3)]).await;

    let page_html = reqwest::get(format!("{}/", server.url()))
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page");
    assert!(
        page_html.contains("/v1/stream"),
        "the page follows the app socket"
    );
    assert!(
        !page_html.contains("src=\"http") && !page_html.contains("href=\"http"),
        "the page is self-contained (no CDN)"
    );

    let url = format!("{}/?facility=f1&zone=A", server.url());
    let browser = Browser::launch(&url);
    let mut page = browser.page(&server.url()).await;
    page.wait_for(SPOT_STATE, json!("AVAILABLE")).await;
    page.wait_for(ZONE_OCCUPIED, json!("0")).await;
    // Every facility is shown, with its zones.
    page.wait_for("document.querySelectorAll('.facility').length", json!(2))
        .await;
    page.wait_for(
        r#"document.querySelectorAll('[data-spot]').length"#,
        json!(6),
    )
    .await;

    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(&mut sensor_ws, JSON, &[spot(1, "s1", true)]).await;
    assert!(await_ack(&mut sensor_ws, 1).await.is_empty());
    page.wait_for(SPOT_STATE, json!("OCCUPIED")).await;
    page.wait_for(ZONE_OCCUPIED, json!("1")).await;

    send_sensor(&mut sensor_ws, JSON, &[spot(2, "s1", false)]).await;
    assert!(await_ack(&mut sensor_ws, 2).await.is_empty());
    page.wait_for(SPOT_STATE, json!("AVAILABLE")).await;
}

impl Page {
    /// A PNG of the page as it is drawn now.
    async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = shot["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG")
    }
}

/// Pixels of the facility's 24 h chart that are drawn (not background).
const TREND_INK: &str = r#"(() => {
  const c = document.querySelector('canvas.trend[data-facility="f1"]');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return ink;
})()"#;

#[tokio::test]
async fn the_dashboard_draws_the_occupancy_history_from_real_samples() {
    let mut env = NO_LIMITS.to_vec();
    env.push(("PARKME_HISTORY_SAMPLE_SECS", "1"));
    let server = TestServer::start(&env).await;
    let spots: Vec<Value> = (1..=4).map(|i| json!({"id": format!("s{i}")})).collect();
    let key = put_facility(
        &server,
        "f1",
        vec![json!({"id": "A", "name": "Level A", "spots": spots})],
    )
    .await;
    let mut sensor_ws = sensor(&server, "f1", &key, JSON).await;
    send_sensor(
        &mut sensor_ws,
        JSON,
        &[spot(1, "s1", true), spot(2, "s2", true)],
    )
    .await;
    assert!(await_ack(&mut sensor_ws, 2).await.is_empty());
    // Two samples at least (one a second) before the page asks.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let url = format!("{}/?facility=f1&zone=A&history_every_ms=1000", server.url());
    let browser = Browser::launch(&url);
    let mut page = browser.page(&server.url()).await;
    page.wait_for(
        r#"(document.querySelector('canvas.trend[data-facility="f1"]') || {dataset: {}}).dataset.lastOccupied || null"#,
        json!("2"),
    )
    .await;
    page.wait_for(
        r#"Number((document.querySelector('.zone[data-zone="A"] canvas.spark') || {dataset: {}}).dataset.points || 0) > 0"#,
        json!(true),
    )
    .await;
    let ink = page.eval(TREND_INK).await.as_u64().unwrap_or(0);
    assert!(ink > 20, "the chart is drawn: {ink} pixels");
    let png = page.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-history.png");
    std::fs::write(&out, &png).expect("screenshot written");
    println!(
        "screenshot of the chart: {} ({} bytes)",
        out.display(),
        png.len()
    );
}
