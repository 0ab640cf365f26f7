//! The conformance suite against the embedded (redb) backend, each test on
//! a fresh data directory.

use std::sync::Arc;

use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use tempfile::TempDir;

async fn backend() -> (Arc<dyn Storage>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = EmbeddedStorage::open(dir.path()).expect("open embedded storage");
    (Arc::new(storage), dir)
}

parkme_storage::conformance_suite!(backend());
parkme_storage::conformance_exclusive_suite!(backend());
