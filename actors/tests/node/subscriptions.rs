//! What readers see: a snapshot, then gap-free deltas; `since` resumes
//! from history; a reader that applies what it is sent ends up with the
//! facility's state.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parkme_actors::{Delta, Node, Start, Subscription, ZoneView};
use parkme_engine::{Seq, SpotId, SpotView, ZoneId};

use crate::helpers::*;

/// A reader's copy of a facility, built only from what it was sent.
#[derive(Debug, Default)]
pub struct Replica {
    pub seq: Seq,
    pub zones: HashMap<ZoneId, ZoneView>,
    pub spots: HashMap<SpotId, SpotView>,
}

impl Replica {
    pub fn apply(&mut self, delta: &Delta) {
        assert_eq!(
            delta.prev, self.seq,
            "delta {}..{} does not follow seq {}",
            delta.prev, delta.seq, self.seq
        );
        assert!(delta.seq > delta.prev, "a delta moves the seq forward");
        self.seq = delta.seq;
        if delta.relaid {
            // A relaid delta carries every spot of the zones it lists.
            self.spots
                .retain(|_, s| !delta.zones.iter().any(|z| z.id == s.zone));
        }
        for zone in &delta.zones {
            self.zones.insert(zone.id.clone(), zone.clone());
        }
        for spot in &delta.spots {
            self.spots.insert(spot.id.clone(), spot.clone());
        }
    }

    /// Starts from a subscription's start; `self` must be at the reader's
    /// `since` when it resumes.
    pub fn start(&mut self, start: &Start) {
        match start {
            Start::Snapshot(snapshot) => {
                self.seq = snapshot.view.seq;
                self.zones = snapshot
                    .view
                    .zones
                    .iter()
                    .map(|z| (z.id.clone(), z.clone()))
                    .collect();
                self.spots = snapshot
                    .spots
                    .iter()
                    .map(|s| (s.id.clone(), s.clone()))
                    .collect();
            }
            Start::Resume(deltas) => deltas.iter().for_each(|d| self.apply(d)),
        }
    }

    /// Applies deltas until the replica reaches `seq`.
    pub async fn follow_to(&mut self, sub: &mut Subscription, seq: Seq) {
        while self.seq < seq {
            let delta: Arc<Delta> =
                tokio::time::timeout(Duration::from_secs(5), sub.updates.recv())
                    .await
                    .unwrap_or_else(|_| panic!("no delta past {} (want {seq})", self.seq))
                    .expect("subscription open and not lagging");
            self.apply(&delta);
        }
        assert_eq!(self.seq, seq, "overshot the facility seq");
    }

    /// Checks the replica against the facility's read model.
    pub async fn assert_matches(&self, node: &Node, f: &str) {
        let view = node.facility(&fid(f)).await.expect("view");
        assert_eq!(self.seq, view.seq);
        for zone in &view.zones {
            assert_eq!(
                self.zones.get(&zone.id),
                Some(zone),
                "zone {} as the reader sees it",
                zone.id
            );
        }
        assert_eq!(self.zones.len(), view.zones.len(), "the reader's zones");
        assert_eq!(
            &spot_states(node, f).await,
            &self.spots,
            "the reader's spots"
        );
    }
}

async fn seq(node: &Node, f: &str) -> Seq {
    node.facility(&fid(f)).await.expect("view").seq
}

/// A mix of changes across zones, some concurrent.
async fn churn(node: &TestNode, f: &str) {
    let mut tasks = Vec::new();
    for zone in ["A", "B", "A", "B", "A"] {
        let node = node.node().clone();
        let f = f.to_owned();
        tasks.push(tokio::spawn(async move {
            book(&node, &f, params(Some(zone))).await.expect("booked")
        }));
    }
    let mut booked = Vec::new();
    for task in tasks {
        booked.push(task.await.expect("task"));
    }
    let first = booked[0].spot.clone().expect("spot");
    sense(node, f, vec![spot_reading(&first, true)]).await;
    node.cancel(&booked[1]).await.expect("cancelled");
    sense(
        node,
        f,
        vec![
            spot_reading(&spot_of("B", 3), true),
            spot_reading(&spot_of("A", 3), true),
        ],
    )
    .await;
    node.set_service(&fid(f), &spot_of("B", 2), true)
        .await
        .expect("out of service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_a_snapshot_then_gap_free_deltas() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 4), spot_zone("B", 4)])).await;
    book(&node, "f1", params(Some("A"))).await.expect("booked");

    let mut sub = node.subscribe(&fid("f1"), None).await.expect("subscribed");
    let Start::Snapshot(snapshot) = &sub.start else {
        panic!("a new subscriber starts with a snapshot");
    };
    assert_eq!(snapshot.view.seq, seq(&node, "f1").await);
    let mut replica = Replica::default();
    replica.start(&sub.start);
    replica.assert_matches(&node, "f1").await;

    churn(&node, "f1").await;
    let target = seq(&node, "f1").await;
    assert!(target > snapshot.view.seq);
    replica.follow_to(&mut sub, target).await;
    replica.assert_matches(&node, "f1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_resumes_from_history() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 4), spot_zone("B", 4)])).await;
    let first = node.subscribe(&fid("f1"), None).await.expect("subscribed");
    let mut replica = Replica::default();
    replica.start(&first.start);
    drop(first);

    churn(&node, "f1").await;
    let mut resumed = node
        .subscribe(&fid("f1"), Some(replica.seq))
        .await
        .expect("subscribed");
    let Start::Resume(deltas) = &resumed.start else {
        panic!("the history still covers seq {}", replica.seq);
    };
    assert!(!deltas.is_empty());
    replica.start(&resumed.start);
    replica.assert_matches(&node, "f1").await;

    // Live deltas continue right after the history.
    book(&node, "f1", params(Some("B"))).await.expect("booked");
    replica
        .follow_to(&mut resumed, seq(&node, "f1").await)
        .await;
    replica.assert_matches(&node, "f1").await;

    // Already up to date: nothing to replay.
    let current = node
        .subscribe(&fid("f1"), Some(replica.seq))
        .await
        .expect("subscribed");
    assert!(matches!(&current.start, Start::Resume(d) if d.is_empty()));

    // A seq this facility never reached gets a fresh snapshot.
    let future = node
        .subscribe(&fid("f1"), Some(Seq(replica.seq.0 + 1000)))
        .await
        .expect("subscribed");
    assert!(matches!(&future.start, Start::Snapshot(s) if s.view.seq == replica.seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_at_one_seq_share_one_snapshot_and_its_encodings() {
    let node =
        TestNode::memory_with(facility("f1", vec![spot_zone("A", 4), spot_zone("B", 4)])).await;
    book(&node, "f1", params(Some("A"))).await.expect("booked");
    let snapshot_of = |sub: &Subscription| match &sub.start {
        Start::Snapshot(snapshot) => Arc::clone(snapshot),
        Start::Resume(_) => panic!("a new subscriber starts with a snapshot"),
    };
    let first = snapshot_of(&node.subscribe(&fid("f1"), None).await.expect("subscribed"));
    // The edge fills the encoding once; later subscribers at this seq get
    // the same snapshot, encoding included: nothing is rebuilt or
    // re-encoded however many subscribe.
    let encoded = Arc::<str>::from("{\"t\":\"snapshot\"}");
    let slot = first
        .edge
        .get_or_default::<OnceLock<Arc<str>>>()
        .expect("slot");
    assert!(slot.set(Arc::clone(&encoded)).is_ok());
    for _ in 0..40 {
        let again = snapshot_of(&node.subscribe(&fid("f1"), None).await.expect("subscribed"));
        assert!(Arc::ptr_eq(&first, &again), "the same snapshot at one seq");
        let cached = again
            .edge
            .get_or_default::<OnceLock<Arc<str>>>()
            .and_then(OnceLock::get);
        assert!(cached.is_some_and(|text| Arc::ptr_eq(text, &encoded)));
    }
    // A change makes a new one, shared in turn.
    churn(&node, "f1").await;
    let fresh = snapshot_of(&node.subscribe(&fid("f1"), None).await.expect("subscribed"));
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert!(fresh.view.seq > first.view.seq);
    let again = snapshot_of(&node.subscribe(&fid("f1"), None).await.expect("subscribed"));
    assert!(Arc::ptr_eq(&fresh, &again));
}
