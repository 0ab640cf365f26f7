//! The proof that a request comes from another node of this cluster: the
//! `x-parkme-peer` header, `<node-id> <unix-ms> <hex HMAC-SHA256>` over
//! the node id, the time and the client address it forwards for
//! (`x-parkme-client-ip`), keyed by `PARKME_CLUSTER_SECRET`. A signature
//! older or newer than [`SKEW`] is refused, so a captured header cannot
//! be replayed for long.
//!
//! This module must never log the secret or a signature, and never
//! compare signatures in time that depends on their content.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const PEER_HEADER: &str = "x-parkme-peer";
pub const CLIENT_IP_HEADER: &str = "x-parkme-client-ip";

/// Clock difference tolerated between two nodes.
pub const SKEW: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn mac(secret: &[u8], node: &str, at_ms: u64, client: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"parkme-peer|");
    mac.update(node.as_bytes());
    mac.update(b"|");
    mac.update(at_ms.to_string().as_bytes());
    mac.update(b"|");
    mac.update(client.as_bytes());
    mac
}

/// Adds this node's signature for a request forwarded for `client`.
pub fn sign(headers: &mut HeaderMap, secret: &[u8], node: &str, client: IpAddr) {
    let at = now_ms();
    let client = client.to_string();
    let tag = hex::encode(mac(secret, node, at, &client).finalize().into_bytes());
    if let (Ok(peer), Ok(ip)) = (
        HeaderValue::from_str(&format!("{node} {at} {tag}")),
        HeaderValue::from_str(&client),
    ) {
        headers.insert(PEER_HEADER, peer);
        headers.insert(CLIENT_IP_HEADER, ip);
    }
}

/// What a request's peer header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No peer header: a client's own request.
    Client,
    /// Signed by a node of this cluster, for this client.
    Node { node: String, client: IpAddr },
    /// A peer header that does not verify.
    Forged,
}

/// Checks the peer header of a request.
pub fn verify(headers: &HeaderMap, secret: &[u8]) -> Peer {
    let Some(value) = headers.get(PEER_HEADER) else {
        return Peer::Client;
    };
    let verified = (|| {
        let value = value.to_str().ok()?;
        let mut parts = value.split(' ');
        let (node, at, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let at: u64 = at.parse().ok()?;
        let skew = u64::try_from(SKEW.as_millis()).unwrap_or(u64::MAX);
        if now_ms().abs_diff(at) > skew {
            return None;
        }
        let client = headers.get(CLIENT_IP_HEADER)?.to_str().ok()?;
        let ip: IpAddr = client.parse().ok()?;
        let tag = hex::decode(tag).ok()?;
        mac(secret, node, at, client).verify_slice(&tag).ok()?;
        Some(Peer::Node {
            node: node.to_owned(),
            client: ip,
        })
    })();
    verified.unwrap_or(Peer::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cluster secret of some length";

    #[test]
    fn a_signed_request_verifies_with_its_client_address() {
        let mut headers = HeaderMap::new();
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        sign(&mut headers, SECRET, "n1#7", ip);
        assert_eq!(
            verify(&headers, SECRET),
            Peer::Node {
                node: "n1#7".into(),
                client: ip
            }
        );
    }

    #[test]
    fn another_secret_or_a_swapped_client_address_is_forged() {
        let mut headers = HeaderMap::new();
        sign(
            &mut headers,
            SECRET,
            "n1#7",
            "203.0.113.7".parse().expect("ip"),
        );
        assert_eq!(verify(&headers, b"another secret"), Peer::Forged);
        headers.insert(CLIENT_IP_HEADER, HeaderValue::from_static("198.51.100.1"));
        assert_eq!(verify(&headers, SECRET), Peer::Forged);
    }

    #[test]
    fn an_old_signature_is_refused() {
        let at = now_ms() - 60_000;
        let tag = hex::encode(mac(SECRET, "n1#7", at, "::1").finalize().into_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(
            PEER_HEADER,
            HeaderValue::from_str(&format!("n1#7 {at} {tag}")).expect("header"),
        );
        headers.insert(CLIENT_IP_HEADER, HeaderValue::from_static("::1"));
        assert_eq!(verify(&headers, SECRET), Peer::Forged);
    }

    #[test]
    fn no_header_is_a_client() {
        assert_eq!(verify(&HeaderMap::new(), SECRET), Peer::Client);
    }
}
