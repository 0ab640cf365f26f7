//! Where the CQL backend connects and how: the `scylla://` URI of
//! `PARKME_STORAGE` (contract §1) and the [`CqlOptions`] it can carry.
//!
//! ```text
//! scylla://host1:9042,host2:9042/keyspace
//! scylla://db1,db2/parkme?replication=eu1:3,us1:3&consistency=local_quorum&serial=local_serial
//! scylla://parkme:s3cret%2Fpw@db1:9142,db2:9142/parkme?tls=true&ca=/etc/parkme/cql-ca.pem
//! ```
//!
//! The port defaults to 9042; IPv6 hosts go in brackets (`[::1]:9042`).
//! `user:password@` before the hosts logs in to a `PasswordAuthenticator`
//! (both percent-decoded: `/`, `?`, `@`, `%` and `:` in the user name must
//! be escaped, `/`, `?`, `@` and `%` in the password). The password never
//! appears in this URI's `Display`, in a [`CqlUriError`], or in `Debug`.
//! The keyspace is a CQL identifier (letters, digits, `_`, starting with a
//! letter, at most 48), case-insensitive like any unquoted CQL name, so it
//! is kept lowercased. Query parameters, all optional:
//! - `replication`: `N` for `SimpleStrategy` with replication factor N,
//!   or `dc:N,dc:N` for `NetworkTopologyStrategy` (used only when the
//!   keyspace is created);
//! - `consistency`: `one`, `quorum`, `local_quorum` (default), `all`, ...;
//! - `serial`: `serial` (default) or `local_serial`, for the Paxos rounds
//!   that fence commits, claims and snapshots;
//! - `tls`: `true` to encrypt every connection, the server's certificate
//!   verified against the system's roots or `ca`; `false` (default);
//! - `ca`: path of a PEM file of the CA(s) to trust instead (needs
//!   `tls=true`; percent-decoded);
//! - `tls_server_name`: the name every node's certificate must carry
//!   (needs `tls=true`; default: each node's IP address).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use scylla::statement::{Consistency, SerialConsistency};

use super::secure::{CqlCredentials, CqlSecurity, CqlTls, Password, redact_uri};

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

/// A parsed `scylla://` URI: contact points, keyspace, options, login and
/// TLS. `Debug` shows the password as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlUri {
    /// Contact points as `host:port`; the driver discovers the rest.
    pub hosts: Vec<String>,
    /// A validated, lowercased CQL identifier.
    pub keyspace: String,
    pub options: CqlOptions,
    /// Login and TLS (callers may override what the URI says).
    pub security: CqlSecurity,
}

/// Why a `scylla://` URI was refused; permanent, never worth a retry. It
/// shows the URI with everything before its last `@` hidden, and its reason
/// never quotes the user name or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid CQL storage URI {uri:?}: {reason} (expected scylla://host:port,host:port/keyspace)"
)]
pub struct CqlUriError {
    uri: String,
    reason: String,
}

impl CqlUri {
    /// Parses
    /// `scylla://[user:password@]host[:port][,host[:port]...]/keyspace[?options]`.
    pub fn parse(uri: &str) -> Result<Self, CqlUriError> {
        let fail = |reason: String| CqlUriError {
            uri: redact_uri(uri),
            reason,
        };
        let rest = uri
            .strip_prefix("scylla://")
            .ok_or_else(|| fail("the scheme must be scylla://".into()))?;
        // The authority ends at the first '/' or '?'; credentials are the
        // part of it before its last '@'. An '@' further on means a user
        // name or password with an unescaped '/' or '?': refused without
        // quoting anything, since part of a password would be quoted.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains('@') {
            return Err(fail(
                "an '@' after the host list: percent-encode '/', '?' and '@' \
                 in the user name and password"
                    .into(),
            ));
        }
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let credentials = userinfo.map(parse_userinfo).transpose().map_err(fail)?;
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let keyspace = path
            .strip_prefix('/')
            .ok_or_else(|| fail("no /keyspace after the hosts".into()))?;
        let hosts = authority
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let keyspace = parse_keyspace(keyspace).map_err(fail)?;
        let mut options = CqlOptions::default();
        let mut tls = TlsQuery::default();
        if let Some(query) = query {
            apply_query(&mut options, &mut tls, query).map_err(fail)?;
        }
        Ok(Self {
            hosts,
            keyspace,
            options,
            security: CqlSecurity {
                credentials,
                tls: tls.into_tls().map_err(fail)?,
            },
        })
    }
}

/// `scylla://hosts/keyspace`, plus `?tls=true` with TLS: no credentials
/// (the user name is logged apart, the password never).
impl fmt::Display for CqlUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scylla://{}/{}", self.hosts.join(","), self.keyspace)?;
        if self.security.tls.is_some() {
            f.write_str("?tls=true")?;
        }
        Ok(())
    }
}

/// `user:password` (percent-encoded) → credentials. Errors never quote it.
fn parse_userinfo(userinfo: &str) -> Result<CqlCredentials, String> {
    let (user, password) = userinfo.split_once(':').ok_or_else(|| {
        "credentials before '@' must be user:password (percent-encoded)".to_owned()
    })?;
    let username = percent_decode(user)
        .ok_or_else(|| "the user name before '@' has a bad %-escape or is not UTF-8".to_owned())?;
    let password = percent_decode(password)
        .ok_or_else(|| "the password before '@' has a bad %-escape or is not UTF-8".to_owned())?;
    if username.is_empty() {
        return Err("the user name before '@' is empty".into());
    }
    Ok(CqlCredentials {
        username,
        password: Password::new(password),
    })
}

/// `%XX` escapes decoded; `None` on a malformed escape or non-UTF-8 bytes.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the query said about TLS, checked once it is all read.
#[derive(Default)]
struct TlsQuery {
    enabled: Option<bool>,
    ca_file: Option<String>,
    server_name: Option<String>,
}

impl TlsQuery {
    fn into_tls(self) -> Result<Option<CqlTls>, String> {
        if self.enabled != Some(true) {
            if self.ca_file.is_some() || self.server_name.is_some() {
                return Err("ca and tls_server_name need tls=true".into());
            }
            return Ok(None);
        }
        Ok(Some(CqlTls {
            ca_file: self.ca_file.map(Into::into),
            server_name: self.server_name,
        }))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → `host:port`.
fn parse_host(spec: &str) -> Result<String, String> {
    if spec.is_empty() {
        return Err("an empty host in the host list".into());
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

fn apply_query(options: &mut CqlOptions, tls: &mut TlsQuery, query: &str) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("option {pair:?} has no value"))?;
        match key {
            "replication" => options.replication = parse_replication(value)?,
            "consistency" => options.consistency = parse_consistency(value)?,
            "serial" => options.serial_consistency = parse_serial(value)?,
            "tls" => tls.enabled = Some(parse_bool(value).ok_or("tls must be true or false")?),
            "ca" => {
                let path = percent_decode(value).filter(|p| !p.is_empty());
                tls.ca_file = Some(path.ok_or("ca must be a (percent-encoded) file path")?);
            }
            "tls_server_name" => {
                let name = percent_decode(value).filter(|n| !n.is_empty());
                tls.server_name = Some(name.ok_or("tls_server_name must be a host name")?);
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (known: replication, consistency, serial, tls, \
                     ca, tls_server_name)"
                ));
            }
        }
    }
    Ok(())
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
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
        assert!(reason("scylla://user@h/ks").contains("user:password"));
        assert!(reason("scylla://:pw@h/ks").contains("user name"));
        assert!(reason("scylla://h/ks?tls=maybe").contains("tls"));
        assert!(reason("scylla://h/ks?ca=/x.pem").contains("tls=true"));
        assert!(reason("scylla://h/ks?tls=false&tls_server_name=x").contains("tls=true"));
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

    #[test]
    fn credentials_are_percent_decoded_and_tls_options_parse() {
        let uri = parse(
            "scylla://app%40corp:s3cret%2Fp%40ss:w0rd%25@h1:9142,h2/ks\
             ?tls=true&ca=/etc/parkme/ca%20file.pem&tls_server_name=cql.example",
        );
        let credentials = uri.security.credentials.clone().expect("credentials");
        assert_eq!(credentials.username, "app@corp");
        assert_eq!(credentials.password.expose(), "s3cret/p@ss:w0rd%");
        assert_eq!(uri.hosts, vec!["h1:9142", "h2:9042"]);
        assert_eq!(
            uri.security.tls,
            Some(CqlTls {
                ca_file: Some("/etc/parkme/ca file.pem".into()),
                server_name: Some("cql.example".into()),
            })
        );
        assert_eq!(uri.to_string(), "scylla://h1:9142,h2:9042/ks?tls=true");
        let plain = parse("scylla://h/ks?tls=false");
        assert_eq!(plain.security, CqlSecurity::default());
        let raw = parse("scylla://u:p@ss@h/ks");
        assert_eq!(
            raw.security
                .credentials
                .map(|c| c.password.expose().to_owned()),
            Some("p@ss".into()),
            "an unescaped '@' in the password: the last '@' ends it"
        );
    }

    #[test]
    fn no_uri_error_quotes_the_password() {
        for bad in [
            "scylla://u:ZQX/WVY@h/ks",
            "scylla://u:ZQX?WVY@h/ks",
            "scylla://u:ZQX%zzWVY@h/ks",
            "scylla://u:ZQXWVY@h o/ks",
            "scylla://u:ZQXWVY@h/1ks",
            "scylla://u:ZQXWVY@h/ks?tls=x",
            "scylla://u:ZQXWVY@h/ks?nope=1",
            "scylla://ZQXWVY@h/ks",
            "scylla://:ZQXWVY@h/ks",
        ] {
            let e = reason(bad);
            assert!(!e.contains("ZQX") && !e.contains("WVY"), "{bad}: {e}");
            let debug = format!("{:?}", CqlUri::parse(bad));
            assert!(
                !debug.contains("ZQX") && !debug.contains("WVY"),
                "{bad}: {debug}"
            );
        }
        let ok = parse("scylla://u:hunter2@h/ks");
        assert!(!format!("{ok:?} {ok}").contains("hunter2"));
    }
}
