//! The Redis side of coordination, against the real Redis of the test
//! command (`PARKME_TEST_REDIS`), each test under its own key prefix.

use std::time::Duration;

use parkme_cluster::{Incarnation, Member, NodeId, NodeName, NodeStatus};
use parkme_coord::{Coordination, Renewal};
use parkme_engine::FacilityId;

fn redis_url() -> String {
    std::env::var("PARKME_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6399".into())
}

async fn coordination(lease: Duration) -> Coordination {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis reachable (the test command starts it)");
    let prefix = format!("coord-test-{:016x}:", rand::random::<u64>());
    Coordination::new(conn, &prefix, lease, Duration::from_secs(2))
}

fn node(name: &str, incarnation: u64) -> NodeId {
    NodeId::new(
        NodeName::parse(name).expect("name"),
        Incarnation(incarnation),
    )
}

fn member(id: &NodeId) -> Member {
    Member {
        id: id.clone(),
        url: format!("http://{}:8080", id.name),
        status: NodeStatus::Up,
    }
}

fn fid(s: &str) -> FacilityId {
    FacilityId::parse(s).expect("facility id")
}

#[tokio::test]
async fn an_announced_member_is_listed_until_its_announcement_lapses() {
    let coord = coordination(Duration::from_millis(400)).await;
    let a = node("a", 1);
    coord.announce(&member(&a)).await.expect("announce");
    let members = coord.members().await.expect("members");
    assert_eq!(members, vec![member(&a)]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(coord.members().await.expect("members").is_empty());
}

#[tokio::test]
async fn a_member_that_leaves_is_gone_at_once() {
    let coord = coordination(Duration::from_secs(30)).await;
    let (a, b) = (node("a", 1), node("b", 1));
    coord.announce(&member(&a)).await.expect("announce");
    coord.announce(&member(&b)).await.expect("announce");
    coord.leave(&a).await.expect("leave");
    assert_eq!(coord.members().await.expect("members"), vec![member(&b)]);
}

#[tokio::test]
async fn of_two_racing_takers_exactly_one_gets_the_lease() {
    let coord = coordination(Duration::from_secs(30)).await;
    let f = fid("f1");
    let (a, b) = (node("a", 1), node("b", 1));
    let (ta, tb) = tokio::join!(coord.take(&f, None, &a), coord.take(&f, None, &b));
    let (ta, tb) = (ta.expect("take"), tb.expect("take"));
    assert!(ta ^ tb, "exactly one taker wins: {ta} {tb}");
    let holder = coord
        .leases(std::slice::from_ref(&f))
        .await
        .expect("leases");
    assert_eq!(holder.get(&f), Some(if ta { &a } else { &b }));
}

#[tokio::test]
async fn a_lease_held_by_a_gone_process_is_taken_only_by_compare_and_set() {
    let coord = coordination(Duration::from_secs(30)).await;
    let f = fid("f1");
    let (old, new, other) = (node("a", 1), node("a", 2), node("b", 1));
    assert!(coord.take(&f, None, &old).await.expect("take"));
    assert!(
        !coord.take(&f, None, &new).await.expect("take"),
        "held: not free"
    );
    assert!(
        !coord.take(&f, Some(&other), &new).await.expect("take"),
        "wrong holder"
    );
    assert!(coord.take(&f, Some(&old), &new).await.expect("take"));
    let holder = coord
        .leases(std::slice::from_ref(&f))
        .await
        .expect("leases");
    assert_eq!(holder.get(&f), Some(&new));
}

#[tokio::test]
async fn renewals_extend_ours_retake_lapsed_ones_and_report_lost_ones() {
    let coord = coordination(Duration::from_millis(500)).await;
    let (mine, lapsed, theirs) = (fid("mine"), fid("lapsed"), fid("theirs"));
    let (a, b) = (node("a", 1), node("b", 1));
    assert!(coord.take(&mine, None, &a).await.expect("take"));
    assert!(coord.take(&theirs, None, &b).await.expect("take"));
    let all = [mine.clone(), lapsed.clone(), theirs.clone()];
    let outcomes = coord.renew(&all, &a).await.expect("renew");
    assert_eq!(
        outcomes,
        vec![Renewal::Renewed, Renewal::Retaken, Renewal::Lost]
    );
    // Renewed leases outlive their first TTL.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        coord.renew(&all[..2], &a).await.expect("renew");
    }
    let holders = coord.leases(&all).await.expect("leases");
    assert_eq!(holders.get(&mine), Some(&a));
    assert_eq!(holders.get(&lapsed), Some(&a));
    assert_eq!(holders.get(&theirs), None, "b never renewed: lapsed");
}

#[tokio::test]
async fn only_the_holder_releases_a_lease() {
    let coord = coordination(Duration::from_secs(30)).await;
    let f = fid("f1");
    let (a, b) = (node("a", 1), node("b", 1));
    assert!(coord.take(&f, None, &a).await.expect("take"));
    assert!(!coord.release(&f, &b).await.expect("release"));
    assert!(coord.release(&f, &a).await.expect("release"));
    assert!(
        coord
            .leases(std::slice::from_ref(&f))
            .await
            .expect("leases")
            .is_empty()
    );
    assert!(
        coord.take(&f, None, &b).await.expect("take"),
        "free after release"
    );
}

#[tokio::test]
async fn facility_epochs_are_recorded_for_the_cluster_view() {
    let coord = coordination(Duration::from_secs(30)).await;
    coord.set_epoch(&fid("f1"), 3).await.expect("set");
    coord.set_epoch(&fid("f2"), 7).await.expect("set");
    coord.set_epoch(&fid("f1"), 4).await.expect("set");
    let epochs = coord.epochs().await.expect("epochs");
    assert_eq!(epochs.get(&fid("f1")), Some(&4));
    assert_eq!(epochs.get(&fid("f2")), Some(&7));
}
