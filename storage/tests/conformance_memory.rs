//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use parkme_storage::Storage;
use parkme_storage::memory::MemoryStorage;

async fn backend() -> (Arc<dyn Storage>, ()) {
    (Arc::new(MemoryStorage::new()), ())
}

parkme_storage::conformance_suite!(backend());
parkme_storage::conformance_exclusive_suite!(backend());
