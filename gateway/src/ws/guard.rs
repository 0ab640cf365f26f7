//! What keeps the anonymous app socket from being an amplifier: a cap on
//! app sockets open at once per IP (the handshake is refused with 429),
//! op rate limits per socket and per IP (an op past them is answered
//! `rate_limited`; a socket that keeps sending while refused is closed
//! with 1008), and the per-socket bound on merged state handed to each
//! [`super::outbox::Outbox`].
//!
//! Rates are GCRA limiters (`governor`) with bursts of [`BURST_SECONDS`]
//! worth of ops; 0 disables a limit. Counts are per process.
//!
//! This module must never hold state for an IP without an open socket or
//! a recent op (idle limiter keys are dropped by the upkeep).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;

/// A limit's burst: this many seconds of its rate at once.
pub const BURST_SECONDS: u32 = 5;

/// The limits of the app socket, shared by every connection of a node.
#[derive(Debug)]
pub struct StreamGuard {
    sockets_per_ip: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
    socket_quota: Option<Quota>,
    /// Refusals in a row that make a flood: the burst of the per-socket
    /// limit, else of the per-IP one.
    flood_after: u32,
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    merge_max: usize,
}

fn quota(per_sec: u32) -> Option<(Quota, u32)> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(per_sec.saturating_mul(BURST_SECONDS))?;
    Some((Quota::per_second(rate).allow_burst(burst), burst.get()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamGuard {
    pub fn new(
        ops_per_sec: u32,
        ops_per_ip_per_sec: u32,
        sockets_per_ip: u32,
        merge_max: usize,
    ) -> Self {
        let socket = quota(ops_per_sec);
        let per_ip = quota(ops_per_ip_per_sec);
        let flood_after = socket.or(per_ip).map_or(1, |(_, burst)| burst);
        Self {
            sockets_per_ip,
            open: Arc::default(),
            socket_quota: socket.map(|(q, _)| q),
            flood_after,
            per_ip: per_ip.map(|(q, _)| Arc::new(RateLimiter::keyed(q))),
            merge_max,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.ws_ops_per_sec,
            config.ws_ops_per_ip_per_sec,
            config.ws_sockets_per_ip,
            config.ws_merge_max,
        )
    }

    /// A slot for one more socket from `ip`, or `None` at the cap. The
    /// slot is given back when the returned value is dropped.
    pub fn admit(&self, ip: IpAddr) -> Option<SocketSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_insert(0);
        if self.sockets_per_ip != 0 && *count >= self.sockets_per_ip {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            ip,
            open: Arc::clone(&self.open),
        })
    }

    /// The per-socket side of the limits, for one new connection.
    pub fn ops(&self, ip: IpAddr) -> OpLimiter {
        OpLimiter {
            ip,
            socket: self.socket_quota.map(RateLimiter::direct),
            per_ip: self.per_ip.clone(),
            flood_after: self.flood_after,
            refused_in_a_row: 0,
        }
    }

    /// Entries a connection may hold merged for a slow reader.
    pub fn merge_max(&self) -> usize {
        self.merge_max
    }

    /// App sockets open from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        lock(&self.open).get(&ip).copied().unwrap_or(0)
    }

    /// Drops limiter state of IPs that are back to a full burst.
    pub fn shrink(&self) {
        if let Some(per_ip) = &self.per_ip {
            per_ip.retain_recent();
            per_ip.shrink_to_fit();
        }
    }
}

/// One open app socket counted against its IP's cap.
#[derive(Debug)]
pub struct SocketSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What the limits say about one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused: answer `rate_limited` (`per_ip` says which limit).
    Limited {
        per_ip: bool,
    },
    /// Refused once too often in a row: close with 1008.
    Flood,
}

/// The op limits of one connection.
#[derive(Debug)]
pub struct OpLimiter {
    ip: IpAddr,
    socket: Option<DefaultDirectRateLimiter>,
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// Refusals in a row (no op allowed between them) that make a flood:
    /// a full burst sent after being told to slow down.
    flood_after: u32,
    refused_in_a_row: u32,
}

impl OpLimiter {
    /// Counts one op.
    pub fn check(&mut self) -> Verdict {
        let socket_ok = self.socket.as_ref().is_none_or(|l| l.check().is_ok());
        let ip_ok = socket_ok
            && self
                .per_ip
                .as_ref()
                .is_none_or(|l| l.check_key(&self.ip).is_ok());
        if socket_ok && ip_ok {
            self.refused_in_a_row = 0;
            return Verdict::Allowed;
        }
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > self.flood_after {
            Verdict::Flood
        } else {
            Verdict::Limited { per_ip: socket_ok }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn the_socket_cap_counts_per_ip_and_gives_slots_back() {
        let guard = StreamGuard::new(0, 0, 2, 1024);
        let a = guard.admit(ip(1)).expect("first");
        let _b = guard.admit(ip(1)).expect("second");
        assert!(guard.admit(ip(1)).is_none(), "third from one IP");
        assert!(guard.admit(ip(2)).is_some(), "another IP");
        drop(a);
        assert_eq!(guard.open_from(ip(1)), 1);
        assert!(guard.admit(ip(1)).is_some(), "a slot came back");
    }

    #[test]
    fn zero_turns_every_limit_off() {
        let guard = StreamGuard::new(0, 0, 0, 1024);
        let slots: Vec<_> = (0..1000).filter_map(|_| guard.admit(ip(1))).collect();
        assert_eq!(slots.len(), 1000);
        let mut ops = guard.ops(ip(1));
        assert!((0..10_000).all(|_| ops.check() == Verdict::Allowed));
    }

    #[test]
    fn a_socket_gets_its_burst_then_is_limited_then_closed_as_a_flood() {
        let guard = StreamGuard::new(2, 0, 0, 1024);
        let mut ops = guard.ops(ip(1));
        let burst = 2 * BURST_SECONDS;
        for _ in 0..burst {
            assert_eq!(ops.check(), Verdict::Allowed);
        }
        for _ in 0..burst {
            assert_eq!(ops.check(), Verdict::Limited { per_ip: false });
        }
        assert_eq!(ops.check(), Verdict::Flood);
    }

    #[test]
    fn sockets_of_one_ip_share_the_ip_budget() {
        let guard = StreamGuard::new(0, 1, 0, 1024);
        let mut first = guard.ops(ip(1));
        for _ in 0..BURST_SECONDS {
            assert_eq!(first.check(), Verdict::Allowed);
        }
        let mut second = guard.ops(ip(1));
        for _ in 0..BURST_SECONDS {
            assert_eq!(second.check(), Verdict::Limited { per_ip: true });
        }
        assert_eq!(second.check(), Verdict::Flood, "a flood of the IP's burst");
        let mut elsewhere = guard.ops(ip(2));
        assert_eq!(elsewhere.check(), Verdict::Allowed);
    }
}
