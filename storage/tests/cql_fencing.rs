//! The fencing protocol of the CQL backend across processes (each
//! `CqlStorage` here has its own driver session and knows nothing of the
//! others, as two nodes would), on the real server at `PARKME_TEST_CQL`
//! (default `127.0.0.1:9042`). Each test works in a keyspace of its own
//! (`parkme_test_<secs>_f<pid>_<nanos>`, dropped at the end; leftovers of
//! failed runs are swept by the conformance tests after an hour). Like
//! every CQL test, these fail (never skip) without a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId, ZoneId};
use parkme_storage::cql::{CqlStorage, CqlUri};
use parkme_storage::{Epoch, Storage, StorageError, Write, ZoneKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn server() -> String {
    std::env::var("PARKME_TEST_CQL")
        .unwrap_or_else(|_| "127.0.0.1:9042".into())
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn keyspace() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "parkme_test_{}_f{}_{}",
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos()
    )
}

fn target(hosts: &str, keyspace: &str) -> CqlUri {
    CqlUri::parse(&format!("scylla://{hosts}/{keyspace}")).expect("valid uri")
}

async fn open(target: CqlUri) -> CqlStorage {
    CqlStorage::connect_to(target)
        .await
        .unwrap_or_else(|e| panic!("the CQL server at {} is required: {e}", server()))
}

/// `n` handles on one fresh keyspace, as `n` processes would have.
async fn processes(n: usize) -> Vec<CqlStorage> {
    let ks = keyspace();
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(open(target(&server(), &ks)).await);
    }
    all
}

async fn drop_keyspace(storage: &CqlStorage) {
    // Schema changes wait for agreement across the cluster: give it time.
    let mut drop = scylla::statement::unprepared::Statement::new(format!(
        "DROP KEYSPACE IF EXISTS {}",
        storage.keyspace()
    ));
    drop.set_request_timeout(Some(Duration::from_secs(60)));
    storage
        .session()
        .query_unpaged(drop, ())
        .await
        .expect("drop the test keyspace");
}

fn zone() -> ZoneKey {
    ZoneKey::new(
        FacilityId::parse("f1").expect("id"),
        ZoneId::parse("z1").expect("id"),
    )
}

fn events(epoch: Epoch, seqs: std::ops::RangeInclusive<u64>) -> Vec<Write> {
    seqs.map(|seq| Write::Event {
        zone: zone(),
        epoch,
        seq: Seq(seq),
        bytes: seq.to_be_bytes().to_vec(),
    })
    .collect()
}

async fn seqs(s: &CqlStorage, after: u64) -> Vec<u64> {
    s.read_events(&zone(), Seq(after))
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect()
}

fn fenced<T: std::fmt::Debug>(outcome: Result<T, StorageError>) -> bool {
    matches!(outcome, Err(StorageError::Fenced { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claimers_on_several_processes_get_distinct_increasing_epochs() {
    let nodes = processes(3).await;
    let z = zone();
    let claims = (0..9).map(|i| nodes[i % 3].claim_zone(&z));
    let won: Vec<Epoch> = join_all(claims)
        .await
        .into_iter()
        .filter_map(|outcome| match outcome {
            Ok(epoch) => Some(epoch),
            // Lost to a newer claim while fencing: told so, never a tie.
            Err(StorageError::Fenced { .. }) => None,
            Err(e) => panic!("a claim failed: {e}"),
        })
        .collect();
    assert!(!won.is_empty(), "some claim wins");
    let mut distinct = won.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        won.len(),
        "epochs are never shared: {won:?}"
    );

    let last = nodes[0].claim_zone(&zone()).await.expect("claim");
    assert!(won.iter().all(|e| *e < last), "{won:?} then {last:?}");
    // A process that knows nothing of the race tries every older epoch:
    // the data refuses each one.
    let outsider = open(target(&server(), nodes[0].keyspace())).await;
    for epoch in &won {
        assert!(
            fenced(outsider.commit(&events(*epoch, 1..=1)).await),
            "epoch {epoch:?} is fenced"
        );
    }
    assert!(seqs(&outsider, 0).await.is_empty());
    nodes[0]
        .commit(&events(last, 1..=3))
        .await
        .expect("the newest claim writes");
    assert_eq!(seqs(&outsider, 0).await, vec![1, 2, 3]);
    drop_keyspace(&nodes[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_writers_commit_is_refused_with_none_of_its_events_or_bookings_landing() {
    let nodes = processes(2).await;
    let (old, new) = (&nodes[0], &nodes[1]);
    let e1 = old.claim_zone(&zone()).await.expect("claim");
    old.commit(&events(e1, 1..=5)).await.expect("commit");
    old.put_snapshot(&zone(), e1, Seq(5), b"image-at-5".to_vec())
        .await
        .expect("snapshot");
    let e2 = new.claim_zone(&zone()).await.expect("takeover");
    assert!(e2 > e1);

    // The old owner has not heard of the takeover: its commit of events,
    // a booking and an idempotency key is refused by the data itself.
    let booking = BookingId::parse("b-deposed").expect("id");
    let owner = UserId::parse("u-deposed").expect("id");
    let mut late = events(e1, 6..=8);
    late.push(Write::Booking {
        id: booking.clone(),
        bytes: b"CONFIRMED".to_vec(),
        forget_after: None,
    });
    late.push(Write::Idempotency {
        owner: owner.clone(),
        key: "retry".into(),
        booking: booking.clone(),
        expires_at: Millis(i64::MAX),
        replaces: None,
    });
    match old.commit(&late).await {
        Err(StorageError::Fenced { current, ours, .. }) => {
            assert_eq!((current, ours), (e2.0, e1.0));
        }
        other => panic!("a deposed writer must be fenced, got {other:?}"),
    }
    assert_eq!(seqs(new, 0).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(new.booking(&booking).await.expect("read"), None);
    // Its idempotency key goes before its events (so a writer that dies
    // between its journal and its records leaves its key behind); here it
    // names a booking that never landed, which a retry reads as no booking.
    let key = new.idempotent_booking(&owner, "retry", Millis(0)).await;
    assert_eq!(key.expect("read"), Some(booking.clone()));
    // Its snapshots are refused too, and do not mislead recovery.
    assert!(fenced(
        old.put_snapshot(&zone(), e1, Seq(8), b"diverged".to_vec())
            .await
    ));
    let latest = new.latest_snapshot(&zone()).await.expect("read");
    assert_eq!(latest, Some((Seq(5), b"image-at-5".to_vec())));

    new.commit(&events(e2, 6..=8))
        .await
        .expect("the new owner writes");
    assert_eq!(seqs(new, 5).await, vec![6, 7, 8]);
    drop_keyspace(new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_writers_late_key_claim_never_overwrites_its_successors_booking() {
    let nodes = processes(2).await;
    let (old, new) = (&nodes[0], &nodes[1]);
    let owner = UserId::parse("u-retry").expect("id");
    let claim = |booking: &BookingId, replaces| Write::Idempotency {
        owner: owner.clone(),
        key: "order-7".into(),
        booking: booking.clone(),
        expires_at: Millis(4_102_444_800_000),
        replaces,
    };
    let e1 = old.claim_zone(&zone()).await.expect("claim");
    old.commit(&events(e1, 1..=2)).await.expect("commit");
    let e2 = new.claim_zone(&zone()).await.expect("takeover");
    // The successor books the retry of "order-7" first...
    let retried = BookingId::parse("b-retried").expect("id");
    let mut first = events(e2, 3..=3);
    first.push(claim(&retried, None));
    new.commit(&first).await.expect("the successor books");
    // ...then the replaced owner wakes with its own attempt of the key, read
    // as absent before it paused.
    let late = BookingId::parse("b-late").expect("id");
    let mut stale = events(e1, 3..=3);
    stale.push(claim(&late, None));
    assert!(
        old.commit(&stale).await.is_err(),
        "the late claim is refused"
    );
    let bound = new
        .idempotency_binding(&owner, "order-7")
        .await
        .expect("read");
    assert_eq!(
        bound.map(|(b, _)| b),
        Some(retried.clone()),
        "the key still names the successor's booking"
    );
    // A claim that read the key as it is now lands.
    let next = BookingId::parse("b-next").expect("id");
    let seen = new
        .idempotency_binding(&owner, "order-7")
        .await
        .expect("read");
    let mut then = events(e2, 4..=4);
    then.push(claim(&next, seen));
    new.commit(&then).await.expect("a claim of what it read");
    let bound = new
        .idempotency_binding(&owner, "order-7")
        .await
        .expect("read");
    assert_eq!(bound.map(|(b, _)| b), Some(next));
    drop_keyspace(new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_at_a_bucket_boundary_leaves_the_deposed_writer_no_bucket() {
    let nodes = processes(3).await;
    let (old, new) = (&nodes[0], &nodes[1]);
    let e1 = old.claim_zone(&zone()).await.expect("claim");
    // Bucket 0 holds seqs 0..=4095: the old owner stops just short of it.
    old.commit(&events(e1, 1..=4090)).await.expect("commit");
    let e2 = new.claim_zone(&zone()).await.expect("takeover");
    // A commit crossing into bucket 1 lands in neither bucket.
    assert!(fenced(old.commit(&events(e1, 4091..=4100)).await));
    assert_eq!(seqs(new, 4080).await, (4081..=4090).collect::<Vec<_>>());
    // Nor can it go further up: bucket 1 was fenced by the takeover.
    assert!(fenced(old.commit(&events(e1, 4096..=4100)).await));
    assert!(seqs(new, 4090).await.is_empty());

    new.commit(&events(e2, 4091..=4100)).await.expect("commit");
    assert_eq!(seqs(new, 4090).await, (4091..=4100).collect::<Vec<_>>());
    drop_keyspace(new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_second_bucket_is_refused_fails_and_leaves_a_prefix() {
    let nodes = processes(2).await;
    let (writer, recovery) = (&nodes[0], &nodes[1]);
    let e1 = writer.claim_zone(&zone()).await.expect("claim");
    writer.commit(&events(e1, 1..=4090)).await.expect("commit");
    // A claimer (epoch 99) that has taken the zone's head but not yet
    // raised bucket 0, caught half way.
    let poke = format!(
        "UPDATE {}.zone_snapshots SET owner_epoch = 99
         WHERE facility = 'f1' AND zone = 'z1' IF owner_epoch = {}",
        writer.keyspace(),
        e1.0
    );
    writer
        .session()
        .query_unpaged(poke, ())
        .await
        .expect("poke");
    // Bucket 0's batch applies, bucket 1's is refused: the commit is not
    // acknowledged, and what landed is a prefix without a hole.
    assert!(fenced(writer.commit(&events(e1, 4091..=4100)).await));
    let e3 = recovery.claim_zone(&zone()).await.expect("claim");
    assert!(e3.0 > 99);
    let recovered = seqs(recovery, 0).await;
    assert_eq!(recovered, (1..=4095).collect::<Vec<_>>());
    recovery
        .commit(&events(e3, 4096..=4100))
        .await
        .expect("the new owner carries on from the prefix");
    assert_eq!(
        seqs(recovery, 4094).await,
        (4095..=4100).collect::<Vec<_>>()
    );
    drop_keyspace(recovery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_claims_leave_no_bucket_behind() {
    let nodes = processes(1).await;
    let s = &nodes[0];
    let mut epoch = s.claim_zone(&zone()).await.expect("claim");
    s.commit(&events(epoch, 1..=10)).await.expect("commit");
    for _ in 0..5 {
        epoch = s.claim_zone(&zone()).await.expect("claim");
    }
    let query = format!(
        "SELECT bucket FROM {}.zone_buckets WHERE facility = 'f1' AND zone = 'z1'",
        s.keyspace()
    );
    let buckets: Vec<i64> = s
        .session()
        .query_unpaged(query, ())
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows")
        .rows::<(i64,)>()
        .expect("typed")
        .map(|r| r.expect("row").0)
        .collect();
    assert_eq!(buckets, vec![0], "claims create no buckets");
    s.commit(&events(epoch, 11..=12)).await.expect("commit");
    assert_eq!(seqs(s, 0).await, (1..=12).collect::<Vec<_>>());
    drop_keyspace(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_zone_created_again_never_reuses_an_epoch() {
    let nodes = processes(2).await;
    let (s, stale) = (&nodes[0], &nodes[1]);
    let e1 = stale.claim_zone(&zone()).await.expect("claim");
    stale.commit(&events(e1, 1..=3)).await.expect("commit");
    s.drop_zone(&zone()).await.expect("drop");
    assert!(seqs(s, 0).await.is_empty());
    assert_eq!(s.latest_snapshot(&zone()).await.expect("read"), None);
    let again = s.claim_zone(&zone()).await.expect("claim");
    assert!(again > e1, "{again:?} after {e1:?}");
    assert!(fenced(stale.commit(&events(e1, 1..=1)).await));
    s.commit(&events(again, 1..=2)).await.expect("commit");
    assert_eq!(seqs(s, 0).await, vec![1, 2]);
    drop_keyspace(s).await;
}

/// Forwards TCP to the CQL server; while `mute` is set, answers from the
/// server are swallowed (requests still arrive and are executed).
struct MutingProxy {
    addr: SocketAddr,
    mute: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl MutingProxy {
    async fn start() -> MutingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mute = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (token, muted, upstream) = (stop.clone(), Arc::clone(&mute), server());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upward = token.clone();
                tokio::spawn(async move {
                    let _ = tokio::select! {
                        () = upward.cancelled() => Ok(()),
                        copied = tokio::io::copy(&mut client_read, &mut server_write) => copied.map(drop),
                    };
                });
                let (token, muted) = (token.clone(), Arc::clone(&muted));
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = tokio::select! {
                            () = token.cancelled() => return,
                            n = server_read.read(&mut buffer) => n,
                        };
                        let Ok(n) = n else { return };
                        if n == 0 {
                            return;
                        }
                        if !muted.load(Ordering::SeqCst)
                            && client_write.write_all(&buffer[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        MutingProxy { addr, mute, stop }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_never_comes_is_never_acknowledged_and_recovery_settles_it() {
    let ks = keyspace();
    let direct = open(target(&server(), &ks)).await;
    let proxy = MutingProxy::start().await;
    let mut through = target(&proxy.addr.to_string(), &ks);
    through.options.request_timeout = Duration::from_secs(2);
    let writer = open(through).await;
    let epoch = writer.claim_zone(&zone()).await.expect("claim");
    writer.commit(&events(epoch, 1..=2)).await.expect("commit");

    // The server gets the next commit and applies it; its answer is lost.
    proxy.mute.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let outcome = writer.commit(&events(epoch, 3..=5)).await;
    match &outcome {
        Err(StorageError::Unavailable(message)) => {
            assert!(message.contains("outcome unknown"), "{message}");
        }
        other => panic!("an unanswered commit must fail as unknown, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // Recovery: a new claim settles it; the journal holds the batch whole
    // or not at all, never a part, and the old writer is fenced.
    let e2 = direct.claim_zone(&zone()).await.expect("claim");
    let recovered = seqs(&direct, 0).await;
    assert!(
        recovered == vec![1, 2] || recovered == vec![1, 2, 3, 4, 5],
        "whole or nothing: {recovered:?}"
    );
    proxy.mute.store(false, Ordering::SeqCst);
    let next = recovered.len() as u64 + 1;
    direct
        .commit(&events(e2, next..=next))
        .await
        .expect("the recovered owner writes");
    proxy.stop.cancel();
    drop_keyspace(&direct).await;
}
