//! Where the CQL backend connects and how: the `scylla://` URI of
//! `PARKME_STORAGE` (contract §1) and the [`CqlOptions`] it can carry.
//!
//! ```text
//! scylla://host1:9042,host2:9042/keyspace
//! scylla://db1,db2/parkme?replication=eu1:3,us1:3&consistency=local_quorum&serial=local_serial
//! ```
//!
//! The port defaults to 9042; IPv6 hosts go in brackets (`[::1]:9042`).
//! The keyspace is a CQL identifier (letters, digits, `_`, starting with a
//! letter, at most 48), case-insensitive like any unquoted CQL name, so it
//! is kept lowercased. Query parameters, all optional:
//! - `replication`: `N` for `SimpleStrategy` with replication factor N,
//!   or `dc:N,dc:N` for `NetworkTopologyStrategy` (used only when the
//!   keyspace is created);
//! - `consistency`: `one`, `quorum`, `local_quorum` (default), `all`, ...;
//! - `serial`: `serial` (default) or `local_serial`, for the Paxos rounds
//!   that fence commits, claims and snapshots.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use scylla::statement::{Consistency, SerialConsistency};

/// The port of the CQL native protocol.
pub const DEFAULT_PORT: u16 = 9042;

/// How the keyspace is replicated when this backend creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// One ring, `factor` copies: for development and single-DC tests.
    Simple { factor: u32 },
    /// Copies per datacenter, for production clusters.
    NetworkTopology(BTreeMap<String, u32>),
}

impl Replication {
    /// The map literal of `CREATE KEYSPACE ... WITH replication = {...}`.
    /// Datacenter names were checked at parse time, so quoting is safe.
    pub fn cql_map(&self) -> String {
        match self {
            Replication::Simple { factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let mut map = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, factor) in dcs {
                    map.push_str(&format!(", '{dc}': {factor}"));
                }
                map.push('}');
                map
            }
        }
    }
}

/// Tunables of the CQL backend; the defaults suit a development node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlOptions {
    /// Replication of a keyspace this backend creates (an existing
    /// keyspace keeps its own). Default: `SimpleStrategy`, RF 1.
    pub replication: Replication,
    /// Consistency of every read and write. Default: `LOCAL_QUORUM`.
    pub consistency: Consistency,
    /// Consistency of the Paxos rounds that fence commits, claims and
    /// snapshots. Default: `SERIAL`, which fences across
    /// datacenters; `LOCAL_SERIAL` is cheaper when zone ownership never
    /// crosses a datacenter.
    pub serial_consistency: SerialConsistency,
    /// Bound on opening one TCP/CQL connection. Default: 5 s.
    pub connect_timeout: Duration,
    /// Client-side bound on one request, retries included. Default: 10 s.
    pub request_timeout: Duration,
    /// Bound on [`crate::Storage::ping`]. Default: 2 s.
    pub ping_timeout: Duration,
    /// Snapshots kept per zone (the newest ones). Default: 3.
    pub snapshots_kept: usize,
}

impl Default for CqlOptions {
    fn default() -> Self {
        Self {
            replication: Replication::Simple { factor: 1 },
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::Serial,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(2),
            snapshots_kept: 3,
        }
    }
}

/// A parsed `scylla://` URI: contact points, keyspace and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlUri {
    /// Contact points as `host:port`; the driver discovers the rest.
    pub hosts: Vec<String>,
    /// A validated, lowercased CQL identifier.
    pub keyspace: String,
    pub options: CqlOptions,
}

/// Why a `scylla://` URI was refused; permanent, never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid CQL storage URI {uri:?}: {reason} (expected scylla://host:port,host:port/keyspace)"
)]
pub struct CqlUriError {
    uri: String,
    reason: String,
}

impl CqlUri {
    /// Parses `scylla://host[:port][,host[:port]...]/keyspace[?options]`.
    pub fn parse(uri: &str) -> Result<Self, CqlUriError> {
        let fail = |reason: String| CqlUriError {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix("scylla://")
            .ok_or_else(|| fail("the scheme must be scylla://".into()))?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        let (authority, keyspace) = location
            .split_once('/')
            .ok_or_else(|| fail("no /keyspace after the hosts".into()))?;
        let hosts = authority
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let keyspace = parse_keyspace(keyspace).map_err(fail)?;
        let mut options = CqlOptions::default();
        if let Some(query) = query {
            apply_query(&mut options, query).map_err(fail)?;
        }
        Ok(Self {
            hosts,
            keyspace,
            options,
        })
    }
}

impl fmt::Display for CqlUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scylla://{}/{}", self.hosts.join(","), self.keyspace)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → `host:port`.
fn parse_host(spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Err("an empty host in the host list".into());
    }
    if spec.contains('@') {
        return Err(format!("credentials in {spec:?} are not supported"));
    }
    let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in host {spec:?}"))?;
        match after {
            "" => (format!("[{host}]"), None),
            _ => match after.strip_prefix(':') {
                Some(port) => (format!("[{host}]"), Some(port)),
                None => return Err(format!("junk after ']' in host {spec:?}")),
            },
        }
    } else {
        match spec.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (spec.to_owned(), None),
        }
    };
    let host_ok = host.len() > 2 && host.starts_with('[')
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    if !host_ok {
        return Err(format!("invalid host name {host:?}"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("invalid port {port:?} in host {spec:?}")),
        },
    };
    Ok(format!("{host}:{port}"))
}

fn parse_keyspace(name: &str) -> Result<String, String> {
    let valid = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "keyspace {name:?} must be 1-48 letters, digits or '_', starting with a letter"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn apply_query(options: &mut CqlOptions, query: &str) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("option {pair:?} has no value"))?;
        match key {
            "replication" => options.replication = parse_replication(value)?,
            "consistency" => options.consistency = parse_consistency(value)?,
            "serial" => options.serial_consistency = parse_serial(value)?,
            _ => {
                return Err(format!(
                    "unknown option {key:?} (known: replication, consistency, serial)"
                ));
            }
        }
    }
    Ok(())
}

fn parse_factor(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!("replication factor {value:?} must be 1-100")),
    }
}

fn parse_replication(value: &str) -> Result<Replication, String> {
    if !value.contains(':') {
        return Ok(Replication::Simple {
            factor: parse_factor(value)?,
        });
    }
    let mut dcs = BTreeMap::new();
    for entry in value.split(',') {
        let (dc, factor) = entry
            .split_once(':')
            .ok_or_else(|| format!("replication entry {entry:?} is not dc:factor"))?;
        let dc_ok = !dc.is_empty()
            && dc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !dc_ok {
            return Err(format!("invalid datacenter name {dc:?}"));
        }
        if dcs.insert(dc.to_owned(), parse_factor(factor)?).is_some() {
            return Err(format!("datacenter {dc:?} is listed twice"));
        }
    }
    Ok(Replication::NetworkTopology(dcs))
}

fn parse_consistency(value: &str) -> Result<Consistency, String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => return Err(format!("unknown consistency {value:?}")),
    })
}

fn parse_serial(value: &str) -> Result<SerialConsistency, String> {
    match value.to_ascii_lowercase().as_str() {
        "serial" => Ok(SerialConsistency::Serial),
        "local_serial" => Ok(SerialConsistency::LocalSerial),
        _ => Err(format!(
            "unknown serial consistency {value:?} (serial or local_serial)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> CqlUri {
        CqlUri::parse(uri).unwrap_or_else(|e| panic!("{uri} should parse: {e}"))
    }

    fn reason(uri: &str) -> String {
        match CqlUri::parse(uri) {
            Ok(parsed) => panic!("{uri} should be refused, got {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_contract_example_parses_with_defaults() {
        let uri = parse("scylla://host1:9042,host2:9042/keyspace");
        assert_eq!(uri.hosts, vec!["host1:9042", "host2:9042"]);
        assert_eq!(uri.keyspace, "keyspace");
        assert_eq!(uri.options, CqlOptions::default());
        assert_eq!(uri.to_string(), "scylla://host1:9042,host2:9042/keyspace");
    }

    #[test]
    fn ports_default_and_ipv6_hosts_keep_their_brackets() {
        let uri = parse("scylla://db1,127.0.0.1:19042,[::1],[fe80::1]:9043/ParkMe_1");
        assert_eq!(
            uri.hosts,
            vec![
                "db1:9042",
                "127.0.0.1:19042",
                "[::1]:9042",
                "[fe80::1]:9043"
            ]
        );
        assert_eq!(uri.keyspace, "parkme_1", "unquoted CQL names are lowercase");
    }

    #[test]
    fn options_set_replication_and_consistency() {
        let uri = parse(
            "scylla://h/ks?replication=eu1:3,us-east:2&consistency=QUORUM&serial=local_serial",
        );
        let dcs = BTreeMap::from([("eu1".to_owned(), 3), ("us-east".to_owned(), 2)]);
        assert_eq!(
            uri.options.replication,
            Replication::NetworkTopology(dcs.clone())
        );
        assert_eq!(uri.options.consistency, Consistency::Quorum);
        assert_eq!(
            uri.options.serial_consistency,
            SerialConsistency::LocalSerial
        );
        assert_eq!(
            Replication::NetworkTopology(dcs).cql_map(),
            "{'class': 'NetworkTopologyStrategy', 'eu1': 3, 'us-east': 2}"
        );
        let simple = parse("scylla://h/ks?replication=3").options.replication;
        assert_eq!(simple, Replication::Simple { factor: 3 });
        assert_eq!(
            simple.cql_map(),
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
    }

    #[test]
    fn malformed_uris_are_refused_with_a_reason() {
        assert!(reason("cassandra://h/ks").contains("scheme"));
        assert!(reason("scylla://h:9042").contains("keyspace"));
        assert!(reason("scylla:///ks").contains("empty host"));
        assert!(reason("scylla://a,,b/ks").contains("empty host"));
        assert!(reason("scylla://h:0/ks").contains("port"));
        assert!(reason("scylla://h:99999/ks").contains("port"));
        assert!(reason("scylla://h:x/ks").contains("port"));
        assert!(reason("scylla://[::1/ks").contains("unclosed"));
        assert!(reason("scylla://user:pw@h/ks").contains("credentials"));
        assert!(reason("scylla://h o/ks").contains("host name"));
        assert!(reason("scylla://h/").contains("keyspace"));
        assert!(reason("scylla://h/1ks").contains("keyspace"));
        assert!(reason("scylla://h/ks-1").contains("keyspace"));
        assert!(reason("scylla://h/ks;DROP").contains("keyspace"));
        assert!(reason(&format!("scylla://h/{}", "k".repeat(49))).contains("keyspace"));
        assert!(reason("scylla://h/ks?replication=0").contains("factor"));
        assert!(reason("scylla://h/ks?replication=dc'x:3").contains("datacenter"));
        assert!(reason("scylla://h/ks?replication=a:1,a:2").contains("twice"));
        assert!(reason("scylla://h/ks?consistency=serial").contains("consistency"));
        assert!(reason("scylla://h/ks?serial=one").contains("serial"));
        assert!(reason("scylla://h/ks?ttl=3").contains("unknown option"));
        assert!(reason("scylla://h/ks?replication").contains("no value"));
    }
}
