//! Request headers (`peer::TrustedProxies::client_ip` on
//! `X-Forwarded-For`, `peer::AllowedOrigins::check` on `Origin`/`Host`,
//! `auth::bearer`, `http::bookings::idempotency_key`), and the operator's
//! lists (`TrustedProxies` and `AllowedOrigins` from their env strings):
//! never panics; a request from an untrusted peer is that peer whatever
//! it writes; through a trusted proxy the client is the peer or an
//! address some `X-Forwarded-For` entry names, and never one to the left
//! of an untrusted hop.
//!
//! Input: parts (`parkme_fuzz::parts`): header lines (`name: value`,
//! newline-separated), then a trusted-proxies list and an origins list
//! (used when they parse).
#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use parkme_fuzz::{assert_visible_key, parts};
use parkme_gateway::auth::bearer;
use parkme_gateway::http::bookings::idempotency_key;
use parkme_gateway::peer::{AllowedOrigins, TrustedProxies};

fn headers(lines: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// Every address the `X-Forwarded-For` lines name, left to right.
fn forwarded(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| {
            let hop = hop.trim();
            hop.parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        })
        .collect()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fuzz_target!(|data: &[u8]| {
    let parts = parts(data);
    let Some(lines) = parts.first() else {
        return;
    };
    let headers = headers(lines);
    let text = |i: usize| parts.get(i).and_then(|p| std::str::from_utf8(p).ok());
    let proxies = text(1)
        .and_then(|list| list.parse::<TrustedProxies>().ok())
        .unwrap_or_else(|| "10.0.0.0/8, 192.0.2.7, fd00::/8".parse().expect("proxies"));
    let origins = text(2)
        .and_then(|list| list.parse::<AllowedOrigins>().ok())
        .unwrap_or_else(|| "https://app.example.com".parse().expect("origins"));

    let named: Vec<IpAddr> = forwarded(&headers).into_iter().map(canonical).collect();
    let peers: [IpAddr; 4] = [
        [10, 1, 2, 3].into(),
        [198, 51, 100, 1].into(),
        "::ffff:10.9.9.9".parse().expect("ip"),
        "fd00::1".parse().expect("ip"),
    ];
    for peer in peers {
        let client = proxies.client_ip(peer, &headers);
        if !proxies.trusts(peer) {
            assert_eq!(
                client,
                canonical(peer),
                "an untrusted peer's header was believed"
            );
            continue;
        }
        assert!(
            client == canonical(peer) || named.contains(&client),
            "client {client} is neither the peer nor a forwarded address"
        );
        // A client taken from the header is never left of the rightmost
        // untrusted hop (that hop was added by a trusted proxy, what is
        // left of it by the client itself). (Found by this target: when
        // the walk stops at an unreadable entry the client is the peer
        // itself, which may also be named further left.)
        if client != canonical(peer)
            && let Some(untrusted) = named.iter().rposition(|ip| !proxies.trusts(*ip))
        {
            let at = named.iter().rposition(|ip| *ip == client);
            assert!(
                at.is_none_or(|at| at >= untrusted),
                "client {client} was taken from left of untrusted hop {}",
                named[untrusted]
            );
        }
    }
    let _ = origins.check(&headers);
    if let Ok(Some(token)) = bearer(&headers) {
        assert!(!token.is_empty());
        assert_eq!(token.trim(), token);
    }
    if let Ok(Some(key)) = idempotency_key(&headers) {
        assert_visible_key(&key);
    }
});
