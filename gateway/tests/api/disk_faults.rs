//! The embedded store's data directory going bad under the real binary:
//! its disk FULL (a small tmpfs filled with a ballast file) and turned
//! READ-ONLY (EROFS on every syscall that would change or sync a file,
//! injected into the running server with `strace`: see [`ReadOnly`]). Contract §1–§3: a write the store
//! could not make durable answers 503 with `Retry-After` (never a 500,
//! never a 201), reads keep working, `/health/` says storage is down, the
//! service recovers by itself when the fault ends, and nothing that was
//! acknowledged is lost, not even to `kill -9`.
//!
//! Each test mounts its own tmpfs (this needs root, as in CI, and so does
//! strace's ptrace; without it a test fails saying so, it never skips) and unmounts it on drop, panic
//! or not. Tests wait on conditions, never on fixed sleeps; they must
//! never touch any mount but their own.

use std::fs::OpenOptions;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::http::{Api, NO_LIMITS, Reply, layout, spot_zone};
use crate::helpers::{TestServer, poll_until};

/// How long a fault may take to show, or recovery to happen.
const WAIT: Duration = Duration::from_secs(30);
/// Spots of the one zone the tests book in.
const SPOTS: usize = 150;

/// A tmpfs of its own, mounted on a fresh temp directory; unmounted on
/// drop (lazily if the server still holds files there).
struct Tmpfs {
    dir: tempfile::TempDir,
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("parkme-disk-fault-")
            .tempdir()
            .expect("a temp dir to mount on");
        if let Err(e) = run(
            "mount -t tmpfs",
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0700"))
                .arg("tmpfs")
                .arg(dir.path()),
        ) {
            panic!(
                "these tests mount a tmpfs of their own and need root \
                 (CAP_SYS_ADMIN), as they have in CI; run them as root. {e}"
            );
        }
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The server's data directory, inside the mount.
    fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    fn ballast(&self) -> PathBuf {
        self.path().join("ballast")
    }

    /// Fills the file system with a ballast file until a write fails for
    /// want of room (ENOSPC), down to the last page.
    fn fill(&self) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ballast())
            .expect("the ballast file opens");
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0xb5u8; chunk];
            loop {
                match file.write(&bytes) {
                    Ok(n) if n == chunk => {}
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        let _ = file.sync_all();
    }

    /// Ends the full-disk fault.
    fn drain(&self) {
        std::fs::remove_file(self.ballast()).expect("the ballast file is removed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.path().to_path_buf();
        if run("umount", Command::new("umount").arg(&path)).is_err() {
            let _ = run("umount -l", Command::new("umount").arg("-l").arg(&path));
        }
    }
}

/// The data directory turned read-only under a running server: every
/// syscall that would change or sync a file (`fdatasync`, `fsync`,
/// `ftruncate`, `pwrite64`, `fallocate`, `unlinkat`, `renameat`) of the
/// server's process fails with EROFS, injected by `strace -p` until this
/// is dropped (strace detaches, the fault ends). `mount -o remount,ro`
/// cannot do it: the kernel refuses (EBUSY) while the server holds files
/// open for writing, which it always does.
struct ReadOnly {
    strace: Child,
}

const READ_ONLY_SYSCALLS: &str =
    "fdatasync,fsync,ftruncate,pwrite64,pwritev,pwritev2,fallocate,unlinkat,renameat,renameat2";

impl ReadOnly {
    fn start(pid: u32) -> ReadOnly {
        let mut strace = Command::new("strace")
            .args(["-f", "-o", "/dev/null", "-e"])
            .arg(format!("trace={READ_ONLY_SYSCALLS}"))
            .arg("-e")
            .arg(format!("inject={READ_ONLY_SYSCALLS}:error=EROFS"))
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace runs (Debian's strace package; ptrace needs root)");
        // strace says "Process N attached" for each thread once it holds
        // them: the fault is on from the first line.
        let stderr = strace.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        match lines.next() {
            Some(Ok(line)) if line.contains("attached") => {}
            other => panic!("strace could not attach to the server: {other:?}"),
        }
        std::thread::spawn(move || for _ in lines.by_ref() {});
        ReadOnly { strace }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SIGTERM: strace detaches cleanly and the server runs on.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.strace.id().to_string())
            .status();
        let _ = self.strace.wait();
    }
}

/// A server on a tmpfs data directory, holding facility `f1` with zone
/// `z1` of [`SPOTS`] spots. Fields drop in order: the server stops
/// before its disk is unmounted.
struct Faulty {
    server: TestServer,
    api: Api,
    disk: Tmpfs,
}

impl Faulty {
    async fn start(size: &str) -> Faulty {
        let disk = Tmpfs::mount(size);
        let data = disk.data_dir();
        let data = data.to_str().expect("a UTF-8 temp path").to_owned();
        let mut env = NO_LIMITS.to_vec();
        env.push(("PARKME_DATA_DIR", data.as_str()));
        let unused = tempfile::tempdir().expect("temp dir");
        let server = TestServer::start_on(&env, unused).await;
        let api = Api::new(&server);
        api.put_facility(
            server.admin_token(),
            "f1",
            layout(vec![spot_zone("z1", "s", SPOTS, "standard")]),
        )
        .await;
        Faulty { server, api, disk }
    }

    async fn book(&self, plate: &str) -> Reply {
        let token = self.server.user_token("disk-user");
        self.api
            .book("f1", &token, json!({"plate": plate, "zone": "z1"}))
            .await
    }

    /// Books; panics unless 201. The booking's id.
    async fn book_ok(&self, plate: &str) -> String {
        let reply = self.book(plate).await;
        reply.assert_status(201)["id"]
            .as_str()
            .expect("booking id")
            .to_owned()
    }

    async fn health(&self) -> (u16, Value) {
        let reply = self.api.get("/health/", None).await;
        (reply.status.as_u16(), reply.json)
    }

    async fn until_storage(&self, want: &str) {
        let status = if want == "up" { 200 } else { 503 };
        poll_until(&format!("/health/ storage {want}"), WAIT, || async {
            let (code, body) = self.health().await;
            code == status && body["checks"]["storage"]["status"] == want
        })
        .await;
    }

    async fn reserved(&self) -> usize {
        self.api
            .spot_states("f1", "z1")
            .await
            .iter()
            .filter(|(_, state)| state == "RESERVED")
            .count()
    }

    /// Every booking in `acked` reads back CONFIRMED, and they are all
    /// the zone holds: nothing refused was kept.
    async fn holds_exactly(&self, acked: &[String]) {
        let token = self.server.user_token("disk-user");
        for id in acked {
            let reply = self
                .api
                .get(&format!("/v1/bookings/{id}"), Some(&token))
                .await;
            assert_eq!(
                reply.assert_status(200)["status"],
                "CONFIRMED",
                "acknowledged booking {id}: {reply:?}"
            );
        }
        assert_eq!(
            self.reserved().await,
            acked.len(),
            "the zone holds exactly the acknowledged bookings"
        );
    }
}

/// Asserts the contract's answer to a write storage could not take: 503
/// (`storage_unavailable`, or `unavailable` while the zone reloads from
/// durable state after the failed write) with a `Retry-After`.
#[track_caller]
fn assert_storage_503(reply: &Reply) {
    assert_eq!(reply.status.as_u16(), 503, "status of {reply:?}");
    reply.assert_error_shape();
    let code = reply.json["error"]["code"].as_str().unwrap_or("");
    assert!(
        matches!(code, "storage_unavailable" | "unavailable"),
        "code of {reply:?}"
    );
    let retry: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a 503 without a numeric Retry-After: {reply:?}"));
    assert!(retry >= 1, "Retry-After: {retry}");
}

/// Books on the full disk until the store refuses (a frame may still fit
/// in the WAL's last page): each answer is a 201 (kept in `acked`) or the
/// 503; never a 500. Returns once three refusals came in a row.
async fn book_until_refused(faulty: &Faulty, tag: &str, acked: &mut Vec<String>) {
    let mut refused = 0;
    for i in 0..SPOTS {
        let reply = faulty.book(&format!("{tag}-{i}")).await;
        match reply.status.as_u16() {
            201 => {
                refused = 0;
                acked.push(reply.json["id"].as_str().expect("id").to_owned());
            }
            _ => {
                assert_storage_503(&reply);
                refused += 1;
                if refused == 3 {
                    return;
                }
            }
        }
    }
    panic!(
        "the full disk never refused a booking ({} taken)",
        acked.len()
    );
}

#[tokio::test]
async fn a_full_disk_answers_503_with_retry_after_and_acknowledges_nothing_it_did_not_write() {
    let faulty = Faulty::start("16m").await;
    let mut acked = vec![
        faulty.book_ok("before-1").await,
        faulty.book_ok("before-2").await,
    ];
    faulty.disk.fill();
    book_until_refused(&faulty, "full", &mut acked).await;
    faulty.until_storage("down").await;
    // Reads are still answered while the disk is full.
    faulty
        .api
        .get("/v1/facilities/f1", None)
        .await
        .assert_status(200);
    faulty.disk.drain();
    faulty.until_storage("up").await;
    faulty.holds_exactly(&acked).await;
}

#[tokio::test]
async fn after_the_disk_has_room_again_bookings_succeed_without_a_restart() {
    let faulty = Faulty::start("16m").await;
    let mut acked = vec![faulty.book_ok("before").await];
    faulty.disk.fill();
    book_until_refused(&faulty, "full", &mut acked).await;
    let pid = faulty.server.pid();
    faulty.disk.drain();
    book_until(&faulty, "after", true, &mut acked).await;
    // Not one refusal after the first success, and the same process.
    for i in 0..10 {
        acked.push(faulty.book_ok(&format!("later-{i}")).await);
    }
    assert_eq!(faulty.server.pid(), pid, "no restart");
    faulty.until_storage("up").await;
    faulty.holds_exactly(&acked).await;
}

#[tokio::test]
async fn every_booking_acknowledged_before_the_disk_filled_survives_kill_9() {
    let mut faulty = Faulty::start("16m").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(faulty.book_ok(&format!("before-{i}")).await);
    }
    faulty.disk.fill();
    book_until_refused(&faulty, "full", &mut acked).await;
    faulty.server.kill9();
    // The disk must have room for the store to open (it replays and
    // repairs); what was acknowledged before and during the fault is all
    // there, and nothing that was refused.
    faulty.disk.drain();
    faulty.server.restart().await;
    faulty.holds_exactly(&acked).await;
    acked.push(faulty.book_ok("after-restart").await);
    faulty.holds_exactly(&acked).await;
}

/// Books (plates `{tag}-n`) until the answer is a 201 (`until_ok`) or a
/// 503 (otherwise), at most [`WAIT`]: every answer is one of the two,
/// every 201 is kept in `acked`.
async fn book_until(faulty: &Faulty, tag: &str, until_ok: bool, acked: &mut Vec<String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for n in 0.. {
        let reply = faulty.book(&format!("{tag}-{n}")).await;
        let ok = reply.status == 201;
        if ok {
            acked.push(reply.json["id"].as_str().expect("id").to_owned());
        } else {
            assert_storage_503(&reply);
        }
        if ok == until_ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {} for a booking in {WAIT:?}",
            if until_ok { "201" } else { "503" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_read_only_data_directory_answers_503_for_writes_and_still_serves_reads() {
    let faulty = Faulty::start("16m").await;
    let mut acked = vec![faulty.book_ok("before").await];
    let token = faulty.server.user_token("disk-user");
    let read_only = ReadOnly::start(faulty.server.pid());
    book_until(&faulty, "ro", false, &mut acked).await;
    for i in 0..3 {
        assert_storage_503(&faulty.book(&format!("refused-{i}")).await);
    }
    faulty.until_storage("down").await;
    faulty
        .api
        .get("/v1/facilities/f1", None)
        .await
        .assert_status(200);
    let reply = faulty
        .api
        .get(&format!("/v1/bookings/{}", acked[0]), Some(&token))
        .await;
    assert_eq!(reply.assert_status(200)["status"], "CONFIRMED");
    drop(read_only);
    faulty.until_storage("up").await;
    faulty.holds_exactly(&acked).await;
}

#[tokio::test]
async fn after_a_read_only_data_directory_is_writable_again_bookings_succeed_and_survive_kill_9() {
    let mut faulty = Faulty::start("16m").await;
    let mut acked = vec![faulty.book_ok("before").await];
    let read_only = ReadOnly::start(faulty.server.pid());
    book_until(&faulty, "ro", false, &mut acked).await;
    faulty.until_storage("down").await;
    let pid = faulty.server.pid();
    drop(read_only);
    book_until(&faulty, "rw", true, &mut acked).await;
    assert_eq!(faulty.server.pid(), pid, "no restart");
    for i in 0..5 {
        acked.push(faulty.book_ok(&format!("later-{i}")).await);
    }
    faulty.server.kill9();
    faulty.server.restart().await;
    faulty.holds_exactly(&acked).await;
}
