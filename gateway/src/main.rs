//! The `parkme` binary: `serve` runs the engine, `healthcheck` probes a
//! running one (for container health checks), `backup` and `restore`
//! (`cli_backup`) move a deployment's data to and from a file.

mod cli_backup;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use parkme_gateway::config::Config;
use parkme_gateway::{Application, telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Many small, short-lived allocations per request: mimalloc handles them
/// with less contention and fragmentation than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "parkme",
    version,
    about = "ParkMe real-time parking occupancy engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine: HTTP API, websockets, dashboard, metrics.
    Serve(Box<Config>),
    /// Exit 0 if a running engine reports healthy on /health/.
    Healthcheck {
        /// Address of the engine.
        #[arg(
            long,
            env = "PARKME_HEALTHCHECK_ADDR",
            default_value = "127.0.0.1:8080"
        )]
        addr: String,
    },
    /// Write a backup of the configured storage to a file, while it serves.
    Backup(cli_backup::BackupArgs),
    /// Load a backup file into the configured (empty) storage.
    Restore(cli_backup::RestoreArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // ring is the workspace's one crypto provider; the CQL driver's rustls
    // feature also compiles aws-lc-rs, and with two compiled in rustls has
    // no default until one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(config) => {
            // Sensor sockets run on their own low-priority threads
            // (`ws::bulk`); stopped after the server, whose shutdown has
            // closed their sockets.
            let sensors = parkme_gateway::ws::bulk::start(config.sensor_threads)
                .context("starting the sensor runtime")?;
            let served = runtime.block_on(serve(*config));
            if let Some(sensors) = sensors {
                sensors.shutdown_background();
            }
            served
        }
        Command::Healthcheck { addr } => runtime.block_on(healthcheck(&addr)),
        Command::Backup(args) => runtime.block_on(cli_backup::backup(args)),
        Command::Restore(args) => runtime.block_on(cli_backup::restore(args)),
    }
}

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    hex::encode(bytes)
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    telemetry::init_tracing(config.log_format);
    if config.demo {
        if config.admin_token.is_none() {
            let token = random_secret();
            println!("demo admin token: {token}");
            config.admin_token = Some(token);
        }
        if config.jwt_secret.is_none() {
            let secret = random_secret();
            println!("demo JWT secret: {secret}");
            config.jwt_secret = Some(secret);
        }
    }
    if config.admin_token.is_none() {
        tracing::warn!("PARKME_ADMIN_TOKEN is not set: admin endpoints will refuse every request");
    }
    for name in config.short_secrets() {
        tracing::warn!(
            setting = name,
            "{name} is shorter than {} bytes: easy to guess; use a long random value",
            parkme_gateway::config::SHORT_SECRET
        );
    }
    tracing::info!(config = ?config, "starting");
    let shutdown = CancellationToken::new();
    let app = Application::build(config.clone(), shutdown.clone())
        .await
        .context("building the server")?;
    println!(
        "parkme listening on http://{}:{}/",
        config.listen.ip(),
        app.port()
    );
    tokio::spawn(signals(shutdown.clone()));
    app.run_until_stopped().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}

async fn healthcheck(addr: &str) -> anyhow::Result<()> {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET /health/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let head = tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .context("health check timed out")?
        .context("health check failed")?;
    if head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!("unhealthy: {}", head.lines().next().unwrap_or(""))
    }
}
