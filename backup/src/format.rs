//! The backup file: what it holds and how its bytes are laid out.
//!
//! ```text
//! header block (512 bytes)
//!   "PARKMEBK" | format version u32 | n u32 | Header (n bytes, codec)
//!   | zero padding | CRC-32 of bytes 0..508
//! body: frames, each  len u32 | CRC-32 u32 | Entry (len bytes, codec)
//!   Begin, then per facility: Facility, Zone (+ ZoneBooking)*,
//!   then Booking*, Key*, and End (the counts of everything before it)
//! ```
//!
//! All integers are little-endian. The header names the format version,
//! the counts and the body's length and SHA-256, so a reader can refuse a
//! truncated or altered file before it writes anything; each frame has
//! its own CRC so a damaged one is named by its offset. The body alone is
//! also what `GET /v1/admin/backup` streams: a writer that cannot seek
//! (a socket) sends the body, and whoever stores it writes the header
//! once the body is complete.
//!
//! Encoding goes through `parkme_engine::codec` (bincode 2, behind its
//! format byte). This module must never accept a frame whose checksum does
//! not match, nor read past [`MAX_FRAME`] for one frame.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bincode::{Decode, Encode};
use parkme_engine::codec;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId, ZoneId};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufWriter};

use crate::error::BackupError;
use crate::progress::Progress;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"PARKMEBK";
/// The body layout this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The fixed size of the header block.
pub const HEADER_BLOCK: usize = 512;
/// The largest frame read (a zone snapshot of a few million spots fits).
pub const MAX_FRAME: usize = 512 << 20;
/// Frame head: length and CRC-32.
const FRAME_HEAD: usize = 8;
/// Longest `source` kept in the header (it must fit the block).
const SOURCE_MAX: usize = 160;

/// How many of each kind of entry a body holds (before its `End`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct Counts {
    /// Facility sections (a facility re-read because its layout changed
    /// during the backup has a second, later section).
    pub facilities: u64,
    pub zones: u64,
    /// Spots of the zones (counter zones have none).
    pub spots: u64,
    /// Live bookings held by the zones.
    pub live_bookings: u64,
    /// Booking records.
    pub bookings: u64,
    /// Idempotency keys.
    pub keys: u64,
    /// Every entry, these and the others.
    pub entries: u64,
}

impl Counts {
    pub fn add(&mut self, entry: &Entry) {
        self.entries += 1;
        match entry {
            Entry::Facility(_) => self.facilities += 1,
            Entry::Zone(zone) => {
                self.zones += 1;
                self.spots += zone.spots;
                self.live_bookings += zone.live;
            }
            Entry::Booking(_) => self.bookings += 1,
            Entry::Key(_) => self.keys += 1,
            Entry::Begin(_) | Entry::ZoneBooking(_) | Entry::End(_) => {}
        }
    }
}

/// The body's first entry: where and when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Begin {
    pub created_at: Millis,
    /// The backend it was read from (`embedded`, `scylla`, ...).
    pub source: String,
    pub parkme_version: String,
    /// What the facility records named when the backup began (for
    /// progress; the counts are in `End` and the header).
    pub planned_facilities: u64,
    pub planned_zones: u64,
}

/// What the header block holds.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    pub format: u32,
    pub begin: Begin,
    pub counts: Counts,
    pub body_bytes: u64,
    pub body_sha256: [u8; 32],
}

/// A facility record, as stored (`parkme_actors::record`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct FacilityEntry {
    pub id: FacilityId,
    pub record: Vec<u8>,
}

/// One zone's state at `seq`: a stored `ZoneSnapshot` (the latest stored
/// snapshot with the journal tail replayed onto it).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ZoneEntry {
    pub facility: FacilityId,
    pub zone: ZoneId,
    pub seq: Seq,
    pub snapshot: Vec<u8>,
    pub spots: u64,
    pub live: u64,
}

/// A booking record as stored (`parkme_engine::Booking`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BookingEntry {
    pub id: BookingId,
    pub record: Vec<u8>,
    pub forget_after: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct KeyEntry {
    pub owner: UserId,
    pub key: String,
    pub booking: BookingId,
    pub expires_at: Millis,
}

/// One frame of the body.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Entry {
    Begin(Begin),
    Facility(FacilityEntry),
    Zone(ZoneEntry),
    /// A booking the zone's journal tail ended, as the zone left it (its
    /// record may lag the journal: the zone's version is the one restored).
    ZoneBooking(BookingEntry),
    Booking(BookingEntry),
    Key(KeyEntry),
    End(Counts),
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Begin(_) => "begin",
            Entry::Facility(_) => "facility",
            Entry::Zone(_) => "zone",
            Entry::ZoneBooking(_) => "zone booking",
            Entry::Booking(_) => "booking",
            Entry::Key(_) => "idempotency key",
            Entry::End(_) => "end",
        }
    }
}

/// Encodes the header block.
pub fn encode_header(header: &Header) -> [u8; HEADER_BLOCK] {
    let mut header = header.clone();
    if header.begin.source.len() > SOURCE_MAX {
        let mut cut = SOURCE_MAX;
        while !header.begin.source.is_char_boundary(cut) {
            cut -= 1;
        }
        header.begin.source.truncate(cut);
    }
    let body = codec::encode_stored(&header);
    let mut block = [0u8; HEADER_BLOCK];
    block[0..8].copy_from_slice(MAGIC);
    block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let len = body.len().min(HEADER_BLOCK - 20);
    debug_assert_eq!(len, body.len(), "the header fits its block");
    block[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    block[16..16 + len].copy_from_slice(&body[..len]);
    let crc = crc32fast::hash(&block[..HEADER_BLOCK - 4]);
    block[HEADER_BLOCK - 4..].copy_from_slice(&crc.to_le_bytes());
    block
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

/// Decodes a header block, or says why it is not one this version reads.
pub fn decode_header(block: &[u8; HEADER_BLOCK]) -> Result<Header, String> {
    if &block[0..8] != MAGIC {
        if block.iter().all(|b| *b == 0) {
            return Err("the header was never written (an unfinished backup)".into());
        }
        return Err("not a parkme backup (no PARKMEBK magic)".into());
    }
    let crc = le_u32(&block[HEADER_BLOCK - 4..]);
    if crc32fast::hash(&block[..HEADER_BLOCK - 4]) != crc {
        return Err("the header fails its checksum".into());
    }
    let version = le_u32(&block[8..12]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}; this parkme reads version {FORMAT_VERSION}"
        ));
    }
    let len = le_u32(&block[12..16]) as usize;
    if len > HEADER_BLOCK - 20 {
        return Err(format!("header length {len} does not fit the block"));
    }
    let header: Header = codec::decode_stable(&block[16..16 + len])
        .map_err(|e| format!("the header does not decode: {e}"))?;
    if header.format != version {
        return Err("the header contradicts its own version".into());
    }
    Ok(header)
}

/// Writes body frames to `W`, keeping the running length, digest and
/// counts, and telling `progress` what passes.
pub struct BodyWriter<W> {
    out: W,
    sha: Sha256,
    bytes: u64,
    counts: Counts,
    begin: Option<Begin>,
    ended: bool,
    progress: Arc<dyn Progress>,
}

impl<W> std::fmt::Debug for BodyWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyWriter")
            .field("bytes", &self.bytes)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin + Send> BodyWriter<W> {
    pub fn new(out: W, progress: Arc<dyn Progress>) -> Self {
        Self {
            out,
            sha: Sha256::new(),
            bytes: 0,
            counts: Counts::default(),
            begin: None,
            ended: false,
            progress,
        }
    }

    /// Encodes and writes one entry.
    pub async fn entry(&mut self, entry: &Entry) -> Result<(), BackupError> {
        let payload = codec::encode_stored(entry);
        self.frame(entry, &payload).await
    }

    /// Writes one entry already encoded as `payload` (relayed from a
    /// stream whose frame was checked).
    pub async fn frame(&mut self, entry: &Entry, payload: &[u8]) -> Result<(), BackupError> {
        if self.ended {
            return Err(BackupError::Malformed {
                offset: self.bytes,
                reason: "an entry after the end".into(),
            });
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| (*len as usize) <= MAX_FRAME)
            .ok_or_else(|| BackupError::Malformed {
                offset: self.bytes,
                reason: format!("a {} entry of {} bytes", entry.kind(), payload.len()),
            })?;
        let mut head = [0u8; FRAME_HEAD];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let context = "writing the backup";
        self.out
            .write_all(&head)
            .await
            .map_err(|e| BackupError::io(context, e))?;
        self.out
            .write_all(payload)
            .await
            .map_err(|e| BackupError::io(context, e))?;
        self.sha.update(head);
        self.sha.update(payload);
        let written = (FRAME_HEAD + payload.len()) as u64;
        self.bytes += written;
        match entry {
            Entry::Begin(begin) => self.begin = Some(begin.clone()),
            Entry::End(_) => self.ended = true,
            _ => {}
        }
        self.counts.add(entry);
        self.progress.entry(entry, written);
        Ok(())
    }

    /// The counts so far (what an `End` written now must carry).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes and hands back the output and what the header needs.
    pub async fn finish(mut self) -> Result<(W, Option<Header>), BackupError> {
        self.out
            .flush()
            .await
            .map_err(|e| BackupError::io("writing the backup", e))?;
        let header = match (self.begin, self.ended) {
            (Some(begin), true) => {
                let mut counts = self.counts;
                // The header carries the counts `End` carries: those before it.
                counts.entries -= 1;
                Some(Header {
                    format: FORMAT_VERSION,
                    begin,
                    counts,
                    body_bytes: self.bytes,
                    body_sha256: self.sha.finalize().into(),
                })
            }
            _ => None,
        };
        Ok((self.out, header))
    }
}

/// A backup file being written: a placeholder header, the body, then the
/// real header; under a temporary name until it is whole, then renamed.
#[derive(Debug)]
pub struct FileWriter {
    path: PathBuf,
    partial: PathBuf,
    body: Option<BodyWriter<BufWriter<tokio::fs::File>>>,
}

impl FileWriter {
    pub async fn create(path: &Path, progress: Arc<dyn Progress>) -> Result<Self, BackupError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into());
        let partial = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| BackupError::io(format!("creating {}", partial.display()), e))?;
        file.write_all(&[0u8; HEADER_BLOCK])
            .await
            .map_err(|e| BackupError::io(format!("writing {}", partial.display()), e))?;
        Ok(Self {
            path: path.to_path_buf(),
            partial,
            body: Some(BodyWriter::new(
                BufWriter::with_capacity(1 << 20, file),
                progress,
            )),
        })
    }

    pub fn body(&mut self) -> &mut BodyWriter<BufWriter<tokio::fs::File>> {
        // `body` is only taken by `finish`, which consumes the writer.
        self.body.as_mut().expect("the body is there until finish")
    }

    /// Writes the header, syncs and renames the file into place; refuses a
    /// body without its `Begin` and `End` (the partial file is removed).
    pub async fn finish(mut self) -> Result<(PathBuf, Header), BackupError> {
        let Some(body) = self.body.take() else {
            return Err(BackupError::Malformed {
                offset: 0,
                reason: "finished twice".into(),
            });
        };
        let (out, header) = body.finish().await?;
        let header = header.ok_or_else(|| BackupError::Malformed {
            offset: 0,
            reason: "the backup has no begin or no end".into(),
        })?;
        let mut file = out.into_inner();
        let context = format!("finishing {}", self.partial.display());
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| BackupError::io(&context, e))?;
        file.write_all(&encode_header(&header))
            .await
            .map_err(|e| BackupError::io(&context, e))?;
        file.sync_all()
            .await
            .map_err(|e| BackupError::io(&context, e))?;
        drop(file);
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .map_err(|e| BackupError::io(format!("renaming to {}", self.path.display()), e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = tokio::fs::File::open(dir).await
        {
            let _ = dir.sync_all().await;
        }
        Ok((self.path.clone(), header))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not finished: leave nothing that could pass for a backup.
        if self.body.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Reads body frames one at a time, checking each frame's CRC and
/// keeping the digest of what it read.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    sha: Sha256,
    /// Body offset of the next frame.
    offset: u64,
}

/// One frame read: its body offset, the entry and its encoded bytes.
#[derive(Debug)]
pub struct Frame {
    pub offset: u64,
    pub entry: Entry,
    pub payload: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `offset` is the body offset `inner` is positioned at.
    pub fn new(inner: R, offset: u64) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
            offset,
        }
    }

    fn malformed(&self, offset: u64, reason: impl Into<String>) -> BackupError {
        BackupError::Malformed {
            offset,
            reason: reason.into(),
        }
    }

    /// The next frame, `None` at a clean end of input.
    pub async fn next(&mut self) -> Result<Option<Frame>, BackupError> {
        let offset = self.offset;
        let mut head = [0u8; FRAME_HEAD];
        let mut got = 0;
        while got < FRAME_HEAD {
            let n = self
                .inner
                .read(&mut head[got..])
                .await
                .map_err(|e| BackupError::io("reading the backup", e))?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(self.malformed(offset, "the input ends inside a frame head"));
            }
            got += n;
        }
        let len = le_u32(&head[..4]) as usize;
        if len > MAX_FRAME {
            return Err(self.malformed(offset, format!("a frame claims {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.inner
            .read_exact(&mut payload)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => self.malformed(
                    offset,
                    format!("the input ends inside a frame of {len} bytes"),
                ),
                _ => BackupError::io("reading the backup", e),
            })?;
        if crc32fast::hash(&payload) != le_u32(&head[4..]) {
            return Err(self.malformed(offset, "a frame fails its checksum"));
        }
        let entry: Entry = codec::decode_stable(&payload)
            .map_err(|e| self.malformed(offset, format!("a frame does not decode: {e}")))?;
        self.sha.update(head);
        self.sha.update(&payload);
        self.offset += (FRAME_HEAD + len) as u64;
        Ok(Some(Frame {
            offset,
            entry,
            payload,
        }))
    }

    /// Body bytes read so far (from the starting offset).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The SHA-256 of every frame read.
    pub fn digest(&self) -> [u8; 32] {
        self.sha.clone().finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    fn begin() -> Begin {
        Begin {
            created_at: Millis(1),
            source: "memory".into(),
            parkme_version: "0.1.0".into(),
            planned_facilities: 0,
            planned_zones: 0,
        }
    }

    #[tokio::test]
    async fn a_body_reads_back_frame_by_frame_with_the_same_digest() {
        let mut writer = BodyWriter::new(Vec::new(), Arc::new(Silent));
        let key = Entry::Key(KeyEntry {
            owner: UserId::parse("u").expect("id"),
            key: "k".into(),
            booking: BookingId::parse("b").expect("id"),
            expires_at: Millis(5),
        });
        writer.entry(&Entry::Begin(begin())).await.expect("write");
        writer.entry(&key).await.expect("write");
        let counts = writer.counts().clone();
        writer.entry(&Entry::End(counts)).await.expect("write");
        let (bytes, header) = writer.finish().await.expect("finish");
        let header = header.expect("begin and end were written");
        assert_eq!(header.counts.keys, 1);
        assert_eq!(header.counts.entries, 2);
        let mut reader = FrameReader::new(bytes.as_slice(), 0);
        let mut kinds = Vec::new();
        while let Some(frame) = reader.next().await.expect("read") {
            kinds.push(frame.entry.kind());
        }
        assert_eq!(kinds, vec!["begin", "idempotency key", "end"]);
        assert_eq!(reader.digest(), header.body_sha256);
        assert_eq!(reader.offset(), header.body_bytes);
        let block = encode_header(&header);
        assert_eq!(decode_header(&block), Ok(header));
    }

    #[tokio::test]
    async fn a_flipped_bit_and_a_cut_are_named_by_their_offset() {
        let mut writer = BodyWriter::new(Vec::new(), Arc::new(Silent));
        writer.entry(&Entry::Begin(begin())).await.expect("write");
        writer.entry(&Entry::Begin(begin())).await.expect("write");
        let (bytes, _) = writer.finish().await.expect("finish");
        let second = bytes.len() / 2;
        let mut flipped = bytes.clone();
        flipped[second + 10] ^= 0x04;
        let mut reader = FrameReader::new(flipped.as_slice(), 0);
        reader.next().await.expect("the first frame is intact");
        let error = reader.next().await.expect_err("the second is not");
        assert!(error.to_string().contains("checksum"), "{error}");
        assert!(error.to_string().contains(&second.to_string()), "{error}");
        let cut = &bytes[..bytes.len() - 3];
        let mut reader = FrameReader::new(cut, 0);
        reader.next().await.expect("the first frame is intact");
        let error = reader.next().await.expect_err("cut");
        assert!(error.to_string().contains("ends inside"), "{error}");
    }

    #[test]
    fn a_damaged_or_foreign_header_is_refused() {
        let header = Header {
            format: FORMAT_VERSION,
            begin: begin(),
            counts: Counts::default(),
            body_bytes: 0,
            body_sha256: [0; 32],
        };
        let mut block = encode_header(&header);
        block[20] ^= 1;
        assert!(
            decode_header(&block)
                .expect_err("damaged")
                .contains("checksum")
        );
        assert!(
            decode_header(&[0u8; HEADER_BLOCK])
                .expect_err("zeroes")
                .contains("never written")
        );
        let mut other = [7u8; HEADER_BLOCK];
        other[..4].copy_from_slice(b"\x7fELF");
        assert!(
            decode_header(&other)
                .expect_err("foreign")
                .contains("magic")
        );
    }
}
