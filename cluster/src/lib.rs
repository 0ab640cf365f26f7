//! ParkMe's cluster rules, as pure state machines (time and observations
//! in, actions out), so every interleaving can be tested without sockets.
//!
//! Map of the crate:
//! - [`member`]: node names, incarnations, the membership record.
//! - [`placement`]: which node should own each facility (rendezvous
//!   hashing with a load cap), the same answer on every node.
//! - [`ownership`]: one node's leases and handoffs: what to acquire, hand
//!   over or drop at each tick.
//!
//! Safety never rests on this crate: the store's epochs fence a writer
//! that lost its lease. What rests here is liveness and balance: every
//! facility gets one owner within a lease period of a failure, and loads
//! stay within the contract's bound.
//!
//! This crate must never do I/O, read a clock, spawn a task or depend on
//! an async runtime.

pub mod error;
pub mod member;
pub mod ownership;
pub mod placement;

pub use error::ClusterError;
pub use member::{Incarnation, Member, NodeId, NodeName, NodeStatus};
pub use ownership::{Action, Holding, Observation, Ownership, OwnershipConfig};
pub use placement::{Placement, load_cap, place};
