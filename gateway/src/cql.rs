//! Opens the CQL (ScyllaDB or any CQL-compatible cluster) storage backend
//! from a `scylla://host1:9042,host2:9042/keyspace` URI. The keyspace and
//! tables are created if missing. A cluster that cannot be reached at
//! start-up stops the process with a clear error (an orchestrator restarts
//! it); once running, outages surface as 503s and `/health/` 503.

use std::sync::Arc;

use parkme_storage::Storage;
use parkme_storage::cql::CqlStorage;

use crate::app::GatewayError;

pub async fn open(uri: &str) -> Result<Arc<dyn Storage>, GatewayError> {
    let storage = CqlStorage::connect(uri)
        .await
        .map_err(|e| GatewayError::Storage(format!("{e} ({uri})")))?;
    tracing::info!(
        keyspace = storage.keyspace(),
        "connected to the CQL cluster"
    );
    Ok(Arc::new(storage))
}
