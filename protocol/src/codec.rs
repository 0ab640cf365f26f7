//! The wire encodings: bincode 2 standard config through the engine's one
//! codec module (re-exported here, so nothing else names bincode), and
//! the size limit of a websocket frame.
//!
//! This module must never grow a second encoder: it only re-exports.

pub use parkme_engine::codec::{CodecError, decode_wire, decode_wire_batch, encode_wire};

/// Largest websocket frame either socket accepts (64 KiB); larger closes
/// the connection with 1009.
pub const MAX_FRAME: usize = 64 * 1024;
