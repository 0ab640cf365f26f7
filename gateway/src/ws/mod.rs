//! Websockets of contract §4 (sensors) and §5 (apps).
//!
//! Map of the module:
//! - [`sensor`]: `GET /v1/sensors/{fid}`: key check at the handshake,
//!   pipelined dispatch to the node, cumulative acks ([`acks`]).
//! - [`stream`]: `GET /v1/stream`: subscriptions with snapshots and
//!   gap-free deltas, booking ops; per-connection [`outbox`] that
//!   conflates for slow readers.
//! - [`protocol`]: every message of both sockets and its encodings (JSON,
//!   and bincode through `parkme_engine::codec`).
//! - [`socket`]: what both share: limits, the writer, close codes,
//!   liveness, the connection gauge.
//! - [`guard`]: the app socket's caps: sockets per IP, op rates per
//!   socket and per IP, the merge bound of slow readers.
//!
//! Where the contract is silent (to be mirrored in the README):
//! - sensor error frames carry `message` too, and omit `seq` when the
//!   frame was unreadable; codes: `malformed_message`, `unknown_spot`,
//!   `unknown_zone`, `invalid_plate`, the engine's codes, and
//!   `storage_unavailable`/`unavailable` (retry: nothing was applied);
//! - with out-of-order seqs the ack is the largest answered seq below
//!   every pending one; a resent (already acked) seq is acked again;
//! - `detail` defaults to `zones`; snapshots also carry the facility
//!   `name`; app errors about a facility carry `facility`; `req` is echoed
//!   as sent (any JSON value); `book` also takes `spot`, `hold_seconds`
//!   and `idempotency_key`; `unsubscribe` has no reply;
//! - both sockets: frames up to 64 KiB, a ping after 20 s of silence, a
//!   peer silent 50 s is dropped; at most 256 facilities per app socket;
//! - app socket: sockets per IP and ops per socket and per IP are capped
//!   (429 `too_many_connections` at the handshake; `rate_limited` error
//!   frames; 1008 for a flood); a slow reader's merge is bounded and
//!   replaced by a fresh snapshot; a user token's expiry turns booking ops
//!   into `token_expired` errors while reading goes on.
//!
//! Every connection loop selects on the application's shutdown token and
//! closes with 1001. This module must never hold unbounded state per
//! connection, nor ack a sensor message before the node says it is
//! durable (or refused).

pub mod acks;
pub mod guard;
pub mod outbox;
pub mod protocol;
pub mod sensor;
pub mod socket;
pub mod stream;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::routing::get;

use crate::app::AppState;
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    describe_metrics();
    Router::new()
        .route("/v1/sensors/{fid}", get(sensor::handshake))
        .route("/v1/stream", get(stream::handshake))
}

/// A request to a socket route that is not a websocket upgrade.
fn not_an_upgrade(rejection: &WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        "websocket_upgrade_required",
        "this endpoint speaks websocket: send an upgrade request",
    )
}

/// Registers the websocket families so a scrape shows them before the
/// first connection.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "parkme_ws_messages_in_total",
        "Websocket frames received (sensor frames, app ops) by kind."
    );
    describe_counter!(
        "parkme_ws_messages_out_total",
        "Websocket frames sent by kind."
    );
    describe_counter!("parkme_ws_acks_total", "Cumulative acks sent to sensors.");
    describe_counter!(
        "parkme_ws_conflations_total",
        "Deltas folded into a merged delta for a subscriber that is behind."
    );
    describe_counter!(
        "parkme_ws_snapshot_resends_total",
        "Fresh snapshots sent to subscribers that lagged, outgrew the merge bound or saw a layout change."
    );
    describe_counter!(
        "parkme_ws_merges_dropped_total",
        "Merged deltas dropped because a slow app socket outgrew PARKME_WS_MERGE_MAX (a fresh snapshot follows)."
    );
    describe_counter!(
        "parkme_ws_refused_total",
        "App socket handshakes and ops refused by reason: sockets_per_ip, rate_limited, op_flood."
    );
    describe_histogram!(
        "parkme_delivery_latency_seconds",
        Unit::Seconds,
        "From a delta's publication (after its commit) to its hand-off to a subscriber's socket; one delivery in 8 per connection is sampled."
    );
    for kind in ["sensor", "app"] {
        metrics::counter!("parkme_ws_messages_in_total", "kind" => kind).increment(0);
        metrics::counter!("parkme_ws_messages_out_total", "kind" => kind).increment(0);
    }
    metrics::counter!("parkme_ws_acks_total").increment(0);
    metrics::counter!("parkme_ws_conflations_total").increment(0);
    metrics::counter!("parkme_ws_snapshot_resends_total").increment(0);
    metrics::counter!("parkme_ws_merges_dropped_total").increment(0);
    for reason in ["sockets_per_ip", "rate_limited", "op_flood"] {
        metrics::counter!("parkme_ws_refused_total", "reason" => reason).increment(0);
    }
    let _ = metrics::histogram!("parkme_delivery_latency_seconds");
}
