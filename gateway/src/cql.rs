//! Opens the CQL (ScyllaDB) storage backend from a `scylla://` URI.

use std::sync::Arc;

use parkme_storage::Storage;

use crate::app::GatewayError;

pub async fn open(uri: &str) -> Result<Arc<dyn Storage>, GatewayError> {
    Err(GatewayError::Storage(format!(
        "the CQL backend is not available in this build ({uri})"
    )))
}
