//! ParkMe's durability layer: everything that must survive `kill -9`.
//!
//! Map of the crate:
//! - [`model`]: what is stored: zone keys, writer epochs, the [`Write`]s of
//!   one commit, what an upkeep run removed.
//! - [`backend`]: the one [`Storage`] trait every backend implements,
//!   including the streaming listings (zones, bookings, idempotency keys)
//!   and `clear` that backup and restore drive.
//! - [`memory`]: an in-memory backend, for tests only.
//! - [`embedded`]: the on-disk default: a write-ahead log in front of redb,
//!   under the data dir.
//! - [`cql`]: ScyllaDB or any CQL cluster (`scylla://h1:9042,h2/keyspace`).
//! - [`group_commit`]: batches the writes of many zones into one durable
//!   commit (one fsync for a burst of bookings) and fails a zone fast after
//!   one of its commits failed.
//! - `conformance` (feature `testsuite`, for this crate's tests and any
//!   future backend's): the suite every backend must pass.
//! - [`metrics`]: every metric family of this crate, named once.
//!
//! Values are opaque bytes here: encoding belongs to `parkme_engine::codec`.
//! This crate must never acknowledge a write that is not durable, and never
//! decide anything about the domain.

pub mod backend;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod cql;
pub mod embedded;
pub mod error;
pub mod group_commit;
pub mod memory;
pub mod metrics;
pub mod model;
mod record_fence;

pub use backend::Storage;
pub use error::StorageError;
pub use group_commit::GroupCommit;
pub use model::{Epoch, HistorySample, StoredBooking, StoredKey, Upkeep, Write, ZoneKey};
