//! Opens the CQL (ScyllaDB or any CQL-compatible cluster) storage backend
//! from a `scylla://[user:password@]host1:9042,host2:9042/keyspace` URI,
//! with the login and TLS settings of [`CqlSettings`] (`PARKME_CQL_*`)
//! over what the URI says. The keyspace and tables are created if missing.
//! A cluster that cannot be reached at start-up, refuses the login, or
//! fails the TLS handshake stops the process with a clear error naming
//! which (an orchestrator restarts it); once running, outages surface as
//! 503s and `/health/` 503.
//!
//! This module must never put the CQL password in an error or a log line.

use std::sync::Arc;

use parkme_storage::Storage;
use parkme_storage::cql::{CqlStorage, CqlUri, redact_uri};

use crate::app::GatewayError;
use crate::config::CqlSettings;

pub async fn open(uri: &str, settings: &CqlSettings) -> Result<Arc<dyn Storage>, GatewayError> {
    let shown = redact_uri(uri);
    let mut target = CqlUri::parse(uri).map_err(|e| GatewayError::Storage(e.to_string()))?;
    settings
        .apply(&mut target)
        .map_err(|e| GatewayError::Storage(format!("{e} ({shown})")))?;
    let storage = CqlStorage::connect_to(target)
        .await
        .map_err(|e| GatewayError::Storage(format!("{e} ({shown})")))?;
    tracing::info!(
        keyspace = storage.keyspace(),
        "connected to the CQL cluster"
    );
    Ok(Arc::new(storage))
}
