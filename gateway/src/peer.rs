//! Who is at the other end of a request: the client's address (through
//! the proxies the operator trusts) and, for browser websockets, whether
//! the page's origin may open them.
//!
//! `X-Forwarded-For` is read only when the TCP peer is a trusted proxy,
//! and then from the right: each trusted hop is skipped, and the first
//! address a trusted hop did not add itself is the client. Anything to
//! its left was written by the client and is ignored. This module must
//! never take a client-supplied header as the address of an untrusted
//! peer.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

/// The client address of a request, as the rate limits and caps count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The proxies whose `X-Forwarded-For` is believed (`PARKME_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated addresses or CIDRs; empty = none.
    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

/// An address as a proxy writes it in `X-Forwarded-For`: bare, or with a
/// port (`1.2.3.4:5678`, `[::1]:5678`).
fn forwarded_address(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(ip);
    }
    item.parse::<SocketAddr>().ok().map(|a| a.ip())
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that came from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // Every X-Forwarded-For line, in order, as one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An unreadable entry cannot be the client's address: the
            // last hop that was read stands.
            let Some(ip) = forwarded_address(hop).map(canonical) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack
/// listeners) count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The origins allowed to open browser websockets besides the server's
/// own (`PARKME_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    listed: Vec<String>,
}

impl FromStr for AllowedOrigins {
    type Err = String;

    /// Comma-separated `scheme://host[:port]` origins, or `*`; empty =
    /// the server's own origin only.
    fn from_str(list: &str) -> Result<Self, String> {
        let mut origins = AllowedOrigins::default();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                origins.any = true;
                continue;
            }
            let origin = normalize_origin(item)
                .ok_or_else(|| format!("{item:?} is not an origin like https://app.example.com"))?;
            origins.listed.push(origin);
        }
        Ok(origins)
    }
}

/// `scheme://host[:port]` lower-cased, without a default port or a
/// trailing slash; `None` if it is not of that form.
fn normalize_origin(raw: &str) -> Option<String> {
    let raw = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = raw.split_once("://")?;
    if !matches!(scheme, "http" | "https") || authority.is_empty() || authority.contains('/') {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        strip_default_port(scheme, authority)
    ))
}

fn strip_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// What an Origin check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header: not a browser.
    NotABrowser,
    Allowed,
    Refused,
}

impl AllowedOrigins {
    /// Whether the browser page that sent `headers` may open a websocket
    /// here: its origin is the server's own (the `Host` it asked for) or
    /// listed.
    pub fn check(&self, headers: &HeaderMap) -> OriginCheck {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return OriginCheck::NotABrowser;
        };
        if self.any {
            return OriginCheck::Allowed;
        }
        let Some(origin) = origin.to_str().ok().and_then(normalize_origin) else {
            // `null` (sandboxed pages, files) or garbage: no origin to match.
            return OriginCheck::Refused;
        };
        if self.listed.contains(&origin) {
            return OriginCheck::Allowed;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase());
        let same_origin = origin.split_once("://").is_some_and(|(scheme, authority)| {
            host.as_deref()
                .is_some_and(|host| strip_default_port(scheme, host) == authority)
        });
        if same_origin {
            OriginCheck::Allowed
        } else {
            OriginCheck::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().expect("cidr");
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            proxies.client_ip(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.1.1.1"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn forwarded_for_names_the_first_untrusted_hop_from_the_right() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.0.2.7".parse().expect("cidrs");
        // The client wrote a fake first entry; the ingress appended the
        // real address, then an inner trusted proxy its own.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-for", "192.0.2.7"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.2.3.4"), &h), ip("203.0.113.9"));
        let with_port = headers(&[("x-forwarded-for", "203.0.113.9:4711")]);
        assert_eq!(
            proxies.client_ip(ip("10.2.3.4"), &with_port),
            ip("203.0.113.9")
        );
        // Missing or unreadable: the proxy itself is the client.
        assert_eq!(
            proxies.client_ip(ip("10.2.3.4"), &HeaderMap::new()),
            ip("10.2.3.4")
        );
        let garbage = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(proxies.client_ip(ip("10.2.3.4"), &garbage), ip("10.2.3.4"));
    }

    #[test]
    fn a_proxy_list_refuses_what_is_not_an_address() {
        assert!("10.0.0.0/8,::1".parse::<TrustedProxies>().is_ok());
        assert!("".parse::<TrustedProxies>().is_ok_and(|p| p.is_empty()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("ingress".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn the_servers_own_origin_and_listed_ones_are_allowed_others_refused() {
        let default = AllowedOrigins::default();
        let listed: AllowedOrigins = "https://app.example.com/, http://localhost:3000"
            .parse()
            .expect("origins");
        let same = headers(&[
            ("host", "parkme.example.com"),
            ("origin", "https://parkme.example.com"),
        ]);
        assert_eq!(default.check(&same), OriginCheck::Allowed);
        let same_port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(default.check(&same_port), OriginCheck::Allowed);
        let evil = headers(&[
            ("host", "parkme.example.com"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(default.check(&evil), OriginCheck::Refused);
        assert_eq!(listed.check(&evil), OriginCheck::Refused);
        let app = headers(&[
            ("host", "parkme.example.com"),
            ("origin", "https://APP.example.com"),
        ]);
        assert_eq!(default.check(&app), OriginCheck::Refused);
        assert_eq!(listed.check(&app), OriginCheck::Allowed);
        let null = headers(&[("host", "parkme.example.com"), ("origin", "null")]);
        assert_eq!(listed.check(&null), OriginCheck::Refused);
        let device = headers(&[("host", "parkme.example.com")]);
        assert_eq!(default.check(&device), OriginCheck::NotABrowser);
        let any: AllowedOrigins = "*".parse().expect("any");
        assert_eq!(any.check(&evil), OriginCheck::Allowed);
        assert!("ftp://x".parse::<AllowedOrigins>().is_err());
        assert!("app.example.com".parse::<AllowedOrigins>().is_err());
    }
}
