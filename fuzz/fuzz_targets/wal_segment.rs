//! WAL segments read back from disk (`parkme_storage::embedded::
//! decode_wal_segment`: the segment checks of `embedded/wal.rs` and the
//! frame decoding of `embedded/logged.rs`, as opening the store runs
//! them): never panics; only the newest segment may lose a torn final
//! frame (whatever an older segment reads, the newest reads the same);
//! the commits read, re-framed (`encode_wal_frame`), read back the same;
//! a frame with an intact frame after it is never dropped (a commit
//! appended after the bytes is read back last, or the segment is refused
//! loudly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_engine::{BookingId, Millis};
use parkme_storage::Write;
use parkme_storage::embedded::{decode_wal_segment, encode_wal_frame};

fuzz_target!(|data: &[u8]| {
    let newest = decode_wal_segment(data, true);
    if let Ok(commits) = decode_wal_segment(data, false) {
        assert_eq!(newest.as_ref().ok(), Some(&commits));
    }
    let Ok(commits) = newest else {
        return;
    };
    let reframed: Vec<u8> = commits.iter().flat_map(|w| encode_wal_frame(w)).collect();
    assert_eq!(
        decode_wal_segment(&reframed, false).as_ref().ok(),
        Some(&commits)
    );
    let marker = vec![Write::Booking {
        id: BookingId::parse("bk_marker").expect("a valid id"),
        bytes: vec![1, 2, 3],
        forget_after: Some(Millis(9)),
    }];
    let mut longer = data.to_vec();
    longer.extend(encode_wal_frame(&marker));
    if let Ok(read) = decode_wal_segment(&longer, true) {
        assert_eq!(
            read.last(),
            Some(&marker),
            "an intact frame after the bytes was dropped"
        );
    }
});
