//! The HTTP server under the router: accepts TCP connections, refuses the
//! ones past the caps, serves each with hyper's HTTP/1.1 (upgrades
//! included) under the timeouts, and drains at shutdown.
//!
//! - *Header timeout*: a request head (on a new connection, or the next
//!   one on a kept-alive connection) must arrive whole in time, or the
//!   connection is closed: no idle or trickling Slowloris.
//! - *Idle timeout*: a connection still speaking HTTP on which no byte
//!   moves either way for that long is closed (a client that stops
//!   reading its response, a stalled body nobody reads).
//! - *Body timeout*: enforced where bodies are read (`crate::extract`).
//! - *Caps*: every open TCP connection (websockets included) holds a
//!   permit of the overall cap, and every connection still speaking HTTP
//!   one of its address's; past a cap a connection gets a one-line error
//!   and is closed. Trusted proxies (many clients behind one address)
//!   count only against the overall cap.
//!
//! This module must never let one client hold connections without
//! sending, nor hold more than the caps allow.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::peer::TrustedProxies;

/// What the server enforces (from the configuration).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// 0 = no cap.
    pub max_connections: usize,
    /// 0 = no cap.
    pub max_connections_per_ip: usize,
    pub trusted_proxies: TrustedProxies,
    /// At shutdown, how long open connections may take to finish.
    pub grace: Duration,
}

/// Connections per address still speaking HTTP.
#[derive(Debug)]
struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under its address's cap, given back on drop.
#[derive(Debug)]
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    PerIp,
    Overall,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Overall => "overall",
        }
    }

    /// The whole answer, written before the connection is closed.
    fn response(self) -> &'static [u8] {
        match self {
            Refusal::PerIp => concat!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n",
                "retry-after: 1\r\nconnection: close\r\ncontent-length: 92\r\n\r\n",
                r#"{"error":{"code":"too_many_connections","message":"too many connections from this address"}}"#
            )
            .as_bytes(),
            Refusal::Overall => concat!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n",
                "retry-after: 1\r\nconnection: close\r\ncontent-length: 91\r\n\r\n",
                r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit"}}"#
            )
            .as_bytes(),
        }
    }
}

/// The caps a connection must get past.
#[derive(Debug)]
struct Caps {
    overall: Option<Arc<Semaphore>>,
    per_ip: Option<Arc<PerIp>>,
    trusted: TrustedProxies,
}

impl Caps {
    fn new(settings: &ServerSettings) -> Self {
        Caps {
            overall: (settings.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(settings.max_connections))),
            per_ip: (settings.max_connections_per_ip > 0).then(|| {
                Arc::new(PerIp {
                    max: settings.max_connections_per_ip,
                    open: Mutex::new(HashMap::new()),
                })
            }),
            trusted: settings.trusted_proxies.clone(),
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<(Option<OwnedSemaphorePermit>, Option<IpSlot>), Refusal> {
        let slot = match &self.per_ip {
            Some(table) if !self.trusted.trusts(ip) => {
                let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
                let count = open.entry(ip).or_insert(0);
                if *count >= table.max {
                    return Err(Refusal::PerIp);
                }
                *count += 1;
                drop(open);
                Some(IpSlot {
                    table: Arc::clone(table),
                    ip,
                })
            }
            _ => None,
        };
        let permit = match &self.overall {
            Some(semaphore) => Some(
                Arc::clone(semaphore)
                    .try_acquire_owned()
                    .map_err(|_| Refusal::Overall)?,
            ),
            None => None,
        };
        Ok((permit, slot))
    }
}

/// Milliseconds since the first connection, of the last byte moved.
#[derive(Debug)]
struct Activity(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Activity {
    fn new() -> Self {
        let activity = Activity(AtomicU64::new(0));
        activity.touch();
        activity
    }

    fn touch(&self) {
        let ms = epoch().elapsed().as_millis() as u64;
        self.0.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        epoch() + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// A TCP stream that notes when bytes move and holds the connection's
/// overall permit for as long as it lives (through an upgrade too).
#[derive(Debug)]
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Returns once `idle` has passed without a byte moving.
async fn idle_for(activity: &Activity, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let deadline = activity.last() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Accept errors that concern one connection only.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown`, then lets open
/// connections finish for at most the grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let caps = Caps::new(&settings);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to
                // be given back rather than spin.
                tracing::error!(error = %e, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (permit, slot) = match caps.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                crate::metrics::connection_refused(refusal.reason());
                tracing::debug!(peer = %peer.ip(), reason = refusal.reason(), "connection refused");
                // Best effort, never blocking: a fresh socket's send
                // buffer takes it whole.
                let _ = stream.try_write(refusal.response());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            stream,
            activity: Arc::clone(&activity),
            _permit: permit,
        };
        connections.spawn(serve_connection(
            io,
            peer,
            activity,
            slot,
            router.clone(),
            settings.clone(),
            shutdown.child_token(),
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(settings.grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after {:?}; dropping them",
            settings.grace
        );
    }
}

async fn serve_connection(
    io: Tracked,
    peer: SocketAddr,
    activity: Arc<Activity>,
    slot: Option<IpSlot>,
    router: Router,
    settings: ServerSettings,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(settings.header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let idle = idle_for(&activity, settings.idle_timeout);
    tokio::pin!(idle);
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    if e.is_timeout() {
                        crate::metrics::connection_timed_out("header");
                    }
                    tracing::trace!(peer = %peer, error = %e, "connection ended");
                }
                break;
            }
            () = &mut idle => {
                crate::metrics::connection_timed_out("idle");
                tracing::debug!(peer = %peer, "connection idle too long; closing");
                break;
            }
            () = &mut stopping, if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
    // Upgraded or closed: the connection no longer speaks HTTP.
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(overall: usize, per_ip: usize, trusted: &str) -> ServerSettings {
        ServerSettings {
            header_timeout: None,
            idle_timeout: None,
            max_connections: overall,
            max_connections_per_ip: per_ip,
            trusted_proxies: trusted.parse().expect("proxies"),
            grace: Duration::from_secs(1),
        }
    }

    #[test]
    fn caps_count_per_address_and_overall_and_give_back_on_drop() {
        let caps = Caps::new(&settings(3, 2, "10.0.0.1"));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let first = caps.admit(a).expect("first");
        let _second = caps.admit(a).expect("second");
        assert!(matches!(caps.admit(a), Err(Refusal::PerIp)));
        let _third = caps.admit(b).expect("another address");
        assert!(matches!(caps.admit(proxy), Err(Refusal::Overall)));
        drop(first);
        assert!(caps.admit(proxy).is_ok(), "a proxy has no per-address cap");
    }

    #[test]
    fn refusals_are_whole_http_answers() {
        for refusal in [Refusal::PerIp, Refusal::Overall] {
            let text = std::str::from_utf8(refusal.response()).expect("utf-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.parse().ok())
                .expect("content-length");
            assert_eq!(body.len(), length, "{head}");
            let json: serde_json::Value = serde_json::from_str(body).expect("json body");
            assert_eq!(json["error"]["code"], "too_many_connections");
        }
    }
}
