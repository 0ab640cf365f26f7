//! ParkMe backups (contract §8): one versioned, checksummed file that
//! holds a whole deployment, read from a store while it serves and loaded
//! into an empty store of any backend.
//!
//! Map of the crate:
//! - [`format`]: the file: a 512-byte header block (magic, format version,
//!   counts, the body's length and SHA-256, its own CRC) and a body of
//!   CRC'd frames, each one [`format::Entry`] encoded by
//!   `parkme_engine::codec`; [`format::FileWriter`] writes one under a
//!   temporary name and renames it into place once whole.
//! - [`export`]: a live store → a body, through the `Storage` trait.
//! - [`restore`]: a file → a store: a whole verifying pass first, then the
//!   writes.
//! - [`progress`]: what the command line shows on stderr.
//! - [`error`]: the crate's one error type.
//!
//! # Consistency
//!
//! A backup holds every zone at *some* seq, read after the backup began, so
//! everything acknowledged before it began is in it (acknowledged means
//! durable). The difficulty is the booking records, which live apart
//! from the zones' journals and may lag them (CQL writes a group's records
//! after its journal batches; a commit that failed after its journal
//! landed writes none, and the zone's recovery repairs them). A restored
//! store must never show a booking record that its zone's state
//! contradicts. So:
//!
//! - zones are read **before** the booking records. Each zone entry is the
//!   zone's latest snapshot with its journal tail replayed (the engine's
//!   own recovery), so its live bookings are exactly what the zone holds
//!   at its seq; the bookings the tail *ended* are written beside it
//!   (`ZoneBooking`), in the zone's version;
//! - a booking record read later is at least as new as every event the
//!   zone entry holds, except one whose event is still in flight, which
//!   the tail (from the snapshot on) covers: a snapshot is only stored
//!   after the commits it covers returned, records included;
//! - restore writes the *ended* records of the records section first,
//!   then, per zone, the records of the bookings the zone holds live and
//!   of those its tail ended, so the zone's version wins. A record that
//!   claims *live* but whose zone does not hold it was created after the
//!   zone was read (after the backup began, so it need not be there) and
//!   is not restored; one that claims *ended* while its zone holds it live
//!   is replaced by the zone's version.
//!
//! Every restored zone is claimed (a new epoch) and stored as a snapshot at
//! its seq with an empty journal; `serve` claims it again and owns it.
//! A facility whose layout changed while its zones were read is read again
//! in a later section; restore uses the last section of each facility.
//! Idempotency keys still alive are kept, so a client's retry after a
//! restore replays its booking.
//!
//! This crate must never write to the store it backs up, and never write
//! to a store before the file it restores passed [`restore::verify`].

pub mod error;
pub mod export;
pub mod format;
pub mod progress;
pub mod restore;

pub use error::BackupError;
pub use export::{ExportOptions, export};
pub use format::{BodyWriter, Counts, Entry, FileWriter, FrameReader, Header};
pub use progress::{Bar, Progress, Silent};
pub use restore::{Restored, Verified, restore, verify};
