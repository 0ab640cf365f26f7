//! The gateway's integration tests: one test binary, one harness
//! ([`helpers`]). Every test starts the real `parkme` binary and talks to
//! it over real sockets, as the contract's clients would; one module per
//! area of the contract. No test runs cargo or skips itself.

mod helpers;

mod backup_restore;
mod clock_jump;
mod cluster;
mod cql_backend;
mod cql_secure;
mod dashboard;
mod disk_faults;
mod edge_security;
mod history;
mod http_api;
mod http_errors;
mod http_fuzz;
mod http_ops;
mod layout_atomic;
mod liveness;
mod open_interfaces;
mod openapi;
mod redis_coordination;
mod redis_faults;
mod reservations;
mod slow_clients;
mod ws_sensor;
mod ws_stream;
