//! Group-commit latency of the CQL backend against a real server
//! (`PARKME_TEST_CQL`, default `127.0.0.1:9042`): one commit of 1 event,
//! of 1024 events of one zone, and of 1024 events spread over 64 zones.
//! Events carry 128-byte payloads. Each run works in its own keyspace
//! `parkme_bench_<secs>_<pid>` and drops it at the end.
//!
//! `cargo bench -p parkme-storage --bench cql_commit`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use parkme_engine::{FacilityId, Seq, ZoneId};
use parkme_storage::cql::CqlStorage;
use parkme_storage::{Epoch, Storage, Write, ZoneKey};
use tokio::runtime::Runtime;

const PAYLOAD: usize = 128;

/// Zones written by one benchmark, with their epochs and next seqs.
struct Zones {
    zones: Vec<(ZoneKey, Epoch)>,
    next: AtomicU64,
}

impl Zones {
    async fn claim(storage: &CqlStorage, tag: &str, count: usize) -> Zones {
        let facility = FacilityId::parse(&format!("bench-{tag}")).expect("facility id");
        let mut zones = Vec::new();
        for i in 0..count {
            let zone = ZoneKey::new(
                facility.clone(),
                ZoneId::parse(&format!("z{i}")).expect("zone id"),
            );
            let epoch = storage.claim_zone(&zone).await.expect("claim");
            zones.push((zone, epoch));
        }
        Zones {
            zones,
            next: AtomicU64::new(1),
        }
    }

    /// `per_zone` fresh events in each zone.
    fn batch(&self, per_zone: u64) -> Vec<Write> {
        let first = self.next.fetch_add(per_zone, Ordering::Relaxed);
        let mut writes = Vec::new();
        for (zone, epoch) in &self.zones {
            for seq in first..first + per_zone {
                writes.push(Write::Event {
                    zone: zone.clone(),
                    epoch: *epoch,
                    seq: Seq(seq),
                    bytes: vec![(seq % 251) as u8; PAYLOAD],
                });
            }
        }
        writes
    }
}

fn bench(c: &mut Criterion, runtime: &Runtime, storage: &CqlStorage) {
    let cases: [(&str, usize, u64); 3] = [
        ("1_event", 1, 1),
        ("1024_events_1_zone", 1, 1024),
        ("1024_events_64_zones", 64, 16),
    ];
    let mut group = c.benchmark_group("cql_commit");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    for (name, zone_count, per_zone) in cases {
        let zones = runtime.block_on(Zones::claim(storage, name, zone_count));
        let events = zone_count as u64 * per_zone;
        group.throughput(Throughput::Elements(events));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut busy = Duration::ZERO;
                    for _ in 0..iters {
                        let writes = zones.batch(per_zone);
                        let started = Instant::now();
                        storage.commit(&writes).await.expect("commit");
                        busy += started.elapsed();
                    }
                    busy
                })
            });
        });
    }
    group.finish();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = std::env::var("PARKME_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let uri = format!(
        "scylla://{server}/parkme_bench_{}_{}",
        now.as_secs(),
        std::process::id()
    );
    let storage = runtime
        .block_on(CqlStorage::connect(&uri))
        .unwrap_or_else(|e| panic!("the CQL server at {server} is required: {e}"));

    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &runtime, &storage);
    criterion.final_summary();

    let drop = format!("DROP KEYSPACE IF EXISTS {}", storage.keyspace());
    if let Err(e) = runtime.block_on(storage.session().query_unpaged(drop, ())) {
        eprintln!("could not drop the bench keyspace: {e}");
    }
}
