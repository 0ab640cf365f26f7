//! ParkMe's edge: everything that speaks HTTP or websockets.
//!
//! Map of the crate, along the data path:
//! - [`config`]: the one configuration struct (flags + `PARKME_*` env).
//! - [`app`]: builds storage, the actor node and the [`state`] every
//!   handler shares; runs and drains the server; [`routes`]: the router.
//! - [`server`]: the HTTP server under the router: connection caps and
//!   header/idle timeouts (Slowloris).
//! - [`guard`]: the middleware before every handler: client address
//!   ([`peer`]: trusted proxies, websocket origins), failed-auth limit.
//! - [`extract`], [`auth`], [`rate_limit`]: who is calling and whether
//!   they may.
//! - [`http`]: the REST handlers of contract §3; [`bookings`]: the one
//!   bookings service behind HTTP and the app socket.
//! - [`ws`]: the sensor and app websockets of contract §4–5.
//! - [`wire`]: the actors' views as `parkme_protocol`'s wire shapes, and
//!   their encodings cached once per shared snapshot or delta.
//! - [`dashboard`]: the live page at `/`; [`demo`]: the demo city.
//! - [`telemetry`]: tracing and the Prometheus recorder; [`metrics`]:
//!   every family of the edge, named once; [`redis`]: Redis
//!   coordination; [`cql`]: the CQL backend's entry.
//! - [`cluster`]: cluster mode (§7): membership and ownership through
//!   `parkme-coord`, requests routed to a facility's owner.
//! - [`error`]: every failure as `{"error":{"code","message"}}`.
//!
//! This crate must never decide domain rules (that is `parkme_engine`) or
//! hold live state (that is `parkme_actors`); it translates and guards.

pub mod app;
pub mod auth;
pub mod bookings;
pub mod cluster;
pub mod config;
pub mod cql;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod extract;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod peer;
pub mod rate_limit;
pub mod redis;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod wire;
pub mod ws;

pub use app::Application;
pub use config::Config;
pub use state::AppState;
