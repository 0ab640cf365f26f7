//! A layout change interrupted at each of its steps (by a crash, a storage
//! failure or a zone failure) ends as exactly the old or exactly the new
//! layout, never a mix, and survives a restart as that; a refused change
//! writes nothing anywhere; commands a change holds back are held for a
//! bounded time only.

use std::sync::Arc;

use parkme_actors::probe::{RelayoutProbe, RelayoutStep, StepAction};
use parkme_actors::{ActorError, Node};
use parkme_engine::{BookingId, EngineError, FacilityLayout, SpotId, SpotState};
use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::memory::MemoryStorage;
use tokio::sync::oneshot;

use crate::helpers::*;
use crate::layout_races::every_spot;

/// Grows A, shrinks B (dropping free spots), removes C, adds D and grows
/// the counter zone E: every kind of change at once.
fn old_layout() -> FacilityLayout {
    facility(
        "f1",
        vec![
            spot_zone("A", 4),
            spot_zone("B", 4),
            spot_zone("C", 3),
            counter_zone("E", 3),
        ],
    )
}

fn new_layout() -> FacilityLayout {
    facility(
        "f1",
        vec![
            spot_zone("A", 6),
            spot_zone("B", 2),
            spot_zone("D", 3),
            counter_zone("E", 5),
        ],
    )
}

/// State that both layouts keep, built before the change.
#[derive(Debug, Clone)]
struct Kept {
    in_a: BookingId,
    in_b: BookingId,
    in_e: BookingId,
}

async fn book_spot(node: &Node, spot: SpotId) -> BookingId {
    let mut p = params(None);
    p.spot = Some(spot);
    book(node, "f1", p).await.expect("booked").id
}

async fn set_up(node: &Node) -> Kept {
    node.put_facility(old_layout()).await.expect("facility");
    let kept = Kept {
        in_a: book_spot(node, spot_of("A", 1)).await,
        in_b: book_spot(node, spot_of("B", 0)).await,
        in_e: book(node, "f1", params(Some("E")))
            .await
            .expect("booked")
            .id,
    };
    sense(
        node,
        "f1",
        vec![
            spot_reading(&spot_of("A", 3), true),
            spot_reading(&spot_of("C", 0), true),
        ],
    )
    .await;
    node.set_service(&fid("f1"), &spot_of("A", 2), true)
        .await
        .expect("out of service");
    kept
}

/// The facility serves `expected`, consistently, with the state that both
/// layouts keep.
async fn assert_serves_with_state(node: &Node, expected: &FacilityLayout, kept: &Kept) {
    let universe = every_spot(&[old_layout(), new_layout()]);
    let bookings = [kept.in_a.clone(), kept.in_b.clone(), kept.in_e.clone()];
    assert_serves(node, "f1", expected, &universe, &bookings).await;
    let states = spot_states(node, "f1").await;
    let state = |zone: &str, n| states[&spot_of(zone, n)].clone();
    assert_eq!(state("A", 1).booking.as_ref(), Some(&kept.in_a));
    assert_eq!(state("A", 2).state, SpotState::OutOfService);
    assert_eq!(state("A", 3).state, SpotState::Occupied);
    assert_eq!(state("B", 0).booking.as_ref(), Some(&kept.in_b));
    for id in &bookings {
        assert!(stored(node, id).await.is_live(), "booking {id} still live");
    }
    let view = node.facility(&fid("f1")).await.expect("view");
    let e = view.zones.iter().find(|z| z.id.as_str() == "E").expect("E");
    assert_eq!(e.counts.overall.reserved, 1);
    let declared_e = expected.zone(&zid("E")).map(|z| z.shape.clone());
    let capacity = match declared_e {
        Some(parkme_engine::ZoneShape::Counter { capacity, .. }) => Some(capacity),
        _ => None,
    };
    assert_eq!(e.capacity, capacity);
    if *expected == old_layout() {
        assert_eq!(state("C", 0).state, SpotState::Occupied);
    } else {
        for spot in [spot_of("A", 4), spot_of("A", 5), spot_of("B", 1)] {
            assert_eq!(states[&spot].state, SpotState::Available);
        }
    }
}

/// Answers the probe `Continue` until `stop`, and returns `stop`'s answer
/// unanswered (the change waits there as long as it is kept).
async fn run_to(probe: &mut RelayoutProbe, stop: &RelayoutStep) -> oneshot::Sender<StepAction> {
    loop {
        let (step, answer) = probe.next().await.expect("the change reaches its steps");
        if step == *stop {
            return answer;
        }
        let _ = answer.send(StepAction::Continue);
    }
}

/// Where each crash leaves the facility: before the record is durable the
/// change never happened, after it the change is complete.
fn crash_points() -> Vec<(RelayoutStep, bool)> {
    vec![
        (RelayoutStep::Prepared, false),
        (RelayoutStep::Committing, false),
        (RelayoutStep::Committed, true),
        (RelayoutStep::ZoneCommit(zid("A")), true),
        // A has journaled its new layout, B and E have not.
        (RelayoutStep::ZoneCommit(zid("B")), true),
        (RelayoutStep::Applied, true),
    ]
}

/// A node on the embedded store in `dir`, snapshotting every `every`
/// events (1: every zone recovers from a snapshot plus a journal tail;
/// large: from its journal alone).
async fn embedded(dir: &std::path::Path, every: u64) -> TestNode {
    let storage = EmbeddedStorage::open(dir).expect("open embedded storage");
    let config = parkme_actors::NodeConfig {
        snapshot_every: every,
        ..Default::default()
    };
    TestNode::start_with(Arc::new(storage), config).await
}

#[test]
fn a_crash_at_any_step_of_a_layout_change_recovers_the_old_or_the_new_layout() {
    let cases = crash_points()
        .into_iter()
        .flat_map(|point| [(point.clone(), 1), (point, 1024)]);
    for ((stop, completes), every) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let crashed = crash_runtime();
        let (kept, seq_before, waiting) = crashed.block_on(async {
            let node = embedded(dir.path(), every).await;
            let kept = set_up(&node).await;
            let seq = node.facility(&fid("f1")).await.expect("view").seq;
            let mut probe = node.probe_relayouts();
            let change = {
                let node = node.node().clone();
                tokio::spawn(async move { node.put_facility(new_layout()).await })
            };
            let waiting = run_to(&mut probe, &stop).await;
            if stop == RelayoutStep::ZoneCommit(zid("B")) {
                let a = spot_zone("A", 6);
                poll_until("A journaled its new layout", || async {
                    (journaled_layout(node.storage().as_ref(), "A").await == Some(a.clone()))
                        .then_some(())
                })
                .await;
            }
            assert!(!change.is_finished(), "the change waits at {stop:?}");
            drop(node);
            (kept, seq, waiting)
        });
        // The crash: every task dropped where it stood.
        drop(crashed);
        drop(waiting);

        let recovered = crash_runtime();
        recovered.block_on(async {
            let node = embedded(dir.path(), every).await;
            let expected = if completes {
                new_layout()
            } else {
                old_layout()
            };
            let seq = node.facility(&fid("f1")).await.expect("view").seq;
            assert!(
                seq > seq_before || (!completes && seq == seq_before),
                "crash at {stop:?}: seq {seq_before} -> {seq}"
            );
            assert_serves_with_state(&node, &expected, &kept).await;
            // Nothing is left half done: a next change goes through, and C,
            // if the crashed change removed it, starts afresh when declared
            // again (a C that stayed keeps its state).
            let mut again = new_layout();
            again.zones.push(spot_zone("C", 3));
            node.put_facility(again.clone())
                .await
                .unwrap_or_else(|e| panic!("crash at {stop:?}: next change failed: {e}"));
            assert_serves_with_state(&node, &again, &kept).await;
            let c = spots(&node, "f1", "C").await;
            let c_occupied = c.iter().any(|s| s.state == SpotState::Occupied);
            assert_eq!(
                c_occupied, !completes,
                "crash at {stop:?}: C after being declared again: {c:?}"
            );
            node.stop().await;
        });
    }
}

/// The node crashes right after it answered the change.
#[test]
fn an_acknowledged_layout_change_survives_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crashed = crash_runtime();
    let kept = crashed.block_on(async {
        let node = TestNode::embedded(dir.path()).await;
        let kept = set_up(&node).await;
        node.put_facility(new_layout()).await.expect("relayout");
        drop(node);
        kept
    });
    drop(crashed);
    let recovered = crash_runtime();
    recovered.block_on(async {
        let node = TestNode::embedded(dir.path()).await;
        assert_serves_with_state(&node, &new_layout(), &kept).await;
        node.stop().await;
    });
}

/// Stops `node` gracefully and starts another on the same storage: what
/// the storage holds is all the next node knows.
async fn restarted(node: TestNode, storage: &Arc<MemoryStorage>) -> TestNode {
    node.stop().await;
    TestNode::start(Arc::clone(storage) as Arc<dyn Storage>).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_before_the_commit_point_changes_nothing_and_one_after_it_completes_the_change() {
    let cases = [
        (RelayoutStep::Prepared, false),
        (RelayoutStep::Committing, false),
        // The record landed but its write reported a failure: the old
        // record is written back before any zone is released.
        (RelayoutStep::Committed, false),
        // Zone B fails instead of adopting its layout: it adopts it when
        // it restarts.
        (RelayoutStep::ZoneCommit(zid("B")), true),
    ];
    for (step, completes) in cases {
        let storage = Arc::new(MemoryStorage::new());
        let node = TestNode::start(Arc::clone(&storage) as Arc<dyn Storage>).await;
        let kept = set_up(&node).await;
        let seq_before = node.facility(&fid("f1")).await.expect("view").seq;
        let mut probe = node.probe_relayouts();
        let change = {
            let node = node.node().clone();
            tokio::spawn(async move { node.put_facility(new_layout()).await })
        };
        run_to(&mut probe, &step)
            .await
            .send(StepAction::Fail)
            .expect("the change waits for its answer");
        drop(probe);
        let result = change.await.expect("task");
        let expected = if completes {
            result.unwrap_or_else(|e| panic!("failure at {step:?}: {e}"));
            new_layout()
        } else {
            let error = result.expect_err("the change fails");
            assert!(error.is_retryable(), "failure at {step:?}: {error:?}");
            old_layout()
        };
        // A failed zone is back (from durable state) within a moment.
        poll_until("the zones serve again", || async {
            let served = served(&node, "f1").await == declared(&expected);
            let a = node.set_service(&fid("f1"), &spot_of("B", 0), false).await;
            (served && a.is_ok()).then_some(())
        })
        .await;
        let seq = node.facility(&fid("f1")).await.expect("view").seq;
        assert_eq!(seq > seq_before, completes, "failure at {step:?}");
        assert_serves_with_state(&node, &expected, &kept).await;
        let node = restarted(node, &storage).await;
        assert_serves_with_state(&node, &expected, &kept).await;
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_layout_change_changes_nothing_in_any_zone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::embedded(dir.path()).await;
    let kept = set_up(&node).await;
    // B-003 holds a booking, and the new layout drops it.
    let held = book_spot(&node, spot_of("B", 3)).await;
    let storage = Arc::clone(node.storage());
    let zones = ["A", "B", "C", "D", "E"];
    let mut journals = Vec::new();
    for zone in zones {
        let key = parkme_storage::ZoneKey::new(fid("f1"), zid(zone));
        journals.push((
            storage.latest_snapshot(&key).await.expect("snapshot"),
            storage
                .read_events(&key, parkme_engine::Seq::ZERO)
                .await
                .expect("journal"),
        ));
    }
    let records = storage.facilities().await.expect("records");
    let view = node.facility(&fid("f1")).await.expect("view");
    let states = spot_states(&node, "f1").await;

    let refused = node.put_facility(new_layout()).await;
    assert!(
        matches!(refused, Err(ActorError::Engine(EngineError::SpotHasLiveBooking(ref s))) if *s == spot_of("B", 3)),
        "got {refused:?}"
    );

    // Not one write anywhere: no zone journaled anything, no zone was
    // started, the record is the old one.
    for (zone, before) in zones.iter().zip(&journals) {
        let key = parkme_storage::ZoneKey::new(fid("f1"), zid(zone));
        let now = (
            storage.latest_snapshot(&key).await.expect("snapshot"),
            storage
                .read_events(&key, parkme_engine::Seq::ZERO)
                .await
                .expect("journal"),
        );
        assert_eq!(&now, before, "zone {zone} was written to");
    }
    assert_eq!(storage.facilities().await.expect("records"), records);
    assert_eq!(node.facility(&fid("f1")).await.expect("view"), view);
    assert_eq!(spot_states(&node, "f1").await, states);
    let bookings = [kept.in_a.clone(), kept.in_b.clone(), held.clone()];
    assert_serves(
        &node,
        "f1",
        &old_layout(),
        &every_spot(&[old_layout(), new_layout()]),
        &bookings,
    )
    .await;

    // And so it stays across a restart.
    node.stop().await;
    drop(storage);
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let node = TestNode::start(Arc::new(storage)).await;
    assert_serves_with_state(&node, &old_layout(), &kept).await;
    assert_eq!(
        spot_view(&node, "f1", "B", &spot_of("B", 3)).await.booking,
        Some(held)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_layout_change_holds_commands_for_a_bounded_time_only() {
    let node = TestNode::memory().await;
    let kept = set_up(&node).await;
    let mut probe = node.probe_relayouts();
    let change = {
        let node = node.node().clone();
        tokio::spawn(async move { node.put_facility(new_layout()).await })
    };
    let waiting = run_to(&mut probe, &RelayoutStep::Committing).await;

    // A (prepared) holds what comes in: more than it may hold is refused
    // at once, as retryable.
    let limit = parkme_actors::MAX_HELD;
    let mut commands = Vec::new();
    for _ in 0..limit + 10 {
        let node = node.node().clone();
        commands.push(tokio::spawn(async move {
            node.set_service(&fid("f1"), &spot_of("A", 0), false).await
        }));
    }
    let refused = poll_until("the commands past the bound are refused", || async {
        let done = commands.iter().filter(|c| c.is_finished()).count();
        (done >= 10).then_some(done)
    })
    .await;
    assert_eq!(refused, 10, "only the commands past the bound are answered");
    // Past the hold limit, what is held is refused as retryable too.
    let started = tokio::time::Instant::now();
    let mut refusals = 0;
    for command in commands {
        match command.await.expect("task") {
            Err(e) => {
                assert!(e.is_retryable(), "got {e:?}");
                refusals += 1;
            }
            Ok(view) => panic!("a held command ran during the change: {view:?}"),
        }
    }
    assert_eq!(refusals, limit + 10);
    assert!(started.elapsed() <= parkme_actors::HOLD_LIMIT * 2);

    // Once the change goes on, it completes and the zone serves again.
    waiting
        .send(StepAction::Continue)
        .expect("the change waits");
    drop(probe);
    change.await.expect("task").expect("the change completes");
    assert_serves_with_state(&node, &new_layout(), &kept).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_record_cannot_be_written_holds_its_zones_until_the_old_record_is_back() {
    let (storage, gate) = crate::gated::gated();
    let node = TestNode::start(storage).await;
    let before = facility("f1", vec![spot_zone("A", 2), spot_zone("B", 2)]);
    let grown = facility("f1", vec![spot_zone("A", 3), spot_zone("B", 2)]);
    node.put_facility(before.clone()).await.expect("facility");

    // The record write fails, and so does writing the old one back: the
    // outcome is unknown until storage answers again.
    gate.refuse_records(true);
    let failed = node.put_facility(grown.clone()).await;
    assert!(
        matches!(&failed, Err(e) if e.is_retryable()),
        "got {failed:?}"
    );
    let again = node.put_facility(grown.clone()).await;
    assert!(
        matches!(again, Err(ActorError::Unavailable(_))),
        "a change while one is unsettled: {again:?}"
    );
    // B, untouched by the change, serves; A holds what it is sent.
    let in_b = book(&node, "f1", params(Some("B")))
        .await
        .expect("B serves");
    let held = {
        let node = node.node().clone();
        tokio::spawn(async move { book(&node, "f1", params(Some("A"))).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!held.is_finished(), "A ran a command during the change");

    // Storage answers again: the old record is written back and A runs
    // what it held, in the old layout.
    gate.refuse_records(false);
    let in_a = held.await.expect("task").expect("the held booking runs");
    assert!(in_a.spot == Some(spot_of("A", 0)) || in_a.spot == Some(spot_of("A", 1)));
    let spots = every_spot(&[before.clone(), grown.clone()]);
    let bookings = [in_a.id.clone(), in_b.id.clone()];
    assert_serves(&node, "f1", &before, &spots, &bookings).await;

    // And the change can be made now.
    node.put_facility(grown.clone()).await.expect("relayout");
    assert_serves(&node, "f1", &grown, &spots, &bookings).await;
    node.stop().await;
}
