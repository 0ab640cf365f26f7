//! Sensor keys: one check against the named facility, another facility's
//! key told apart from a wrong one, rotation that revokes the old key at
//! once and survives a restart, layout changes that keep the key.

use parkme_actors::record::hash_key;
use parkme_actors::{KeyCheck, NodeConfig};
use parkme_storage::embedded::EmbeddedStorage;
use std::sync::Arc;

use crate::helpers::*;

fn config() -> NodeConfig {
    NodeConfig {
        key_secret: b"a-long-enough-sensor-key-secret".to_vec(),
        ..NodeConfig::default()
    }
}

async fn embedded(dir: &std::path::Path) -> TestNode {
    let storage = EmbeddedStorage::open(dir).expect("open embedded storage");
    TestNode::start_with(Arc::new(storage), config()).await
}

#[tokio::test]
async fn a_key_is_valid_for_its_facility_only_and_another_facilitys_key_is_told_apart() {
    let node = TestNode::start_with(
        Arc::new(parkme_storage::memory::MemoryStorage::new()),
        config(),
    )
    .await;
    for f in ["f1", "f2", "f3"] {
        node.put_facility(facility(f, vec![spot_zone("A", 2)]))
            .await
            .expect("facility");
    }
    let k1 = node.sensor_key(&fid("f1")).expect("key");
    let k2 = node.sensor_key(&fid("f2")).expect("key");
    assert_ne!(k1, k2);
    assert_eq!(node.check_sensor_key(&fid("f1"), &k1), KeyCheck::Valid);
    assert_eq!(node.check_sensor_key(&fid("f1"), &k2), KeyCheck::Foreign);
    assert_eq!(
        node.check_sensor_key(&fid("f1"), "sk_nope"),
        KeyCheck::Wrong
    );
    assert_eq!(
        node.check_sensor_key(&fid("nope"), &k1),
        KeyCheck::UnknownFacility
    );
    node.stop().await;
}

#[tokio::test]
async fn a_rotated_key_replaces_the_old_one_at_once_and_open_sockets_are_told() {
    let node = TestNode::start_with(
        Arc::new(parkme_storage::memory::MemoryStorage::new()),
        config(),
    )
    .await;
    node.put_facility(facility("f1", vec![spot_zone("A", 2)]))
        .await
        .expect("facility");
    let old = node.sensor_key(&fid("f1")).expect("key");
    let mut watch = node.watch_sensor_key(&fid("f1")).expect("watch");
    assert!(watch.borrow_and_update().is(&hash_key(&old)));

    let new = node.rotate_sensor_key(&fid("f1")).await.expect("rotated");
    assert_ne!(new, old);
    assert_eq!(node.check_sensor_key(&fid("f1"), &new), KeyCheck::Valid);
    assert_eq!(node.check_sensor_key(&fid("f1"), &old), KeyCheck::Wrong);
    assert_eq!(node.sensor_key(&fid("f1")).expect("key"), new);
    assert!(watch.has_changed().expect("sender alive"));
    assert!(watch.borrow_and_update().is(&hash_key(&new)));

    // A layout PUT keeps the current key and does not wake the watchers.
    node.put_facility(facility("f1", vec![spot_zone("A", 3)]))
        .await
        .expect("relayout");
    assert_eq!(node.sensor_key(&fid("f1")).expect("key"), new);
    assert_eq!(node.check_sensor_key(&fid("f1"), &new), KeyCheck::Valid);
    assert!(!watch.has_changed().expect("sender alive"));
    assert!(
        node.rotate_sensor_key(&fid("nope")).await.is_err(),
        "no key for an unknown facility"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_rotated_key_survives_a_restart_and_the_old_one_stays_revoked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = embedded(dir.path()).await;
    node.put_facility(facility("f1", vec![spot_zone("A", 2)]))
        .await
        .expect("facility");
    let first = node.sensor_key(&fid("f1")).expect("key");
    let second = node.rotate_sensor_key(&fid("f1")).await.expect("rotated");
    let third = node.rotate_sensor_key(&fid("f1")).await.expect("rotated");
    node.stop().await;

    let node = embedded(dir.path()).await;
    assert_eq!(node.sensor_key(&fid("f1")).expect("key"), third);
    assert_eq!(node.check_sensor_key(&fid("f1"), &third), KeyCheck::Valid);
    for revoked in [&first, &second] {
        assert_eq!(node.check_sensor_key(&fid("f1"), revoked), KeyCheck::Wrong);
    }
    node.stop().await;
}
