//! Bookings through the actors with durable group commit on the embedded
//! backend: many concurrent callers, each booking then cancelling (two
//! durable commits per iteration), as the HTTP edge would drive them.
//!
//! `cargo bench -p parkme-actors --bench durable_bookings`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parkme_actors::{BookParams, Booked, Node, NodeConfig};
use parkme_engine::{
    FacilityId, FacilityLayout, Plate, SpotId, SpotKind, SpotLayout, UserId, ZoneId, ZoneLayout,
    ZoneShape,
};
use parkme_storage::embedded::EmbeddedStorage;

const FACILITIES: usize = 8;
const ZONES: usize = 4;
const SPOTS: usize = 500;

fn layout(f: usize) -> FacilityLayout {
    let zones = (0..ZONES)
        .map(|z| ZoneLayout {
            id: ZoneId::parse(&format!("z{z}")).expect("id"),
            name: format!("zone {z}"),
            shape: ZoneShape::Spots(
                (0..SPOTS)
                    .map(|s| SpotLayout {
                        id: SpotId::parse(&format!("z{z}-s{s}")).expect("id"),
                        kind: SpotKind::Standard,
                    })
                    .collect(),
            ),
            reservable: 0,
        })
        .collect();
    FacilityLayout::new(
        FacilityId::parse(&format!("bench-{f}")).expect("id"),
        format!("Bench {f}"),
        "UTC".into(),
        None,
        zones,
    )
    .expect("valid layout")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let node = runtime.block_on(async {
        let storage = Arc::new(EmbeddedStorage::open(dir.path()).expect("open"));
        let (node, _committer) = Node::start(storage, NodeConfig::default())
            .await
            .expect("node");
        for f in 0..FACILITIES {
            node.put_facility(layout(f)).await.expect("facility");
        }
        node
    });
    let mut group = c.benchmark_group("durable_bookings");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for concurrency in [64usize, 512] {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_function(format!("book_and_cancel_x{concurrency}"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let mut tasks = Vec::with_capacity(concurrency);
                        for i in 0..concurrency {
                            let node = node.clone();
                            tasks.push(tokio::spawn(async move {
                                let facility =
                                    FacilityId::parse(&format!("bench-{}", i % FACILITIES))
                                        .expect("id");
                                let params = BookParams {
                                    owner: UserId::parse("bench").expect("id"),
                                    plate: Plate::parse("BENCH-1").expect("plate"),
                                    zone: None,
                                    kind: None,
                                    spot: None,
                                    hold_seconds: 600,
                                    starts_at: None,
                                    ends_at: None,
                                    idempotency_key: None,
                                };
                                if let Ok(Booked::Created(booking)) =
                                    node.book(&facility, params).await
                                {
                                    let _ = node.cancel(&booking).await;
                                }
                            }));
                        }
                        for task in tasks {
                            let _ = task.await;
                        }
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
