//! Group-commit latency of the CQL backend against a real server
//! (`PARKME_TEST_CQL`, default `127.0.0.1:9042`): one commit of 1 event,
//! of 1024 events of one zone, and of 1024 events spread over 64 zones.
//! Events carry 128-byte payloads. Each run works in its own keyspace
//! `parkme_bench_<secs>_<pid>` and drops it at the end.
//!
//! Three write paths, same tables, same events:
//! - `fenced`: the backend's commit (one conditional batch per journal
//!   bucket, `IF owner_epoch = E`);
//! - `read_then_write`: the path before fencing moved into the data,
//!   rebuilt here for comparison: a `SERIAL` read of each zone's epoch,
//!   then one plain `UNLOGGED` batch per bucket;
//! - `plain`: the plain batches alone (no fencing at all: a floor).
//!
//! Plus `claim`: one zone claim (what a takeover costs before replay).
//!
//! `cargo bench -p parkme-storage --bench cql_commit`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput};
use futures_util::future::join_all;
use parkme_engine::{FacilityId, Seq, ZoneId};
use parkme_storage::cql::{BUCKET_SIZE, CqlStorage};
use parkme_storage::{Epoch, Storage, Write, ZoneKey};
use scylla::statement::batch::{Batch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
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

/// The unfenced write path, sent straight through the driver.
struct Plain {
    insert: PreparedStatement,
    read_epoch: PreparedStatement,
}

type Row<'a> = (&'a str, &'a str, i64, i64, i64, &'a [u8]);

impl Plain {
    async fn prepare(storage: &CqlStorage) -> Plain {
        let ks = storage.keyspace();
        let session = storage.session();
        let mut insert = session
            .prepare(format!(
                "INSERT INTO {ks}.zone_journal (facility, zone, bucket, seq, epoch, payload)
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await
            .expect("prepare");
        insert.set_is_idempotent(true);
        let mut read_epoch = session
            .prepare(format!(
                "SELECT owner_epoch FROM {ks}.zone_snapshots WHERE facility = ? AND zone = ? LIMIT 1"
            ))
            .await
            .expect("prepare");
        read_epoch.set_consistency(Consistency::Serial);
        read_epoch.set_serial_consistency(Some(SerialConsistency::Serial));
        Plain { insert, read_epoch }
    }

    async fn commit(&self, storage: &CqlStorage, writes: &[Write], check_first: bool) {
        let session = storage.session();
        let mut zones: Vec<&ZoneKey> = Vec::new();
        let mut parts: std::collections::BTreeMap<(&ZoneKey, i64), Vec<Row<'_>>> =
            Default::default();
        for write in writes {
            let Write::Event {
                zone,
                epoch,
                seq,
                bytes,
            } = write
            else {
                continue;
            };
            let (seq, bucket) = (seq.0 as i64, (seq.0 / BUCKET_SIZE) as i64);
            if !zones.contains(&zone) {
                zones.push(zone);
            }
            parts.entry((zone, bucket)).or_default().push((
                zone.facility.as_str(),
                zone.zone.as_str(),
                bucket,
                seq,
                epoch.0 as i64,
                bytes.as_slice(),
            ));
        }
        if check_first {
            let reads = zones.iter().map(|z| {
                session.execute_unpaged(&self.read_epoch, (z.facility.as_str(), z.zone.as_str()))
            });
            for read in join_all(reads).await {
                read.expect("epoch read");
            }
        }
        let batches: Vec<(Batch, &Vec<Row<'_>>)> = parts
            .values()
            .map(|rows| {
                let statement = BatchStatement::PreparedStatement(self.insert.clone());
                let batch =
                    Batch::new_with_statements(BatchType::Unlogged, vec![statement; rows.len()]);
                (batch, rows)
            })
            .collect();
        let sends = batches
            .iter()
            .map(|(batch, rows)| session.batch(batch, *rows));
        for sent in join_all(sends).await {
            sent.expect("plain write");
        }
    }
}

fn bench(c: &mut Criterion, runtime: &Runtime, storage: &CqlStorage) {
    let plain = runtime.block_on(Plain::prepare(storage));
    let cases: [(&str, usize, u64); 3] = [
        ("1_event", 1, 1),
        ("1024_events_1_zone", 1, 1024),
        ("1024_events_64_zones", 64, 16),
    ];
    let mut group = c.benchmark_group("cql_commit");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(15));
    for path in ["fenced", "read_then_write", "plain"] {
        for (name, zone_count, per_zone) in cases {
            let zones =
                runtime.block_on(Zones::claim(storage, &format!("{path}-{name}"), zone_count));
            let events = zone_count as u64 * per_zone;
            group.throughput(Throughput::Elements(events));
            group.bench_function(format!("{path}/{name}"), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut busy = Duration::ZERO;
                        for _ in 0..iters {
                            let writes = zones.batch(per_zone);
                            let started = Instant::now();
                            match path {
                                "fenced" => storage.commit(&writes).await.expect("commit"),
                                "read_then_write" => plain.commit(storage, &writes, true).await,
                                _ => plain.commit(storage, &writes, false).await,
                            }
                            busy += started.elapsed();
                        }
                        busy
                    })
                });
            });
        }
    }
    let zones = runtime.block_on(Zones::claim(storage, "claim", 1));
    runtime
        .block_on(storage.commit(&zones.batch(10)))
        .expect("commit");
    let zone = zones.zones[0].0.clone();
    group.throughput(Throughput::Elements(1));
    group.bench_function("claim", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    storage.claim_zone(&zone).await.expect("claim");
                }
                started.elapsed()
            })
        });
    });
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
