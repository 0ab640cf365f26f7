//! `parkme backup` and `parkme restore` (contract §8), part of the binary.
//!
//! Both take the storage settings of `serve` (`PARKME_STORAGE`,
//! `PARKME_DATA_DIR`). `backup` reads the store directly: a CQL keyspace
//! while a whole cluster serves it, an embedded directory when no process
//! holds it. An embedded directory held by a running server (its
//! `parkme.lock`) is backed up through that server instead: `GET
//! /v1/admin/backup` (admin token) streams the same body, and this
//! command writes the file. `restore` loads a file into an empty store
//! (`--force` wipes a non-empty one first).
//!
//! This module must never print a secret, and never leave a file at
//! `--out` that is not a whole backup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use parkme_backup::{Bar, ExportOptions, FileWriter, FrameReader, Header, Progress};
use parkme_gateway::config::CqlSettings;
use parkme_storage::Storage;
use parkme_storage::cql::redact_uri;
use parkme_storage::embedded::{self, EmbeddedStorage};
use tokio::io::AsyncWriteExt;

/// Where the store is: the settings `serve` reads.
#[derive(Clone, Args)]
pub struct StorageArgs {
    /// `embedded` (under the data dir) or
    /// `scylla://[user:password@]host1:9042,host2/keyspace[?tls=true&ca=PATH]`.
    #[arg(
        long,
        env = "PARKME_STORAGE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub storage: String,

    /// Login and TLS to the CQL cluster, as `serve` has them.
    #[command(flatten)]
    pub cql: CqlSettings,

    /// Directory of the embedded store.
    #[arg(long, env = "PARKME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup file to write (written under a temporary name, renamed
    /// once whole).
    #[arg(long)]
    pub out: PathBuf,

    #[command(flatten)]
    pub store: StorageArgs,

    /// Base URL of the running server to back up through, when it holds
    /// the embedded store (default: `http://` + the listen address).
    #[arg(long)]
    pub url: Option<String>,

    /// The running server's listen address (for the default `--url`).
    #[arg(long, env = "PARKME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin bearer token of the running server.
    #[arg(long, env = "PARKME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Days an ended booking's record is kept (as `serve` has it).
    #[arg(long, env = "PARKME_BOOKING_RETENTION_DAYS", default_value_t = 400)]
    pub booking_retention_days: u32,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file to load.
    #[arg(long)]
    pub from: PathBuf,

    #[command(flatten)]
    pub store: StorageArgs,

    /// Restore into a store that holds data: wipe it first (facilities,
    /// zones, bookings, idempotency keys; zone epochs are kept). Stop
    /// every server of the store before.
    #[arg(long)]
    pub force: bool,
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Where a backup is read from.
enum Source {
    Store(Arc<dyn Storage>),
    /// The server at this base URL holds the store.
    Server(String),
}

impl std::fmt::Debug for StorageArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageArgs")
            .field("storage", &redact_uri(&self.storage))
            .field("cql", &self.cql)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

async fn open_cql(store: &StorageArgs) -> anyhow::Result<Arc<dyn Storage>> {
    parkme_gateway::cql::open(store.storage.trim(), &store.cql)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn backup_source(args: &BackupArgs) -> anyhow::Result<Source> {
    let spec = args.store.storage.trim();
    match spec {
        "embedded" => {
            let dir = &args.store.data_dir;
            if !dir.join("parkme.redb").exists() {
                bail!(
                    "{} holds no parkme store (no parkme.redb): nothing to back up; \
                     check PARKME_DATA_DIR",
                    dir.display()
                );
            }
            if let Some(holder) = embedded::lock_holder(dir) {
                let url = args.url.clone().unwrap_or_else(|| default_url(args.listen));
                let by = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                eprintln!(
                    "{} is in use by a running server{by}: backing up through {url}",
                    dir.display()
                );
                return Ok(Source::Server(url));
            }
            let store = EmbeddedStorage::open(dir)
                .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
            Ok(Source::Store(Arc::new(store)))
        }
        "memory" => {
            bail!("PARKME_STORAGE=memory keeps nothing between processes: nothing to back up")
        }
        _ if spec.starts_with("scylla://") => Ok(Source::Store(open_cql(&args.store).await?)),
        _ => bail!(
            "unknown PARKME_STORAGE {:?}: use embedded or scylla://host:port/keyspace",
            redact_uri(spec)
        ),
    }
}

fn default_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

/// Runs a command; a failure is one line on stderr and exit status 1
/// (after everything it opened, a partial file included, was dropped).
async fn report(
    what: &str,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    init_logs();
    if let Err(e) = run.await {
        eprintln!("parkme {what}: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// `parkme backup --out FILE`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    report("backup", run_backup(args)).await
}

/// `parkme restore --from FILE [--force]`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    report("restore", run_restore(args)).await
}

async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress: Arc<dyn Progress> = Arc::new(Bar::new());
    let source = backup_source(&args).await?;
    let mut file = FileWriter::create(&args.out, Arc::clone(&progress)).await?;
    match source {
        Source::Store(storage) => {
            let options = ExportOptions {
                booking_retention_ms: i64::from(args.booking_retention_days)
                    .saturating_mul(86_400_000),
                parkme_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            parkme_backup::export(&*storage, &options, file.body())
                .await
                .context("reading the store")?;
        }
        Source::Server(url) => {
            let token = args
                .admin_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .context("backing up through the server needs PARKME_ADMIN_TOKEN")?;
            relay(&url, token, &mut file).await?;
        }
    }
    let (path, header) = file.finish().await?;
    progress.done();
    println!("{}", summary("backup", &path, &header, started.elapsed()));
    Ok(())
}

/// Copies the server's backup body into `file`, checking every frame.
async fn relay(url: &str, token: &str, file: &mut FileWriter) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    let target = format!("{}/v1/admin/backup", url.trim_end_matches('/'));
    let mut response = client
        .get(&target)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("asking {target} for a backup"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{target} answered {status}: {body}");
    }
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let pump = tokio::spawn(async move {
        while let Some(chunk) = response.chunk().await? {
            if tx.write_all(&chunk).await.is_err() {
                break;
            }
        }
        Ok::<_, reqwest::Error>(())
    });
    let mut reader = FrameReader::new(rx, 0);
    let mut outcome = Ok(());
    loop {
        match reader.next().await {
            Ok(Some(frame)) => file.body().frame(&frame.entry, &frame.payload).await?,
            Ok(None) => break,
            Err(e) => {
                outcome = Err(anyhow::Error::new(e).context(format!("the stream from {target}")));
                break;
            }
        }
    }
    match pump.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("the stream from {target} broke off: {e}"),
        Err(e) => bail!("the stream from {target} failed: {e}"),
    }
    outcome
}

fn summary(what: &str, path: &Path, header: &Header, took: Duration) -> String {
    let c = &header.counts;
    format!(
        "{what}: {}: {} facilities, {} zones, {} spots, {} bookings ({} live), \
         {} idempotency keys, {} bytes, {:.2} s",
        path.display(),
        c.facilities,
        c.zones,
        c.spots,
        c.bookings,
        c.live_bookings,
        c.keys,
        header.body_bytes + parkme_backup::format::HEADER_BLOCK as u64,
        took.as_secs_f64()
    )
}

async fn restore_target(store: &StorageArgs) -> anyhow::Result<Arc<dyn Storage>> {
    let spec = store.storage.trim();
    match spec {
        "embedded" => {
            let storage = EmbeddedStorage::open(&store.data_dir).with_context(|| {
                format!("opening the embedded store in {}", store.data_dir.display())
            })?;
            Ok(Arc::new(storage))
        }
        "memory" => {
            bail!("PARKME_STORAGE=memory keeps nothing between processes: nothing to restore into")
        }
        _ if spec.starts_with("scylla://") => open_cql(store).await,
        _ => bail!(
            "unknown PARKME_STORAGE {:?}: use embedded or scylla://host:port/keyspace",
            redact_uri(spec)
        ),
    }
}

async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress: Arc<dyn Progress> = Arc::new(Bar::new());
    // Checked before the store is even opened: a bad file touches nothing.
    let verified = parkme_backup::verify(&args.from, &*progress).await?;
    let storage = restore_target(&args.store).await?;
    let restored = parkme_backup::restore(&*storage, &args.from, args.force, progress).await?;
    println!(
        "{}{}",
        summary("restore", &args.from, &verified.header, started.elapsed()),
        if restored.wiped {
            " (the store was wiped first)"
        } else {
            ""
        }
    );
    println!(
        "restored: {} facilities, {} zones, {} spots, {} booking records, {} idempotency keys",
        restored.facilities, restored.zones, restored.spots, restored.bookings, restored.keys
    );
    Ok(())
}
