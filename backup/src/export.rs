//! Reading a live store into a backup body, in the order that makes the
//! restored store consistent (the crate docs give the argument):
//!
//! 1. the facility records, and for each its zones, one at a time: the
//!    latest snapshot with the journal tail replayed onto it
//!    (`parkme_actors::zone::recover`, read again if a snapshot trimmed the
//!    journal between the two reads), plus the bookings that tail ended;
//! 2. the facility records again: a facility whose layout changed
//!    meanwhile (or that is new) is read again, as a later section;
//! 3. every booking record, then every live idempotency key, each a
//!    streaming listing;
//! 4. `End`, with the counts.
//!
//! Memory holds one zone, one listing page and a digest per facility.
//! This module must never write to the store it reads.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use parkme_actors::ActorError;
use parkme_actors::record::FacilityRecord;
use parkme_engine::codec;
use parkme_engine::{EngineError, FacilityId, Millis, ZoneLayout, ZoneShape};
use parkme_storage::{Storage, ZoneKey};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

use crate::error::BackupError;
use crate::format::{Begin, BodyWriter, BookingEntry, Entry, FacilityEntry, KeyEntry, ZoneEntry};

/// Reads of one zone before giving up on a journal that keeps being
/// trimmed under it.
const ZONE_ATTEMPTS: usize = 8;
/// Rounds of re-reading facilities whose layout changed during the backup.
const LAYOUT_ROUNDS: usize = 3;

/// What the exporter needs to know beyond the store.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// How long the record of an ended booking is kept after it ended
    /// (`PARKME_BOOKING_RETENTION_DAYS`), for the bookings a zone's tail
    /// ended whose record the store may not have written yet.
    pub booking_retention_ms: i64,
    pub parkme_version: String,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn decode_record(id: &FacilityId, bytes: &[u8]) -> Result<FacilityRecord, BackupError> {
    FacilityRecord::decode(bytes)
        .map_err(|e| ActorError::Corrupt(format!("facility record {id}: {e}")).into())
}

fn spots_of(layout: &ZoneLayout) -> u64 {
    match &layout.shape {
        ZoneShape::Spots(spots) => spots.len() as u64,
        ZoneShape::Counter { .. } => 0,
    }
}

/// Writes a whole backup body of `storage` (from `Begin` to `End`).
pub async fn export<W: AsyncWrite + Unpin + Send>(
    storage: &dyn Storage,
    options: &ExportOptions,
    out: &mut BodyWriter<W>,
) -> Result<(), BackupError> {
    let facilities = storage.facilities().await?;
    let mut planned_zones = 0;
    for (id, bytes) in &facilities {
        planned_zones += decode_record(id, bytes)?.layout.zones.len() as u64;
    }
    out.entry(&Entry::Begin(Begin {
        created_at: Millis::system_now(),
        source: storage.name().to_owned(),
        parkme_version: options.parkme_version.clone(),
        planned_facilities: facilities.len() as u64,
        planned_zones,
    }))
    .await?;
    let mut seen: HashMap<FacilityId, [u8; 32]> = HashMap::with_capacity(facilities.len());
    for (id, bytes) in facilities {
        seen.insert(id.clone(), digest(&bytes));
        export_facility(storage, options, out, id, bytes).await?;
    }
    for round in 0.. {
        let changed: Vec<(FacilityId, Vec<u8>)> = storage
            .facilities()
            .await?
            .into_iter()
            .filter(|(id, bytes)| seen.get(id) != Some(&digest(bytes)))
            .collect();
        if changed.is_empty() {
            break;
        }
        if round == LAYOUT_ROUNDS {
            return Err(BackupError::Unsettled(format!(
                "the layouts of {} facilities kept changing during the backup; retry",
                changed.len()
            )));
        }
        for (id, bytes) in changed {
            tracing::info!(facility = %id, "layout changed during the backup: reading it again");
            seen.insert(id.clone(), digest(&bytes));
            export_facility(storage, options, out, id, bytes).await?;
        }
    }
    let mut bookings = storage.bookings();
    while let Some(booking) = bookings.try_next().await? {
        out.entry(&Entry::Booking(BookingEntry {
            id: booking.id,
            record: booking.bytes,
            forget_after: booking.forget_after,
        }))
        .await?;
    }
    drop(bookings);
    let now = Millis::system_now();
    let mut keys = storage.idempotency_keys();
    while let Some(key) = keys.try_next().await? {
        if key.expires_at <= now {
            continue;
        }
        out.entry(&Entry::Key(KeyEntry {
            owner: key.owner,
            key: key.key,
            booking: key.booking,
            expires_at: key.expires_at,
        }))
        .await?;
    }
    drop(keys);
    let counts = out.counts().clone();
    out.entry(&Entry::End(counts)).await
}

/// One facility section: its record, then each zone of its layout.
async fn export_facility<W: AsyncWrite + Unpin + Send>(
    storage: &dyn Storage,
    options: &ExportOptions,
    out: &mut BodyWriter<W>,
    id: FacilityId,
    bytes: Vec<u8>,
) -> Result<(), BackupError> {
    let record = decode_record(&id, &bytes)?;
    out.entry(&Entry::Facility(FacilityEntry {
        id: id.clone(),
        record: bytes,
    }))
    .await?;
    for layout in &record.layout.zones {
        let key = ZoneKey::new(id.clone(), layout.id.clone());
        let (zone, ended) = read_zone(storage, &key, layout).await?;
        let snapshot = zone.snapshot();
        out.entry(&Entry::Zone(ZoneEntry {
            facility: id.clone(),
            zone: layout.id.clone(),
            seq: zone.seq(),
            spots: spots_of(zone.layout()),
            live: snapshot.live.len() as u64,
            snapshot: codec::encode_stored(&snapshot),
        }))
        .await?;
        for booking in ended {
            let forget_after = Millis(
                booking
                    .updated_at
                    .0
                    .saturating_add(options.booking_retention_ms),
            );
            out.entry(&Entry::ZoneBooking(BookingEntry {
                id: booking.id.clone(),
                record: codec::encode_stored(&booking),
                forget_after: Some(forget_after),
            }))
            .await?;
        }
    }
    Ok(())
}

/// A zone's state now (latest snapshot plus its journal tail), and the
/// bookings the tail ended. A snapshot stored between reading the
/// snapshot and the journal may trim the events in between: read again.
async fn read_zone(
    storage: &dyn Storage,
    key: &ZoneKey,
    layout: &ZoneLayout,
) -> Result<(parkme_engine::ZoneState, Vec<parkme_engine::Booking>), BackupError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match parkme_actors::recover(storage, key, layout).await {
            Ok((zone, touched)) => {
                let ended = touched.into_iter().filter(|b| !b.is_live()).collect();
                return Ok((zone, ended));
            }
            Err(ActorError::Engine(EngineError::OutOfOrder { .. })) if attempt < ZONE_ATTEMPTS => {
                tracing::debug!(zone = %key, attempt, "journal trimmed while reading; again");
            }
            Err(e) => return Err(e.into()),
        }
    }
}
