//! The write-ahead log: append-only segment files of framed commit batches.
//!
//! A frame is `[len: u32 LE][crc32 of payload: u32 LE][payload]`; one frame
//! per group commit, so a commit is all-or-nothing. Each append is followed
//! by `fdatasync` before the commit is acknowledged.
//!
//! Reading back, only a *torn final frame* is cut off: the last frame of
//! the newest segment that a crash interrupted (its header or payload runs
//! past the end of the file with no intact frame anywhere after it, its
//! checksum fails with nothing after it and no intact frame inside it
//! (such a frame would have been acknowledged), or what follows the last good
//! frame is all zeros: blocks the file system allocated but never wrote).
//! Anything else (a bad frame with more data after it, damage in an older
//! segment) is corruption of acknowledged frames and fails loudly with the
//! file and offset.
//!
//! After a failed write or `fdatasync` the unsynced bytes are in an
//! unknown state: the segment is cut back to its last synced frame (and
//! the cut synced) before anything more is appended; until the cut
//! succeeds every append fails, and each one retries the cut, so the WAL
//! recovers by itself when the disk does.
//!
//! This module must never reorder frames, acknowledge before the sync,
//! retry a failed sync and trust it, or drop a frame that has an intact
//! frame after it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// Largest frame accepted when reading (a corrupt length must not allocate
/// gigabytes).
const MAX_FRAME: usize = 1 << 30;

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("wal-{id:016}.log"))
}

/// Why a segment could not be read back.
#[derive(Debug, thiserror::Error)]
pub(super) enum WalError {
    #[error("reading WAL segment {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Damage that is not a torn final frame: acknowledged frames would be
    /// lost by cutting it, so recovery stops.
    #[error(
        "WAL segment {} is corrupt at offset {offset}: {found}; \
         {following} more bytes follow, so this is not a torn final write \
         (refusing to drop acknowledged frames)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: usize,
        found: String,
        following: usize,
    },
}

/// Segment ids present in `dir`, ascending.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let name = name.to_str()?;
            name.strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// What [`scan`] found in a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Payload ranges of the intact frames, in order.
    frames: Vec<(usize, usize)>,
    /// Where the intact frames end.
    end: usize,
    /// The first bad frame, if any: what was wrong with it and whether it
    /// is a torn final frame (nothing intact can follow it).
    bad: Option<(String, bool)>,
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Bytes of checksum work spent looking for an intact frame after a
/// damaged one before giving up (and failing loudly rather than guessing).
const RESCAN_BUDGET: usize = 64 << 20;

/// Whether an intact frame starts anywhere in `data` after `from`: if one
/// does, the damage at `from` is not the end of the log.
fn intact_frame_after(data: &[u8], from: usize) -> Option<bool> {
    let mut budget = RESCAN_BUDGET;
    for start in from + 1..data.len().saturating_sub(HEADER) {
        let len = le_u32(&data[start..start + 4]) as usize;
        let end = start + HEADER + len;
        if len == 0 || end > data.len() {
            continue;
        }
        budget = budget.checked_sub(len)?;
        if crc32fast::hash(&data[start + HEADER..end]) == le_u32(&data[start + 4..start + 8]) {
            return Some(true);
        }
    }
    Some(false)
}

/// Walks the frames of one segment.
fn scan(data: &[u8]) -> Scan {
    let mut frames = Vec::new();
    let mut offset = 0;
    let bad = loop {
        let rest = &data[offset..];
        if rest.is_empty() {
            break None;
        }
        if rest.iter().all(|b| *b == 0) {
            break Some((
                format!("{} zero bytes after the last frame", rest.len()),
                true,
            ));
        }
        if rest.len() < HEADER {
            break Some((format!("a {}-byte partial frame header", rest.len()), true));
        }
        let len = le_u32(&rest[..4]) as usize;
        let crc = le_u32(&rest[4..8]);
        if HEADER + len > rest.len() {
            // A crash mid-append leaves a frame whose payload runs past the
            // end; a damaged length field looks the same, unless an intact
            // frame can still be found after it.
            let torn = intact_frame_after(data, offset) == Some(false);
            let found = format!(
                "a frame header announcing {len} bytes with {} left in the file",
                rest.len() - HEADER
            );
            break Some((found, torn));
        }
        if len == 0 {
            break Some(("a frame of length 0".to_owned(), false));
        }
        if crc32fast::hash(&rest[HEADER..HEADER + len]) != crc {
            let found = format!("a checksum mismatch in a frame of {len} bytes");
            // The very last frame of the file, torn by a crash mid-write;
            // unless an intact frame starts inside it: then its length
            // field is what was damaged, and that frame was acknowledged.
            let torn =
                HEADER + len == rest.len() && intact_frame_after(data, offset) == Some(false);
            break Some((found, torn));
        }
        frames.push((offset + HEADER, offset + HEADER + len));
        offset += HEADER + len;
    };
    Scan {
        frames,
        end: offset,
        bad,
    }
}

/// What reading back a segment's bytes decided, before any file is
/// touched: the intact frames' payloads, and where a torn final frame
/// starts (with what was found there) when one must be cut.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Checked<'a> {
    pub frames: Vec<&'a [u8]>,
    pub torn: Option<(usize, String)>,
}

/// Checks a segment's bytes (`path` only names it in errors). In the
/// newest segment (`last`) a torn final frame is reported for cutting;
/// any other damage is a [`WalError::Corrupt`] naming the file and
/// offset. Pure: this is what [`read_segment`] decides, without the I/O.
pub(super) fn check<'a>(path: &Path, data: &'a [u8], last: bool) -> Result<Checked<'a>, WalError> {
    let found = scan(data);
    let torn = match found.bad {
        None => None,
        Some((what, torn)) if torn && last => Some((found.end, what)),
        Some((what, _)) => {
            return Err(WalError::Corrupt {
                following: data.len() - found.end,
                path: path.to_path_buf(),
                offset: found.end,
                found: what,
            });
        }
    };
    Ok(Checked {
        frames: found
            .frames
            .into_iter()
            .map(|(start, end)| &data[start..end])
            .collect(),
        torn,
    })
}

/// Reads every frame of a segment. In the newest segment (`last`) a torn
/// final frame is cut off (and the cut made durable); any other damage is
/// a [`WalError::Corrupt`] naming the file and offset.
pub(super) fn read_segment(dir: &Path, id: u64, last: bool) -> Result<Vec<Vec<u8>>, WalError> {
    let path = segment_path(dir, id);
    let io_error = |source| WalError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(last)
        .open(&path)
        .map_err(io_error)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io_error)?;
    let checked = check(&path, &data, last)?;
    if let Some((end, what)) = &checked.torn {
        tracing::warn!(
            segment = %path.display(),
            offset = end,
            dropped = data.len() - end,
            found = %what,
            "cutting a torn final WAL frame"
        );
        file.set_len(*end as u64).map_err(io_error)?;
        file.sync_data().map_err(io_error)?;
    }
    Ok(checked.frames.into_iter().map(<[u8]>::to_vec).collect())
}

/// Appends the frame of `payload` (header, then the payload) to `out`.
pub(super) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len > 0 && (*len as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad WAL frame size"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The segment currently appended to.
#[derive(Debug)]
pub(super) struct Wal {
    dir: PathBuf,
    id: u64,
    file: File,
    size: u64,
    buffer: Vec<u8>,
    /// A failed append could not be undone: the segment may end in a
    /// partial frame, so nothing more may follow it (the next start cuts
    /// it as a torn final frame).
    broken: bool,
}

impl Wal {
    /// Starts a new, empty segment `id`.
    pub fn create(dir: &Path, id: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(segment_path(dir, id))?;
        // Make the new file's directory entry durable.
        File::open(dir)?.sync_all()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
            file,
            size: 0,
            buffer: Vec::new(),
            broken: false,
        })
    }

    /// Cuts the segment back to its last synced frame after a failed
    /// append, and makes the cut durable. Until that succeeds the
    /// segment is `broken` and takes nothing more (it is retried at every
    /// append, so the WAL recovers by itself once the disk does).
    fn repair(&mut self) -> io::Result<()> {
        let repaired = self
            .file
            .set_len(self.size)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.size)).map(|_| ()))
            .and_then(|()| self.file.sync_data());
        self.broken = repaired.is_err();
        repaired.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "WAL segment {} cannot be cut back to its last synced frame \
                     after a failed write: {e}",
                    segment_path(&self.dir, self.id).display()
                ),
            )
        })
    }

    /// Retries cutting the tail a failed append left, if it could not be
    /// cut then; `Ok` once the segment takes appends again.
    pub fn heal(&mut self) -> io::Result<()> {
        if self.broken { self.repair() } else { Ok(()) }
    }

    /// Appends one frame and syncs it to disk. After a failed write or
    /// sync the state of the unsynced bytes is unknown: they are cut off
    /// (back to the last synced frame) before anything else is appended,
    /// and the sync is never retried on them.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.broken {
            self.repair()?;
        }
        self.buffer.clear();
        encode_frame(payload, &mut self.buffer)?;
        if let Err(e) = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no partial frame behind: the next append starts clean.
            // If the cut fails too, the next append retries it first.
            let _ = self.repair();
            return Err(e);
        }
        self.size += self.buffer.len() as u64;
        Ok(())
    }

    /// Closes this segment and starts the next one.
    pub fn rotate(&mut self) -> io::Result<u64> {
        // A broken segment must stay the newest, so its torn end is cut
        // (not taken for corruption) at the next start.
        if self.broken {
            self.repair()?;
        }
        let next = Wal::create(&self.dir, self.id + 1)?;
        *self = next;
        Ok(self.id)
    }

    /// Deletes segments below `id`.
    pub fn delete_before(&self, id: u64) -> io::Result<()> {
        for old in segments(&self.dir)?.into_iter().filter(|s| *s < id) {
            fs::remove_file(segment_path(&self.dir, old))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_segment_that_could_not_be_cut_heals_once_the_file_takes_writes_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut wal = Wal::create(dir.path(), 1).expect("segment");
        wal.append(b"acknowledged").expect("append");
        // The disk turns read-only: the write fails, and so does the cut.
        let writable = std::mem::replace(
            &mut wal.file,
            File::open(segment_path(dir.path(), 1)).expect("read-only handle"),
        );
        assert!(wal.append(b"refused").is_err());
        assert!(wal.broken, "the cut could not be made");
        assert!(wal.append(b"refused too").is_err());
        assert!(wal.heal().is_err());
        // Writable again: the next append cuts first, then appends.
        wal.file = writable;
        wal.append(b"after").expect("append after the fault");
        assert!(!wal.broken);
        let frames = read_segment(dir.path(), 1, true).expect("reads back");
        assert_eq!(frames, vec![b"acknowledged".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn intact_frames_are_all_read() {
        let data = [frame(b"one"), frame(b"two")].concat();
        let found = scan(&data);
        assert_eq!(found.frames.len(), 2);
        assert_eq!((found.end, found.bad), (data.len(), None));
    }

    #[test]
    fn a_torn_last_frame_is_torn() {
        let good = frame(b"one");
        for torn in [
            frame(b"two")[..5].to_vec(),  // partial header
            frame(b"two")[..10].to_vec(), // partial payload
            vec![0; 40],                  // allocated, never written
        ] {
            let data = [good.clone(), torn].concat();
            let found = scan(&data);
            assert_eq!((found.frames.len(), found.end), (1, good.len()));
            assert!(found.bad.expect("bad").1, "torn");
        }
        let mut last = frame(b"two");
        let n = last.len();
        last[n - 1] ^= 1;
        let found = scan(&[good.clone(), last].concat());
        assert!(
            found.bad.expect("bad").1,
            "a bad checksum at the very end is torn"
        );
    }

    #[test]
    fn a_damaged_length_with_intact_frames_after_it_is_not_torn() {
        let mut bad = frame(b"two");
        bad[2] = 0x7f; // the length now runs past the end of the file
        let data = [frame(b"one"), bad, frame(b"three")].concat();
        let found = scan(&data);
        assert_eq!(found.frames.len(), 1);
        let (what, torn) = found.bad.expect("bad");
        assert!(!torn, "{what}");
    }

    #[test]
    fn a_damaged_length_reaching_the_end_over_an_intact_frame_is_not_torn() {
        // The length of a damaged frame happens to reach exactly the end
        // of the file, spanning the intact frame after it (found by the
        // wal_segment fuzz target): that frame was acknowledged.
        let garbage = [0xaa; 6];
        let last = frame(b"acknowledged");
        let mut bad = ((garbage.len() + last.len() - HEADER) as u32)
            .to_le_bytes()
            .to_vec();
        bad.extend_from_slice(&garbage[4..]);
        let data = [frame(b"one"), bad, last].concat();
        let found = scan(&data);
        assert_eq!(found.frames.len(), 1);
        let (what, torn) = found.bad.expect("bad");
        assert!(what.contains("checksum"), "{what}");
        assert!(!torn, "{what}");
        let checked = check(Path::new("seg"), &data, true);
        assert!(
            matches!(checked, Err(WalError::Corrupt { .. })),
            "{checked:?}"
        );
    }

    #[test]
    fn damage_followed_by_more_data_is_not_torn() {
        let mut bad = frame(b"two");
        bad[9] ^= 1;
        let data = [frame(b"one"), bad, frame(b"three")].concat();
        let found = scan(&data);
        assert_eq!(found.frames.len(), 1);
        let (what, torn) = found.bad.expect("bad");
        assert!(!torn, "{what}");
        assert!(what.contains("checksum"), "{what}");
    }
}
