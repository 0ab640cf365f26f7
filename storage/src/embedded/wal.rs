//! The write-ahead log: append-only segment files of framed commit batches.
//!
//! A frame is `[len: u32 LE][crc32 of payload: u32 LE][payload]`; one frame
//! per group commit, so a commit is all-or-nothing: a torn last frame
//! (crash mid-write) fails its checksum and is cut off at recovery. Each
//! append is followed by `fdatasync` before the commit is acknowledged.
//!
//! This module must never reorder frames or acknowledge before the sync.

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

/// Reads every intact frame of a segment and cuts off a torn tail.
pub(super) fn read_segment(dir: &Path, id: u64) -> io::Result<Vec<Vec<u8>>> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let mut frames = Vec::new();
    let mut offset = 0;
    while offset + HEADER <= data.len() {
        let len = u32::from_le_bytes([
            data[offset],
            data[offset + 1],
            data[offset + 2],
            data[offset + 3],
        ]) as usize;
        let crc = u32::from_le_bytes([
            data[offset + 4],
            data[offset + 5],
            data[offset + 6],
            data[offset + 7],
        ]);
        let start = offset + HEADER;
        let Some(end) = start
            .checked_add(len)
            .filter(|e| *e <= data.len() && len <= MAX_FRAME)
        else {
            break;
        };
        let payload = &data[start..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        frames.push(payload.to_vec());
        offset = end;
    }
    if offset < data.len() {
        tracing::warn!(
            segment = id,
            kept = offset,
            dropped = data.len() - offset,
            "cutting a torn WAL tail"
        );
        file.set_len(offset as u64)?;
        file.sync_data()?;
    }
    Ok(frames)
}

/// The segment currently appended to.
#[derive(Debug)]
pub(super) struct Wal {
    dir: PathBuf,
    id: u64,
    file: File,
    size: u64,
    buffer: Vec<u8>,
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
        })
    }

    /// Appends one frame and syncs it to disk.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "WAL frame too large"))?;
        self.buffer.clear();
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.buffer.extend_from_slice(payload);
        if let Err(e) = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no partial frame behind: the next append starts clean.
            let _ = self.file.set_len(self.size);
            let _ = self.file.seek(SeekFrom::Start(self.size));
            return Err(e);
        }
        self.size += self.buffer.len() as u64;
        Ok(())
    }

    /// Closes this segment and starts the next one.
    pub fn rotate(&mut self) -> io::Result<u64> {
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
