//! ParkMe's cluster coordination over Redis, and the async shell that
//! drives [`parkme_cluster::Ownership`].
//!
//! Map of the crate:
//! - [`redis_ops`]: the Redis side: membership (a sorted set scored by
//!   expiry on Redis's own clock, so node clocks never matter), one lease
//!   key per facility taken, renewed and released by compare-and-set
//!   scripts, the facility epochs shown by `GET /v1/cluster`.
//!
//! Redis here decides who *should* own a facility, never who *can* write:
//! the store's epochs fence a writer that lost its lease (a paused process,
//! a Redis failover that lost a key). So nothing in this crate is on the
//! safety path, and Redis trouble only delays moves.
//!
//! This crate must never write to the store, and never log a Redis URL
//! (it may carry a password).

pub mod driver;
pub mod error;
pub mod redis_ops;

pub use driver::{ClusterView, Driver, DriverConfig, Host};
pub use error::CoordError;
pub use redis_ops::{Coordination, Renewal};
