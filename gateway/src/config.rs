//! The one configuration struct of the `parkme serve` process, loaded from
//! flags and their `PARKME_*` environment twins (clap).
//!
//! Secrets (admin token, JWT secret, sensor key secret, the Redis URL
//! that may carry a password, the CQL password, in `PARKME_CQL_PASSWORD`
//! or in the storage URI) are never printed by `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use parkme_storage::cql::{CqlCredentials, CqlUri, Password, redact_uri};

use crate::peer::{AllowedOrigins, TrustedProxies};

/// Secrets shorter than this are warned about at start.
pub const SHORT_SECRET: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Args)]
pub struct Config {
    /// Address for HTTP and websockets.
    #[arg(long, env = "PARKME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// `embedded` (on-disk, under the data dir), `memory` (tests only) or
    /// `scylla://[user:password@]host1:9042,host2:9042/keyspace[?tls=true&ca=PATH]`.
    #[arg(
        long,
        env = "PARKME_STORAGE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub storage: String,

    #[command(flatten)]
    pub cql: CqlSettings,

    /// Directory of the embedded store.
    #[arg(long, env = "PARKME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Redis for cross-node fan-out and shared rate limits; unset = single node.
    #[arg(long, env = "PARKME_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key this node writes.
    #[arg(long, env = "PARKME_REDIS_PREFIX", default_value = "parkme:")]
    pub redis_prefix: String,

    /// Longest a request waits for Redis before falling back to this
    /// node's own limiter (milliseconds).
    #[arg(long, env = "PARKME_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// PEM file of the CA(s) that sign the Redis server's certificate, for
    /// `rediss://` with a private CA (default: the system's roots).
    #[arg(long, env = "PARKME_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Bearer token of the operator (admin).
    #[arg(long, env = "PARKME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// HS256 secret that signs user JWTs.
    #[arg(long, env = "PARKME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Secret from which per-facility sensor keys are derived (defaults to
    /// the JWT secret, then the admin token).
    #[arg(long, env = "PARKME_SENSOR_KEY_SECRET", hide_env_values = true)]
    pub sensor_key_secret: Option<String>,

    /// Log format.
    #[arg(long, env = "PARKME_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Anonymous writes per IP per hour (0 = unlimited).
    #[arg(long, env = "PARKME_RATE_ANON_PER_HOUR", default_value_t = 100)]
    pub rate_anon_per_hour: u32,

    /// Requests per user per hour (0 = unlimited).
    #[arg(long, env = "PARKME_RATE_USER_PER_HOUR", default_value_t = 1000)]
    pub rate_user_per_hour: u32,

    /// Bookings per user per hour (0 = unlimited).
    #[arg(long, env = "PARKME_RATE_BOOKINGS_PER_HOUR", default_value_t = 100)]
    pub rate_bookings_per_hour: u32,

    /// Sensor messages per facility per second (0 = unlimited).
    #[arg(long, env = "PARKME_RATE_SENSOR_PER_SEC", default_value_t = 200_000)]
    pub rate_sensor_per_sec: u32,

    /// Failed authentications per client address per hour before every
    /// request from it with credentials gets 429 (0 = unlimited).
    #[arg(long, env = "PARKME_RATE_AUTH_FAILURES_PER_HOUR", default_value_t = 60)]
    pub rate_auth_failures_per_hour: u32,

    /// Seconds a client has to send a whole request head, on a new
    /// connection or between two requests of a kept-alive one (0 = no limit).
    #[arg(long, env = "PARKME_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a whole request body; then 408
    /// (0 = no limit).
    #[arg(long, env = "PARKME_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    /// Seconds an HTTP connection may go without a byte moving either way
    /// before it is closed (0 = no limit).
    #[arg(long, env = "PARKME_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Open TCP connections, websockets included (0 = no cap).
    #[arg(long, env = "PARKME_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Connections per client address still speaking HTTP (upgraded
    /// websockets not counted; trusted proxies exempt; 0 = no cap).
    #[arg(long, env = "PARKME_MAX_CONNECTIONS_PER_IP", default_value_t = 4096)]
    pub max_connections_per_ip: usize,

    /// Comma-separated origins (`https://app.example.com`) allowed to open
    /// websockets from a browser, besides the server's own; `*` = any.
    #[arg(long, env = "PARKME_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: AllowedOrigins,

    /// Comma-separated addresses or CIDRs of the proxies whose
    /// `X-Forwarded-For` names the client (default: none is trusted).
    #[arg(long, env = "PARKME_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Seconds of clock skew tolerated on a user token's `exp` and `nbf`.
    #[arg(long, env = "PARKME_JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,

    /// Ops per second one app socket may send (bursts of 5 s worth;
    /// 0 = unlimited).
    #[arg(long, env = "PARKME_WS_OPS_PER_SEC", default_value_t = 10)]
    pub ws_ops_per_sec: u32,

    /// Ops per second all app sockets of one IP may send together (bursts
    /// of 5 s worth; 0 = unlimited).
    #[arg(long, env = "PARKME_WS_OPS_PER_IP_PER_SEC", default_value_t = 1000)]
    pub ws_ops_per_ip_per_sec: u32,

    /// App sockets open at once per IP; more are refused with 429 (0 =
    /// unlimited).
    #[arg(long, env = "PARKME_WS_SOCKETS_PER_IP", default_value_t = 16_384)]
    pub ws_sockets_per_ip: u32,

    /// Zone and spot entries an app socket may hold merged for a slow
    /// reader; past it the merge is dropped and the reader gets a fresh
    /// snapshot when it catches up.
    #[arg(long, env = "PARKME_WS_MERGE_MAX", default_value_t = 1024)]
    pub ws_merge_max: usize,

    /// A zone writes a snapshot after this many events.
    #[arg(long, env = "PARKME_SNAPSHOT_EVERY", default_value_t = 8192)]
    pub snapshot_every: u64,

    /// Days the record of an ended booking (completed, expired, cancelled)
    /// is kept after it ended; then the store forgets it.
    #[arg(
        long,
        env = "PARKME_BOOKING_RETENTION_DAYS",
        default_value_t = 400,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    pub booking_retention_days: u32,

    /// A spot not heard of (a reading or a heartbeat naming it) for this
    /// many seconds shows `UNKNOWN`; 0 turns sensor liveness off.
    #[arg(long, env = "PARKME_SENSOR_STALE_SECS", default_value_t = parkme_engine::zone::DEFAULT_STALE_SECS)]
    pub sensor_stale_secs: u32,

    /// How long before its `starts_at` an advance reservation takes a spot.
    #[arg(long, env = "PARKME_RESERVATION_LEAD_SECS", default_value_t = parkme_engine::zone::DEFAULT_LEAD_SECS)]
    pub reservation_lead_secs: u32,

    /// How long after its `ends_at` an active booking is overstaying.
    #[arg(long, env = "PARKME_GRACE_SECS", default_value_t = parkme_engine::zone::DEFAULT_GRACE_SECS)]
    pub grace_secs: u32,

    /// Days an occupancy history sample is kept (contract §3.1).
    #[arg(
        long,
        env = "PARKME_HISTORY_DAYS",
        default_value_t = 35,
        value_parser = clap::value_parser!(u32).range(1..=3650)
    )]
    pub history_days: u32,

    /// Seconds between two occupancy samples of a facility (the contract
    /// samples each minute; shorter for tests).
    #[arg(
        long,
        env = "PARKME_HISTORY_SAMPLE_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub history_sample_secs: u32,

    /// Load a demo city (when empty) and run a sensor simulator.
    #[arg(long, env = "PARKME_DEMO")]
    pub demo: bool,

    /// This node's name in the cluster (default: the host name). Unique
    /// per node; letters, digits, `-`, `_`, `.`.
    #[arg(long, env = "PARKME_NODE_ID")]
    pub node_id: Option<String>,

    /// Base URL other nodes use to reach this one (default: `http://` +
    /// the listen address, with the bound port).
    #[arg(long, env = "PARKME_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Authenticates node-to-node traffic; required on a cluster node.
    #[arg(long, env = "PARKME_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// A facility lease lasts this long without renewal (milliseconds);
    /// a dead owner's facilities are served again within twice this.
    #[arg(
        long,
        env = "PARKME_LEASE_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(500..=600_000)
    )]
    pub lease_ms: u64,

    /// Threads of the sensor sockets' own runtime, run at the lowest CPU
    /// priority (nice 19) so that bookings, app sockets, health and
    /// metrics go first when sensors saturate the cores. 0 runs sensor
    /// sockets with everything else.
    #[arg(
        long,
        env = "PARKME_SENSOR_THREADS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(0..=256)
    )]
    pub sensor_threads: u16,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("storage", &redact_uri(&self.storage))
            .field("cql", &self.cql)
            .field("data_dir", &self.data_dir)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("admin_token", &redacted(&self.admin_token))
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("sensor_key_secret", &redacted(&self.sensor_key_secret))
            .field("log_format", &self.log_format)
            .field("rate_anon_per_hour", &self.rate_anon_per_hour)
            .field("rate_user_per_hour", &self.rate_user_per_hour)
            .field("rate_bookings_per_hour", &self.rate_bookings_per_hour)
            .field("rate_sensor_per_sec", &self.rate_sensor_per_sec)
            .field(
                "rate_auth_failures_per_hour",
                &self.rate_auth_failures_per_hour,
            )
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("allowed_origins", &self.allowed_origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("ws_ops_per_sec", &self.ws_ops_per_sec)
            .field("ws_ops_per_ip_per_sec", &self.ws_ops_per_ip_per_sec)
            .field("ws_sockets_per_ip", &self.ws_sockets_per_ip)
            .field("ws_merge_max", &self.ws_merge_max)
            .field("snapshot_every", &self.snapshot_every)
            .field("booking_retention_days", &self.booking_retention_days)
            .field("sensor_stale_secs", &self.sensor_stale_secs)
            .field("reservation_lead_secs", &self.reservation_lead_secs)
            .field("grace_secs", &self.grace_secs)
            .field("demo", &self.demo)
            .field("node_id", &self.node_id)
            .field("advertise_url", &self.advertise_url)
            .field("cluster_secret", &redacted(&self.cluster_secret))
            .field("lease_ms", &self.lease_ms)
            .field("sensor_threads", &self.sensor_threads)
            .finish()
    }
}

/// Login and TLS to the CQL cluster (`PARKME_STORAGE=scylla://…`). Each
/// one set overrides what the URI says; `Debug` never shows the password.
#[derive(Clone, Default, Args)]
pub struct CqlSettings {
    /// User name for the cluster's PasswordAuthenticator (overrides the
    /// URI's `user:…@`).
    #[arg(long = "cql-username", env = "PARKME_CQL_USERNAME")]
    pub username: Option<String>,

    /// Its password (overrides the URI's `…:password@`). Prefer the
    /// environment variable to the flag, which other local users can see.
    #[arg(
        long = "cql-password",
        env = "PARKME_CQL_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// Encrypt every connection to the cluster (overrides the URI's `tls=`).
    #[arg(
        long = "cql-tls",
        env = "PARKME_CQL_TLS",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub tls: Option<bool>,

    /// PEM file of the CA(s) the nodes' certificates must chain to
    /// (default: the system's roots; overrides the URI's `ca=`).
    #[arg(long = "cql-ca-file", env = "PARKME_CQL_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// The name every node's certificate must carry (default: each node's
    /// IP address; overrides the URI's `tls_server_name=`).
    #[arg(long = "cql-tls-server-name", env = "PARKME_CQL_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

impl std::fmt::Debug for CqlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlSettings")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl CqlSettings {
    /// Applies these settings over what `target`'s URI said (an empty
    /// value counts as unset). Refuses a user name without a password (or
    /// the reverse), and a CA file or server name with TLS off; the
    /// reasons name settings, never values.
    pub fn apply(&self, target: &mut CqlUri) -> Result<(), String> {
        let security = &mut target.security;
        let (uri_user, uri_password) = match security.credentials.take() {
            Some(c) => (Some(c.username), Some(c.password)),
            None => (None, None),
        };
        let username = set(&self.username).map(str::to_owned).or(uri_user);
        let password = set(&self.password).map(Password::new).or(uri_password);
        security.credentials = match (username, password) {
            (Some(username), Some(password)) => Some(CqlCredentials { username, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "a CQL user name is set but no password: set PARKME_CQL_PASSWORD \
                     (or user:password@ in the URI)"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "a CQL password is set but no user name: set PARKME_CQL_USERNAME \
                     (or user:password@ in the URI)"
                        .into(),
                );
            }
        };
        match self.tls {
            Some(false) => security.tls = None,
            Some(true) => {
                security.tls.get_or_insert_with(Default::default);
            }
            None => {}
        }
        let server_name = set(&self.tls_server_name);
        if self.ca_file.is_some() || server_name.is_some() {
            let Some(tls) = security.tls.as_mut() else {
                return Err(
                    "PARKME_CQL_CA_FILE or PARKME_CQL_TLS_SERVER_NAME is set but TLS \
                     to the CQL cluster is off: set PARKME_CQL_TLS=true (or tls=true in the URI)"
                        .into(),
                );
            };
            if let Some(ca) = &self.ca_file {
                tls.ca_file = Some(ca.clone());
            }
            if let Some(name) = server_name {
                tls.server_name = Some(name.to_owned());
            }
        }
        Ok(())
    }
}

/// `0` seconds = no limit.
fn seconds(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl Config {
    /// Sensor staleness, reservation lead time and overstay grace, as every
    /// zone uses them.
    pub fn zone_params(&self) -> parkme_engine::ZoneParams {
        parkme_engine::ZoneParams {
            stale_secs: self.sensor_stale_secs,
            lead_secs: self.reservation_lead_secs,
            grace_secs: self.grace_secs,
        }
    }

    pub fn header_timeout(&self) -> Option<Duration> {
        seconds(self.header_timeout_secs)
    }

    pub fn body_timeout(&self) -> Option<Duration> {
        seconds(self.body_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        seconds(self.idle_timeout_secs)
    }

    /// Redis set and CQL storage: this process is a cluster node.
    pub fn is_cluster(&self) -> bool {
        self.redis_url.as_deref().is_some_and(|u| !u.is_empty())
            && self.storage.trim().starts_with("scylla://")
    }

    /// The names of the configured secrets shorter than [`SHORT_SECRET`]
    /// bytes (never their values).
    pub fn short_secrets(&self) -> Vec<&'static str> {
        [
            ("PARKME_ADMIN_TOKEN", &self.admin_token),
            ("PARKME_JWT_SECRET", &self.jwt_secret),
            ("PARKME_SENSOR_KEY_SECRET", &self.sensor_key_secret),
            ("PARKME_CLUSTER_SECRET", &self.cluster_secret),
        ]
        .into_iter()
        .filter(|(_, value)| {
            value
                .as_ref()
                .is_some_and(|v| !v.is_empty() && v.len() < SHORT_SECRET)
        })
        .map(|(name, _)| name)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use parkme_storage::cql::CqlUri;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let argv = std::iter::once("parkme").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.config,
            Err(e) => panic!("{args:?} should parse: {e}"),
        }
    }

    fn resolve(config: &Config) -> Result<CqlUri, String> {
        let mut target = CqlUri::parse(&config.storage).map_err(|e| e.to_string())?;
        config.cql.apply(&mut target)?;
        Ok(target)
    }

    #[test]
    fn cql_secrets_never_appear_in_logs_or_debug_output() {
        let config = parse(&[
            "--storage",
            "scylla://app:Uri%2FSecret-1@db1:9142/ks?tls=true",
            "--cql-password",
            "Flag-Secret-2",
        ]);
        let secrets = ["Uri%2FSecret-1", "Uri/Secret-1", "Flag-Secret-2"];
        let target = resolve(&config).expect("valid settings");
        let login = target.security.credentials.as_ref().expect("a login");
        assert_eq!(login.password.expose(), "Flag-Secret-2");
        // What `serve` logs at start (`config = ?config`), what the storage
        // crate logs and prints (the target's Display and Debug).
        let shown = [
            format!("{config:?}"),
            format!("{:?}", config.cql),
            format!("{target:?}"),
            target.to_string(),
            format!("{login:?}"),
        ];
        for text in &shown {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(
            shown[0].contains("scylla://***@db1:9142/ks"),
            "{}",
            shown[0]
        );
        // A malformed URI's error hides the login too.
        let bad = parse(&["--storage", "scylla://app:Bad/Secret-3@db1/ks"]);
        let e = resolve(&bad).err().unwrap_or_default();
        assert!(
            e.contains("invalid CQL storage URI") && !e.contains("Secret-3"),
            "{e}"
        );
        assert!(!format!("{bad:?}").contains("Secret-3"));
    }

    #[test]
    fn cql_settings_override_the_uri_and_refuse_half_a_login() {
        let config = parse(&[
            "--storage",
            "scylla://u:p@db1/ks?tls=true&ca=/uri/ca.pem",
            "--cql-username",
            "env-user",
            "--cql-ca-file",
            "/env/ca.pem",
            "--cql-tls-server-name",
            "cql.example",
        ]);
        let target = resolve(&config).expect("valid");
        let login = target.security.credentials.expect("login");
        assert_eq!(
            (login.username.as_str(), login.password.expose()),
            ("env-user", "p")
        );
        let tls = target.security.tls.expect("tls");
        assert_eq!(tls.ca_file, Some("/env/ca.pem".into()));
        assert_eq!(tls.server_name.as_deref(), Some("cql.example"));

        let off = parse(&[
            "--storage",
            "scylla://db1/ks?tls=true",
            "--cql-tls",
            "false",
        ]);
        assert_eq!(resolve(&off).expect("valid").security.tls, None);
        let on = parse(&["--storage", "scylla://db1/ks", "--cql-tls"]);
        assert!(resolve(&on).expect("valid").security.tls.is_some());

        let half = parse(&["--storage", "scylla://db1/ks", "--cql-username", "u"]);
        assert!(
            resolve(&half)
                .err()
                .unwrap_or_default()
                .contains("PARKME_CQL_PASSWORD")
        );
        let half = parse(&["--storage", "scylla://db1/ks", "--cql-password", "Pw-9"]);
        let e = resolve(&half).err().unwrap_or_default();
        assert!(
            e.contains("PARKME_CQL_USERNAME") && !e.contains("Pw-9"),
            "{e}"
        );
        let no_tls = parse(&["--storage", "scylla://db1/ks", "--cql-ca-file", "/ca.pem"]);
        assert!(
            resolve(&no_tls)
                .err()
                .unwrap_or_default()
                .contains("PARKME_CQL_TLS=true")
        );
    }
}
