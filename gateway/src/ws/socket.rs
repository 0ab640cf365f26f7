//! What both sockets share: upgrade limits, the writer half, close codes,
//! liveness and the connection gauge.
//!
//! A connection is one task. Its writer is a future owned by that task
//! that drains the connection's outbox (through `next`) into the socket;
//! the rest of the task fills the outbox and wakes the writer. A client
//! that does not read blocks only its writer: the outbox stays bounded
//! because what it holds is bounded (acks are cumulative, deltas are
//! conflated), never because messages pile up.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::Notify;

/// Normal closure codes of RFC 6455 used here.
pub mod close {
    /// The server is going away (SIGTERM).
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation (rate limit).
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Invalid payload data (not UTF-8 in a text frame).
    pub const INVALID_DATA: u16 = 1007;
}

pub use parkme_protocol::codec::MAX_FRAME;
/// A ping goes out after this long without hearing from the client.
pub const PING_AFTER: Duration = Duration::from_secs(20);
/// A client silent this long (no frame, no pong) is dropped.
pub const DEAD_AFTER: Duration = Duration::from_secs(50);
/// How long the writer may take to flush a close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Buffer sizes of one kind of socket.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    pub read: usize,
    pub write: usize,
}

/// Applies the frame limits and buffer sizes to an upgrade.
pub fn configure(ws: WebSocketUpgrade, buffers: Buffers) -> WebSocketUpgrade {
    ws.read_buffer_size(buffers.read)
        .write_buffer_size(buffers.write)
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_FRAME)
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Next {
    /// Send this frame; `published` starts its delivery latency.
    Send(Message, Option<Instant>),
    /// Send a close frame and stop.
    Close(u16, &'static str),
    /// Nothing to send: flush and wait to be woken.
    Idle,
}

/// Counts frames handed to the socket and samples delivery latency: one
/// frame in [`LATENCY_SAMPLE`] per connection, so histogram memory does
/// not grow with fan-out between two upkeeps. Handles are resolved once
/// per connection, not per frame.
#[derive(Debug)]
pub struct Sent {
    frames: u64,
    out: metrics::Counter,
    latency: metrics::Histogram,
}

/// One delivery in this many is timed.
pub const LATENCY_SAMPLE: u64 = 8;

impl Sent {
    fn new(kind: &'static str) -> Self {
        let (out, latency) = crate::metrics::ws_writer(kind);
        Self {
            frames: 0,
            out,
            latency,
        }
    }

    fn record(&mut self, published: Option<Instant>) {
        self.out.increment(1);
        if let Some(published) = published {
            if self.frames.is_multiple_of(LATENCY_SAMPLE) {
                self.latency.record(published.elapsed().as_secs_f64());
            }
            self.frames += 1;
        }
    }
}

/// Drains `next` into the socket until it says close or the socket fails.
/// Frames are fed without flushing while more are ready, then flushed once.
pub async fn write_loop(
    sink: &mut SplitSink<WebSocket, Message>,
    notify: &Notify,
    kind: &'static str,
    mut next: impl FnMut() -> Next,
) -> Result<(), axum::Error> {
    let mut sent = Sent::new(kind);
    loop {
        match next() {
            Next::Send(message, published) => {
                sink.feed(message).await?;
                sent.record(published);
            }
            Next::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                return sink.send(Message::Close(Some(frame))).await;
            }
            Next::Idle => {
                sink.flush().await?;
                notify.notified().await;
            }
        }
    }
}

/// The close code a read error deserves, if the peer can still be told:
/// a frame over the limit is 1009, a protocol violation 1002, invalid
/// UTF-8 in a text frame 1007; I/O errors and closed sockets get none.
pub fn close_code_for(error: &axum::Error) -> Option<u16> {
    use std::error::Error as _;
    let inner = error.source()?.downcast_ref::<tungstenite::Error>()?;
    match inner {
        tungstenite::Error::Capacity(_) => Some(close::TOO_BIG),
        tungstenite::Error::Protocol(_) => Some(close::PROTOCOL),
        tungstenite::Error::Utf8(_) => Some(close::INVALID_DATA),
        _ => None,
    }
}

/// `parkme_ws_connections{kind}` while a connection lives.
#[derive(Debug)]
pub struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub fn open(kind: &'static str) -> Self {
        crate::metrics::ws_connections(kind, 1.0);
        ConnectionGauge(kind)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        crate::metrics::ws_connections(self.0, -1.0);
    }
}

/// When the client was last heard from, and whether it must be pinged or
/// dropped.
#[derive(Debug)]
pub struct Liveness {
    heard: Instant,
}

/// What a liveness tick decides.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulse {
    Fine,
    Ping,
    Dead,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            heard: Instant::now(),
        }
    }
}

impl Liveness {
    pub fn heard(&mut self) {
        self.heard = Instant::now();
    }

    pub fn tick(&self) -> Pulse {
        let silent = self.heard.elapsed();
        if silent >= DEAD_AFTER {
            Pulse::Dead
        } else if silent >= PING_AFTER {
            Pulse::Ping
        } else {
            Pulse::Fine
        }
    }
}

/// A ticker for liveness checks (its first tick is one period away).
pub fn liveness_ticker() -> tokio::time::Interval {
    let period = PING_AFTER / 2;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_frame_maps_to_1009() {
        let error = axum::Error::new(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: MAX_FRAME + 1,
                max_size: MAX_FRAME,
            },
        ));
        assert_eq!(close_code_for(&error), Some(close::TOO_BIG));
        let io = axum::Error::new(std::io::Error::other("reset"));
        assert_eq!(close_code_for(&io), None);
    }
}
