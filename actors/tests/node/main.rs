//! Integration tests of the actors crate through its API, [`Node`]: one
//! test per promise of the contract's domain (§2) and of the readers'
//! stream (§5), on the memory backend unless durability is the point.
//!
//! [`Node`]: parkme_actors::Node

mod booking;
mod durability;
mod expiry;
mod gated;
mod helpers;
mod keys;
mod layout;
mod layout_crash;
mod layout_races;
mod retention;
mod sensors;
mod subscriptions;
mod supervision;
