//! One sensor reading, as the domain sees it: parsed once at the edge from
//! whatever the wire carried (JSON, bincode), routed by the node to the
//! zone it concerns, and turned into the zone's command there.
//!
//! This module must never know a wire format or a clock: a reading is a
//! validated value; when it happened is the zone's to say.

use bincode::{Decode, Encode};

use crate::ids::{Plate, SpotId, ZoneId};
use crate::kinds::PlateDirection;

/// What one sensor saw.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Reading {
    /// A spot sensor: the spot is now occupied or free.
    Spot { spot: SpotId, occupied: bool },
    /// A counter at a zone's entrance: cars in (positive) or out.
    Count { zone: ZoneId, delta: i32 },
    /// A plate read at a gate of the facility.
    Plate {
        plate: Plate,
        direction: PlateDirection,
    },
    /// The sensor is alive; changes nothing.
    Heartbeat { sensor: String },
}
