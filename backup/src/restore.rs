//! Loading a backup file into a store: first a whole streaming pass that
//! checks everything ([`verify`]), and only then, into a store that is
//! empty (or wiped with `force`), two writing passes:
//!
//! 1. the records section: every booking record that has *ended*, and
//!    every idempotency key that has not expired (a live booking's record
//!    comes from its zone in pass 2);
//! 2. the facility sections (the last one of each facility): each zone's
//!    state is claimed and stored as a snapshot at its seq, then the
//!    records of the bookings the zone holds live and of those its tail
//!    ended (the zone's version wins over the records section), then the
//!    facility record, so a facility appears with all its zones or not at
//!    all.
//!
//! Memory holds one frame, one batch of writes and one small entry per
//! facility. This module must never write anything before [`verify`]
//! accepted the whole file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use parkme_actors::record::FacilityRecord;
use parkme_engine::codec;
use parkme_engine::{Booking, FacilityId, Millis, ZoneId, ZoneSnapshot};
use parkme_storage::{Storage, Write, ZoneKey};
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};

use crate::error::BackupError;
use crate::format::{
    BookingEntry, Counts, Entry, FrameReader, HEADER_BLOCK, Header, ZoneEntry, decode_header,
};
use crate::progress::Progress;

/// Writes per commit while restoring.
const BATCH: usize = 512;

/// What [`verify`] learnt about a file that passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: PathBuf,
    pub header: Header,
    /// Body offset of the records section (the first booking, key or end).
    records_at: u64,
    /// Per facility, the ordinal of its last section.
    last_section: HashMap<FacilityId, u64>,
}

/// What a restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub facilities: u64,
    pub zones: u64,
    pub spots: u64,
    /// Booking records written (ended ones from the records section, live
    /// and tail-ended ones from the zones).
    pub bookings: u64,
    pub keys: u64,
    /// Whether the store held data that was wiped first.
    pub wiped: bool,
}

fn refused(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The read buffer for a body of `body_bytes`: 1 MiB for real backups,
/// no more than the body (at least 8 KiB) for small ones, which would
/// otherwise zero and fault in a megabyte they never read.
fn read_buffer(body_bytes: u64) -> usize {
    const MIN: usize = 8 << 10;
    const MAX: usize = 1 << 20;
    usize::try_from(body_bytes).map_or(MAX, |n| n.clamp(MIN, MAX))
}

async fn open_body(
    path: &Path,
    offset: u64,
    body_bytes: u64,
) -> Result<BufReader<tokio::fs::File>, BackupError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::io(format!("opening {}", path.display()), e))?;
    file.seek(std::io::SeekFrom::Start(HEADER_BLOCK as u64 + offset))
        .await
        .map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?;
    Ok(BufReader::with_capacity(
        read_buffer(body_bytes.saturating_sub(offset)),
        file,
    ))
}

/// Where a verifying pass is in the body.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Facilities,
    Records,
    Ended,
}

/// The facility section being read: its id and its layout's zones not yet
/// seen.
#[derive(Debug)]
struct Section {
    id: FacilityId,
    zones: HashSet<ZoneId>,
    /// A zone entry came: zone bookings may follow.
    in_zone: bool,
}

/// Checks a whole file without writing anything: the header (magic,
/// version, checksum), every frame (checksum, decoding, order, what each
/// names), the end marker, the body's length and SHA-256 and the counts.
pub async fn verify(path: &Path, progress: &dyn Progress) -> Result<Verified, BackupError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::io(format!("opening {}", path.display()), e))?;
    let mut block = [0u8; HEADER_BLOCK];
    file.read_exact(&mut block)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => refused(path, "shorter than a backup header"),
            _ => BackupError::io(format!("reading {}", path.display()), e),
        })?;
    let header = decode_header(&block).map_err(|reason| refused(path, reason))?;
    progress.stage("verifying", Some(header.counts.entries + 1));
    let mut reader = FrameReader::new(
        BufReader::with_capacity(read_buffer(header.body_bytes), file),
        0,
    );
    let mut phase = Phase::Start;
    let mut counts = Counts::default();
    let mut section: Option<Section> = None;
    let mut sections = 0u64;
    let mut last_section = HashMap::new();
    let mut records_at = None;
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(BackupError::Malformed { offset, reason }) => {
                return Err(refused(
                    path,
                    format!("{reason} (body byte {offset}: truncated or altered)"),
                ));
            }
            Err(e) => return Err(e),
        };
        let at = |what: String| {
            refused(
                path,
                format!("{what} (frame at body byte {})", frame.offset),
            )
        };
        if phase == Phase::Ended {
            return Err(at("data after the end marker".into()));
        }
        match (&phase, &frame.entry) {
            (Phase::Start, Entry::Begin(begin)) => {
                if begin != &header.begin {
                    return Err(at("the begin entry contradicts the header".into()));
                }
                phase = Phase::Facilities;
            }
            (Phase::Start, _) => {
                return Err(at("the body does not start with a begin entry".into()));
            }
            (Phase::Facilities, Entry::Facility(facility)) => {
                if let Some(open) = section.take().filter(|s| !s.zones.is_empty()) {
                    return Err(at(format!("facility {} lacks zones", open.id)));
                }
                let record = FacilityRecord::decode(&facility.record)
                    .map_err(|e| at(format!("facility {}: {e}", facility.id)))?;
                if record.layout.id != facility.id {
                    return Err(at(format!(
                        "facility {} holds another's record",
                        facility.id
                    )));
                }
                sections += 1;
                last_section.insert(facility.id.clone(), sections);
                section = Some(Section {
                    id: facility.id.clone(),
                    zones: record.layout.zones.iter().map(|z| z.id.clone()).collect(),
                    in_zone: false,
                });
            }
            (Phase::Facilities, Entry::Zone(zone)) => {
                let current = section
                    .as_mut()
                    .filter(|s| s.id == zone.facility)
                    .ok_or_else(|| at(format!("zone {} outside its facility", zone.zone)))?;
                if !current.zones.remove(&zone.zone) {
                    return Err(at(format!(
                        "zone {}/{} is not in its layout, or twice",
                        zone.facility, zone.zone
                    )));
                }
                current.in_zone = true;
                check_zone(zone).map_err(at)?;
            }
            (Phase::Facilities, Entry::ZoneBooking(booking)) => {
                if !section.as_ref().is_some_and(|s| s.in_zone) {
                    return Err(at("a zone booking outside a zone".into()));
                }
                check_booking(booking).map_err(at)?;
            }
            (
                Phase::Facilities | Phase::Records,
                Entry::Booking(_) | Entry::Key(_) | Entry::End(_),
            ) => {
                if phase == Phase::Facilities {
                    if let Some(open) = section.take().filter(|s| !s.zones.is_empty()) {
                        return Err(at(format!("facility {} lacks zones", open.id)));
                    }
                    records_at = Some(frame.offset);
                    phase = Phase::Records;
                }
                match &frame.entry {
                    Entry::Booking(booking) => check_booking(booking).map_err(at)?,
                    Entry::End(end) => {
                        if end != &counts {
                            return Err(at("the end counts do not match the body".into()));
                        }
                        phase = Phase::Ended;
                    }
                    _ => {}
                }
            }
            (_, entry) => {
                return Err(at(format!("a {} entry out of place", entry.kind())));
            }
        }
        if !matches!(frame.entry, Entry::End(_)) {
            counts.add(&frame.entry);
        }
        progress.step(1);
    }
    if phase != Phase::Ended {
        return Err(refused(
            path,
            format!(
                "the body ends at byte {} without its end marker: the file is truncated",
                reader.offset()
            ),
        ));
    }
    if reader.offset() != header.body_bytes {
        return Err(refused(
            path,
            format!(
                "the body is {} bytes, the header says {}",
                reader.offset(),
                header.body_bytes
            ),
        ));
    }
    if reader.digest() != header.body_sha256 {
        return Err(refused(
            path,
            "the body's SHA-256 does not match the header",
        ));
    }
    if counts != header.counts {
        return Err(refused(path, "the header's counts do not match the body"));
    }
    Ok(Verified {
        path: path.to_path_buf(),
        header,
        records_at: records_at.unwrap_or(0),
        last_section,
    })
}

fn check_zone(zone: &ZoneEntry) -> Result<(), String> {
    let snapshot: ZoneSnapshot = codec::decode_stored(&zone.snapshot)
        .map_err(|e| format!("zone {}/{}: {e}", zone.facility, zone.zone))?;
    if snapshot.facility != zone.facility
        || snapshot.layout.id != zone.zone
        || snapshot.seq != zone.seq
    {
        return Err(format!(
            "zone {}/{} holds another zone's state",
            zone.facility, zone.zone
        ));
    }
    if snapshot.live.len() as u64 != zone.live {
        return Err(format!(
            "zone {}/{}: live bookings miscounted",
            zone.facility, zone.zone
        ));
    }
    Ok(())
}

fn check_booking(booking: &BookingEntry) -> Result<(), String> {
    let decoded: Booking = codec::decode_stored(&booking.record)
        .map_err(|e| format!("booking {}: {e}", booking.id))?;
    if decoded.id != booking.id {
        return Err(format!("booking {} holds another's record", booking.id));
    }
    Ok(())
}

/// What the store holds, if anything (the first thing found).
pub async fn first_content(storage: &dyn Storage) -> Result<Option<String>, BackupError> {
    if let Some((id, _)) = storage.facilities().await?.first() {
        return Ok(Some(format!("facility {id}")));
    }
    if let Some(zone) = storage.zones().next().await.transpose()? {
        return Ok(Some(format!("zone {zone}")));
    }
    if let Some(booking) = storage.bookings().next().await.transpose()? {
        return Ok(Some(format!("booking {}", booking.id)));
    }
    if let Some(key) = storage.idempotency_keys().next().await.transpose()? {
        return Ok(Some(format!("an idempotency key of {}", key.owner)));
    }
    Ok(None)
}

/// Writes queued until a batch is full.
struct Batch<'a> {
    storage: &'a dyn Storage,
    writes: Vec<Write>,
}

impl<'a> Batch<'a> {
    fn new(storage: &'a dyn Storage) -> Self {
        Self {
            storage,
            writes: Vec::with_capacity(BATCH),
        }
    }

    async fn push(&mut self, write: Write) -> Result<(), BackupError> {
        self.writes.push(write);
        if self.writes.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackupError> {
        if !self.writes.is_empty() {
            self.storage.commit(&self.writes).await?;
            self.writes.clear();
        }
        Ok(())
    }
}

/// Verifies `path`, then loads it into `storage`: refused when the store
/// holds anything, unless `force`, which wipes it first.
pub async fn restore(
    storage: &dyn Storage,
    path: &Path,
    force: bool,
    progress: Arc<dyn Progress>,
) -> Result<Restored, BackupError> {
    let verified = verify(path, &*progress).await?;
    let mut restored = Restored::default();
    if let Some(found) = first_content(storage).await? {
        if !force {
            return Err(BackupError::NotEmpty(format!("it holds {found}")));
        }
        tracing::warn!(holding = %found, "wiping the target store before restoring (--force)");
        storage.clear().await?;
        restored.wiped = true;
    }
    let counts = &verified.header.counts;
    progress.stage("records", Some(counts.bookings + counts.keys));
    restore_records(storage, &verified, &mut restored, &*progress).await?;
    progress.stage("zones", Some(counts.zones));
    restore_sections(storage, &verified, &mut restored, &*progress).await?;
    progress.done();
    Ok(restored)
}

/// Pass 1: ended booking records and live idempotency keys.
async fn restore_records(
    storage: &dyn Storage,
    verified: &Verified,
    restored: &mut Restored,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let now = Millis::system_now();
    let body = open_body(
        &verified.path,
        verified.records_at,
        verified.header.body_bytes,
    )
    .await?;
    let mut reader = FrameReader::new(body, verified.records_at);
    let mut batch = Batch::new(storage);
    while let Some(frame) = next(&mut reader, &verified.path).await? {
        match frame.entry {
            Entry::Booking(booking) => {
                progress.step(1);
                let decoded: Booking = codec::decode_stored(&booking.record)
                    .map_err(|e| changed(&verified.path, e))?;
                // A live booking's record is the one its zone holds.
                if decoded.is_live() {
                    continue;
                }
                restored.bookings += 1;
                batch.push(booking_write(booking)).await?;
            }
            Entry::Key(key) => {
                progress.step(1);
                if key.expires_at <= now {
                    continue;
                }
                restored.keys += 1;
                batch
                    .push(Write::Idempotency {
                        owner: key.owner,
                        key: key.key,
                        booking: key.booking,
                        expires_at: key.expires_at,
                        replaces: None,
                    })
                    .await?;
            }
            Entry::End(_) => break,
            other => return Err(changed(&verified.path, other.kind())),
        }
    }
    batch.flush().await
}

/// Pass 2: the last section of every facility.
async fn restore_sections(
    storage: &dyn Storage,
    verified: &Verified,
    restored: &mut Restored,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let body = open_body(&verified.path, 0, verified.header.body_bytes).await?;
    let mut reader = FrameReader::new(body, 0);
    let mut batch = Batch::new(storage);
    let mut ordinal = 0u64;
    // The facility whose section is being written, and whether it is its
    // last section (earlier ones are skipped).
    let mut pending: Option<(FacilityId, Vec<u8>)> = None;
    let mut active = false;
    while let Some(frame) = next(&mut reader, &verified.path).await? {
        match frame.entry {
            Entry::Begin(_) => {}
            Entry::Facility(facility) => {
                finish_facility(storage, &mut batch, pending.take(), restored).await?;
                ordinal += 1;
                active = verified.last_section.get(&facility.id) == Some(&ordinal);
                if active {
                    pending = Some((facility.id, facility.record));
                }
            }
            Entry::Zone(zone) => {
                progress.step(1);
                if active {
                    restore_zone(storage, &mut batch, zone, restored).await?;
                }
            }
            Entry::ZoneBooking(booking) => {
                if active {
                    restored.bookings += 1;
                    batch.push(booking_write(booking)).await?;
                }
            }
            _ => break,
        }
    }
    finish_facility(storage, &mut batch, pending.take(), restored).await
}

async fn finish_facility(
    storage: &dyn Storage,
    batch: &mut Batch<'_>,
    pending: Option<(FacilityId, Vec<u8>)>,
    restored: &mut Restored,
) -> Result<(), BackupError> {
    batch.flush().await?;
    if let Some((id, record)) = pending {
        storage.put_facility(&id, record, None).await?;
        restored.facilities += 1;
    }
    Ok(())
}

/// A zone's state as its snapshot under a fresh claim, then the records of
/// the bookings it holds.
async fn restore_zone(
    storage: &dyn Storage,
    batch: &mut Batch<'_>,
    zone: ZoneEntry,
    restored: &mut Restored,
) -> Result<(), BackupError> {
    restored.zones += 1;
    restored.spots += zone.spots;
    let snapshot: ZoneSnapshot =
        codec::decode_stored(&zone.snapshot).map_err(|e| changed(Path::new("the backup"), e))?;
    if zone.seq.0 == 0 && snapshot.live.is_empty() {
        // Never changed: a fresh zone is what `serve` starts anyway.
        return Ok(());
    }
    let key = ZoneKey::new(zone.facility, zone.zone);
    let epoch = storage.claim_zone(&key).await?;
    storage
        .put_snapshot(&key, epoch, zone.seq, zone.snapshot)
        .await?;
    for booking in snapshot.live {
        restored.bookings += 1;
        batch
            .push(Write::Booking {
                id: booking.id.clone(),
                bytes: codec::encode_stored(&booking),
                forget_after: None,
            })
            .await?;
    }
    Ok(())
}

fn booking_write(booking: BookingEntry) -> Write {
    Write::Booking {
        id: booking.id,
        bytes: booking.record,
        forget_after: booking.forget_after,
    }
}

fn changed(path: &Path, what: impl std::fmt::Display) -> BackupError {
    BackupError::Malformed {
        offset: 0,
        reason: format!(
            "{} changed while it was being restored ({what}); the store is partly written: \
             restore again with --force",
            path.display()
        ),
    }
}

async fn next<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    path: &Path,
) -> Result<Option<crate::format::Frame>, BackupError> {
    reader.next().await.map_err(|e| match e {
        BackupError::Malformed { reason, .. } => changed(path, reason),
        other => other,
    })
}
