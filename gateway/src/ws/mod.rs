//! Websockets of contract §4 (sensors) and §5 (apps).
//!
//! Map of the module:
//! - [`sensor`]: `GET /v1/sensors/{fid}`: key check at the handshake,
//!   pipelined dispatch to the node, cumulative acks ([`acks`]).
//! - [`stream`]: `GET /v1/stream`: subscriptions with snapshots and
//!   gap-free deltas, booking ops; per-connection [`outbox`] that
//!   conflates for slow readers.
//! - the messages of both sockets and their encodings are the protocol
//!   crate's (`parkme_protocol::sensor`, `parkme_protocol::app`).
//! - [`bulk`]: the sensor sockets' own runtime at the lowest CPU
//!   priority, so bookings go first when sensors saturate the cores.
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
pub mod bulk;
pub mod guard;
pub mod outbox;
pub mod sensor;
pub mod socket;
pub mod stream;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;

use crate::error::ApiError;

/// A request to a socket route that is not a websocket upgrade.
fn not_an_upgrade(rejection: &WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        "websocket_upgrade_required",
        "this endpoint speaks websocket: send an upgrade request",
    )
}
