//! Fills an embedded store with a large deployment, to measure `parkme
//! backup` and `parkme restore` on it (README, "Backup and restore"):
//! FACILITIES facilities of 10 zones of SPOTS spots each, every spot booked
//! (one booking in 100 with an idempotency key), through the real actors
//! and the real embedded store, then checkpointed and closed.
//!
//! ```text
//! cargo run --release -p parkme-backup --example large_store -- DIR [FACILITIES] [SPOTS]
//! ```
//!
//! The defaults (100 facilities, 1000 spots a zone) give 1M spots and 1M
//! bookings. DIR must not hold a store yet. Then, e.g.:
//!
//! ```text
//! PARKME_DATA_DIR=DIR /usr/bin/time -v target/release/parkme backup --out big.pkb
//! ```
//!
//! This example must never write anywhere but DIR.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parkme_actors::{BookParams, Node, NodeConfig};
use parkme_engine::{
    FacilityId, FacilityLayout, Plate, SpotId, SpotKind, SpotLayout, UserId, ZoneId, ZoneLayout,
    ZoneShape,
};
use parkme_storage::embedded::EmbeddedStorage;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const ZONES: usize = 10;
/// Bookings in flight at once.
const WORKERS: usize = 256;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> Result<T> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("argument {i} ({s:?}) is not a number").into()),
    }
}

fn facility_id(f: usize) -> Result<FacilityId> {
    Ok(FacilityId::parse(&format!("m{f:04}"))?)
}

fn layout(f: usize, spots: usize) -> Result<FacilityLayout> {
    let zones = (0..ZONES)
        .map(|z| {
            let spots = (0..spots)
                .map(|i| {
                    Ok(SpotLayout {
                        id: SpotId::parse(&format!("z{z}-{i}"))?,
                        kind: SpotKind::Standard,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ZoneLayout {
                id: ZoneId::parse(&format!("z{z}"))?,
                name: format!("Zone {z}"),
                shape: ZoneShape::Spots(spots),
                reservable: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(FacilityLayout {
        id: facility_id(f)?,
        name: format!("Facility {f}"),
        timezone: "UTC".into(),
        location: None,
        zones,
    })
}

/// Books every spot of the zones `w`, `w + WORKERS`, … in turn.
async fn book_zones(
    node: Node,
    w: usize,
    spots: usize,
    total: usize,
    done: Arc<AtomicU64>,
) -> Result<()> {
    let started = Instant::now();
    let mut z = w;
    while z < total {
        let (f, zone) = (z / ZONES, z % ZONES);
        let fid = facility_id(f)?;
        for i in 0..spots {
            let params = BookParams {
                owner: UserId::parse(&format!("u{}", i % 5000))?,
                plate: Plate::parse(&format!("P{z}-{i}"))?,
                zone: Some(ZoneId::parse(&format!("z{zone}"))?),
                kind: None,
                spot: None,
                hold_seconds: 86_400,
                starts_at: None,
                ends_at: None,
                idempotency_key: i.is_multiple_of(100).then(|| format!("k{z}-{i}")),
            };
            node.book(&fid, params).await?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(100_000) {
                eprintln!(
                    "{n} bookings, {:.0}/s",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        z += WORKERS;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(PathBuf::from) else {
        return Err("usage: large_store DIR [FACILITIES=100] [SPOTS_PER_ZONE=1000]".into());
    };
    let facilities: usize = arg(&args, 2, 100)?;
    let spots: usize = arg(&args, 3, 1000)?;
    if dir.join("parkme.redb").exists() {
        return Err(format!("{} already holds a store", dir.display()).into());
    }
    std::fs::create_dir_all(&dir)?;
    let storage = Arc::new(EmbeddedStorage::open(&dir)?);
    let config = NodeConfig {
        snapshot_every: 8192,
        ..NodeConfig::default()
    };
    let (node, committer) = Node::start(storage.clone(), config).await?;

    let started = Instant::now();
    for f in 0..facilities {
        node.put_facility(layout(f, spots)?).await?;
    }
    eprintln!(
        "{facilities} facilities, {} spots laid out in {:.1} s",
        facilities * ZONES * spots,
        started.elapsed().as_secs_f64()
    );

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let total = facilities * ZONES;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(book_zones(node.clone(), w, spots, total, done.clone())))
        .collect();
    for worker in workers {
        worker.await??;
    }
    eprintln!(
        "{} bookings in {:.1} s",
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    node.stop().await;
    drop(node);
    committer.await?;
    storage.checkpoint().await?;
    Ok(())
}
