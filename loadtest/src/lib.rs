//! `parkme-loadtest`: drives a running ParkMe server the way a city does
//! (sensors reporting spots, apps booking and arriving, dashboards
//! watching), measures it from the outside and checks its invariants.
//!
//! Map of the crate, along one run:
//! - [`cli`]: the operator's flags, validated and bounded.
//! - [`scenario`]: what a scenario means in numbers (layouts, fates,
//!   storms, pauses) — the [`scenario::Plan`].
//! - [`api`]: the HTTP side of the contract (facilities, bookings, spots)
//!   and user JWTs; [`net`]: sockets bound to the chosen source addresses,
//!   websocket handshakes; [`wire`]: the sensor and stream messages.
//! - [`model`]: a seeded discrete-event model of cars arriving and leaving.
//! - [`sensors`]: one task per sensor connection (batches, in-flight
//!   window, acks, reconnects that resend what was not acked).
//! - [`apps`]: app tasks that book, arrive, leave, cancel or never show;
//!   [`stream`]: the app socket reader shared by apps and idle watchers.
//! - [`checks`]: the invariant checkers, pure functions over event logs
//!   (double bookings, lost acks, seq gaps).
//! - [`stats`]: live counters, histograms, the timeline; [`run`]: wires
//!   it all and returns the [`report::Report`]; [`html`]: its page.
//!
//! This crate must never target anything but the URL it is given, never
//! run unbounded (every loop ends at the deadline plus the drain), and never
//! trust the server: every frame is parsed, nothing it sends can panic us.

pub mod api;
pub mod apps;
pub mod checks;
pub mod cli;
pub mod ctx;
pub mod html;
pub mod model;
pub mod net;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sensors;
pub mod stats;
pub mod stream;
pub mod wire;

pub use cli::Cli;
pub use report::Report;
pub use run::run;

/// Everything that can stop a run before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("invalid option: {0}")]
    Config(String),
    #[error("setting up the run: {0}")]
    Setup(String),
    #[error("writing {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
}
