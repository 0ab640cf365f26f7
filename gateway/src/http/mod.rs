//! HTTP handlers of contract §3, one module per resource (and the admin
//! backup stream of §8, the standard read views of §9 in [`open`]). Each
//! reads its typed ids and body, calls the node (bookings through
//! [`crate::bookings`]) and answers a typed shape of `parkme_protocol`
//! (or, in [`open`], of the standard it follows); [`openapi`] documents
//! them all.

pub mod backup;
pub mod bookings;
pub mod cluster;
pub mod facilities;
pub mod history;
pub mod open;
pub mod openapi;
pub mod ops;
