//! HTTP handlers of contract §3, one module per resource. Each reads its
//! typed ids and body, calls the node (bookings through
//! [`crate::bookings`]) and answers a typed shape of `parkme_protocol`.

pub mod bookings;
pub mod cluster;
pub mod facilities;
pub mod ops;
