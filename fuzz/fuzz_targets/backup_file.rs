//! Backup files read back by `parkme restore` (`parkme_backup::verify`:
//! the header block, every frame's CRC, the entries' order and contents,
//! the body's length, SHA-256 and counts; then `restore` into an empty
//! memory store). Never panics; a file `verify` passes restores without
//! an error (verify is the only gate before the first write, so a file
//! it passes must not leave a half-restored store).
//!
//! Input: the first byte picks how the rest is read.
//! - `0`: the rest is the file, byte for byte (damaged headers, frames
//!   and checksums);
//! - anything else: the rest is parts (`parkme_fuzz::parts`), each a
//!   stored `Entry`; those that decode are written as a real backup
//!   writes them (`BodyWriter`: a `Begin` first when the parts have
//!   none, the `End` with the true counts, the header with the true
//!   length and digest), so the fuzzer reaches what `verify` and
//!   `restore` check past the checksums.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use parkme_backup::format::{Begin, encode_header};
use parkme_backup::{BodyWriter, Entry, Silent, restore, verify};
use parkme_engine::Millis;
use parkme_engine::codec::decode_stable;
use parkme_fuzz::parts;
use parkme_storage::memory::MemoryStorage;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// This process's scratch file (in memory where /dev/shm exists).
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("parkme-fuzz-backup-{}", std::process::id()))
    })
}

/// A backup file holding the entries of `data` that decode.
async fn written(data: &[u8]) -> Option<Vec<u8>> {
    let mut entries: Vec<Entry> = parts(data)
        .into_iter()
        .filter_map(|part| decode_stable::<Entry>(part).ok())
        .filter(|entry| !matches!(entry, Entry::End(_)))
        .collect();
    if !matches!(entries.first(), Some(Entry::Begin(_))) {
        entries.insert(
            0,
            Entry::Begin(Begin {
                created_at: Millis(1),
                source: "memory".into(),
                parkme_version: "0.1.0".into(),
                planned_facilities: 0,
                planned_zones: 0,
            }),
        );
    }
    let mut body = BodyWriter::new(Vec::new(), Arc::new(Silent));
    for entry in &entries {
        body.entry(entry).await.ok()?;
    }
    let end = Entry::End(body.counts().clone());
    body.entry(&end).await.ok()?;
    let (bytes, header) = body.finish().await.ok()?;
    let header = header.expect("a body with its begin and end has a header");
    Some([&encode_header(&header)[..], &bytes].concat())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        let file = if mode == 0 {
            rest.to_vec()
        } else {
            match written(rest).await {
                Some(file) => file,
                None => return,
            }
        };
        let path = scratch();
        std::fs::write(path, &file).expect("the scratch file is written");
        if verify(path, &Silent).await.is_ok() {
            let store = MemoryStorage::new();
            if let Err(e) = restore(&store, path, false, Arc::new(Silent)).await {
                panic!("a verified backup failed to restore: {e}");
            }
        }
    });
});
