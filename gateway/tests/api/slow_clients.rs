//! Slowloris and friends, against the real binary over raw TCP: clients
//! that send nothing, trickle a request head, stall a body, stop reading
//! their response, or open too many connections. One test per promise;
//! timeouts are set to a second so the tests are quick, and each asserts
//! only a generous bound (the connection is gone well before a client
//! could have held it for long).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::helpers::TestServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test lets a connection live before calling it "held open".
const HELD: Duration = Duration::from_secs(6);

/// A connection to the server from the local address `from` (any of
/// 127.0.0.0/8, so that tests can play several clients).
async fn connect_from(server: &TestServer, from: &str) -> TcpStream {
    connect_with(server, from, None).await
}

async fn connect_with(server: &TestServer, from: &str, recv_buffer: Option<u32>) -> TcpStream {
    let local: IpAddr = from.parse().expect("a local address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(local, 0))
        .expect("bind a loopback address");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("receive buffer");
    }
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), at most
/// `wait`: `Some((after, bytes read))` if it did.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = wait.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((started.elapsed(), read)),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one request and reads its status line (keep-alive: the
/// connection stays usable).
async fn status_of(stream: &mut TcpStream, request: &str) -> Option<u16> {
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let length: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

const HEALTH: &str = "GET /health/ HTTP/1.1\r\nHost: parkme\r\n\r\n";

fn timeouts(header: &str, body: &str, idle: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PARKME_HEADER_TIMEOUT_SECS", header.to_owned()),
        ("PARKME_BODY_TIMEOUT_SECS", body.to_owned()),
        ("PARKME_IDLE_TIMEOUT_SECS", idle.to_owned()),
    ]
}

async fn server(env: &[(&'static str, String)]) -> TestServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestServer::start(&env).await
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = server(&timeouts("1", "30", "60")).await;
    let mut silent = connect_from(&server, "127.0.0.1").await;
    let (after, said) = closed_within(&mut silent, HELD)
        .await
        .expect("a silent connection is closed");
    println!("silent connection closed after {after:?}");
    assert!(
        after >= Duration::from_millis(900),
        "not before the timeout: {after:?}"
    );
    assert!(
        said.is_empty() || said.starts_with(b"HTTP/1.1 408"),
        "nothing, or a 408: {:?}",
        String::from_utf8_lossy(&said)
    );
}

#[tokio::test]
async fn a_trickled_request_head_is_closed_after_the_header_timeout() {
    let server = server(&timeouts("1", "30", "60")).await;
    let mut trickle = connect_from(&server, "127.0.0.1").await;
    trickle
        .write_all(b"GET /health/ HTTP/1.1\r\nHost: parkme\r\n")
        .await
        .expect("first line");
    let started = Instant::now();
    let mut buf = [0u8; 256];
    // One header byte every 100 ms: always sending, never done.
    let closed = loop {
        if started.elapsed() > HELD {
            break None;
        }
        tokio::select! {
            read = trickle.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Some(started.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if trickle.write_all(b"x").await.is_err() {
                    break Some(started.elapsed());
                }
            }
        }
    };
    let after = closed.expect("a trickling client is cut off");
    println!("trickled head closed after {after:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_header_timeout_is_closed() {
    let server = server(&timeouts("1", "30", "60")).await;
    let mut client = connect_from(&server, "127.0.0.1").await;
    assert_eq!(status_of(&mut client, HEALTH).await, Some(200));
    assert_eq!(
        status_of(&mut client, HEALTH).await,
        Some(200),
        "kept alive"
    );
    let (after, said) = closed_within(&mut client, HELD)
        .await
        .expect("an idle kept-alive connection is closed");
    println!("idle keep-alive closed after {after:?}");
    assert!(said.is_empty() || said.starts_with(b"HTTP/1.1 408"));
}

#[tokio::test]
async fn a_websocket_handshake_that_never_completes_is_closed() {
    let server = server(&timeouts("1", "30", "60")).await;
    let mut half = connect_from(&server, "127.0.0.1").await;
    half.write_all(
        b"GET /v1/stream HTTP/1.1\r\nHost: parkme\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
    )
    .await
    .expect("half a handshake");
    let (after, _) = closed_within(&mut half, HELD)
        .await
        .expect("a half-sent handshake is closed");
    println!("half handshake closed after {after:?}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let server = server(&timeouts("30", "1", "60")).await;
    let token = server.user_token("slow-writer");
    let mut stalled = connect_from(&server, "127.0.0.1").await;
    let head = format!(
        "POST /v1/facilities/f1/bookings HTTP/1.1\r\nHost: parkme\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"pla"
    );
    stalled.write_all(head.as_bytes()).await.expect("head");
    let (after, said) = closed_within(&mut stalled, HELD)
        .await
        .expect("a stalled body is cut off");
    let said = String::from_utf8_lossy(&said);
    println!("stalled body answered after {after:?}");
    assert!(said.starts_with("HTTP/1.1 408"), "answered 408: {said:?}");
    assert!(said.contains("request_timeout"), "{said:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_responses_is_dropped_after_the_idle_timeout() {
    let server = server(&timeouts("30", "30", "1")).await;
    let spots: Vec<_> = (0..2000)
        .map(|i| json!({"id": format!("spot-{i:05}")}))
        .collect();
    let layout = json!({"name": "big", "zones": [{"id": "A", "spots": spots}]});
    let put = reqwest::Client::new()
        .put(format!("{}/v1/facilities/big", server.url()))
        .bearer_auth(server.admin_token())
        .json(&layout)
        .send()
        .await
        .expect("PUT");
    assert!(put.status().is_success());

    // 200 pipelined requests for a ~150 KB answer each, and no reading:
    // far more than the socket buffers hold, so the server's writes stall.
    let mut reader = connect_with(&server, "127.0.0.1", Some(4096)).await;
    let request = "GET /v1/facilities/big/zones/A/spots HTTP/1.1\r\nHost: parkme\r\n\r\n";
    reader
        .write_all(request.repeat(200).as_bytes())
        .await
        .expect("pipelined requests");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, said) = closed_within(&mut reader, Duration::from_secs(20))
        .await
        .expect("the stalled connection was closed");
    let answered = said.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    println!(
        "client that stopped reading got {answered} of 200 answers, {} bytes, before the close",
        said.len()
    );
    assert!(
        answered < 200,
        "the server gave up on it: {answered} answers"
    );
}

#[tokio::test]
async fn connections_past_the_per_ip_cap_are_refused_while_other_clients_are_served() {
    let mut env = timeouts("30", "30", "60");
    env.push(("PARKME_MAX_CONNECTIONS_PER_IP", "3".into()));
    let server = server(&env).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from(&server, "127.0.0.2").await;
        assert_eq!(status_of(&mut c, HEALTH).await, Some(200));
        held.push(c);
    }
    let mut fourth = connect_from(&server, "127.0.0.2").await;
    let (_, said) = closed_within(&mut fourth, HELD)
        .await
        .expect("the fourth connection is closed at once");
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.starts_with("HTTP/1.1 429"),
        "refused with 429: {said:?}"
    );
    assert!(said.contains("too_many_connections"), "{said:?}");

    // Someone else is served meanwhile.
    let mut other = connect_from(&server, "127.0.0.3").await;
    assert_eq!(status_of(&mut other, HEALTH).await, Some(200));
    let response = reqwest::get(format!("{}/health/", server.url()))
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);

    // A slot given back is a slot free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(&server, "127.0.0.2").await;
        if status_of(&mut again, HEALTH).await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_past_the_overall_cap_are_refused() {
    let mut env = timeouts("30", "30", "60");
    env.push(("PARKME_MAX_CONNECTIONS", "3".into()));
    let server = server(&env).await;
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    // The harness's own health probes may still hold a slot a moment.
    while held.len() < 3 {
        let mut c = connect_from(&server, "127.0.0.1").await;
        if status_of(&mut c, HEALTH).await == Some(200) {
            held.push(c);
        } else {
            assert!(
                Instant::now() < deadline,
                "three connections were never admitted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut fourth = connect_from(&server, "127.0.0.5").await;
    let (_, said) = closed_within(&mut fourth, HELD)
        .await
        .expect("the fourth connection is closed at once");
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.starts_with("HTTP/1.1 503"),
        "refused with 503: {said:?}"
    );
    assert!(said.contains("retry-after"), "{said:?}");
}

#[tokio::test]
async fn a_trusted_proxy_is_held_only_to_the_overall_cap() {
    let mut env = timeouts("30", "30", "60");
    env.push(("PARKME_MAX_CONNECTIONS_PER_IP", "2".into()));
    env.push(("PARKME_TRUSTED_PROXIES", "127.0.0.4".into()));
    let server = server(&env).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = connect_from(&server, "127.0.0.4").await;
        assert_eq!(
            status_of(&mut c, HEALTH).await,
            Some(200),
            "a proxy carries many clients"
        );
        held.push(c);
    }
}

#[tokio::test]
async fn upgraded_websockets_do_not_count_against_the_per_ip_cap() {
    let mut env = timeouts("30", "30", "60");
    env.push(("PARKME_MAX_CONNECTIONS_PER_IP", "2".into()));
    let server = server(&env).await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let stream = connect_from(&server, "127.0.0.6").await;
        let url = format!("{}/v1/stream", server.ws_url());
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("an app socket");
        sockets.push(ws);
    }
    let mut http = connect_from(&server, "127.0.0.6").await;
    assert_eq!(status_of(&mut http, HEALTH).await, Some(200));
}
