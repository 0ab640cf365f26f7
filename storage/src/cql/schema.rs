//! The CQL schema (documented in `storage/SCHEMA.md`) and the prepared
//! statements the backend runs against it.
//!
//! Every statement names its table as `keyspace.table`; the keyspace is a
//! validated identifier (see `super::uri`), so formatting it into CQL
//! text is safe. Values are always bound, never formatted.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::statement::{Consistency, SerialConsistency};

use super::CqlUri;
use crate::error::StorageError;

/// Journal events per partition: a zone's journal partition holds the
/// events with `seq / BUCKET_SIZE == bucket`. Changing it would orphan
/// stored journals: it is part of the on-disk format.
pub const BUCKET_SIZE: u64 = 4096;

/// Rows per page when reading a journal bucket (events are small; a
/// page of large ones is still bounded by the group commit's batch size).
const EVENTS_PAGE: i32 = 512;

/// Schema changes wait for agreement across the cluster; give them time.
const DDL_TIMEOUT: Duration = Duration::from_secs(60);

/// The statements that create the schema, in order.
///
/// The journal and snapshot tables carry the fencing epoch as a `static`
/// column of the very partitions they fence (`storage/SCHEMA.md`); their
/// names are new with that layout (`zone_*`), so a keyspace written by an
/// earlier version keeps its old `journal`, `journal_buckets`,
/// `snapshots` and `zone_epochs` tables untouched and unread.
pub fn ddl(target: &CqlUri) -> Vec<String> {
    let ks = &target.keyspace;
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true",
            target.options.replication.cql_map()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.zone_journal (
                facility text, zone text, bucket bigint, seq bigint,
                owner_epoch bigint static,
                epoch bigint, payload blob,
                PRIMARY KEY ((facility, zone, bucket), seq)
            ) WITH CLUSTERING ORDER BY (seq ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.zone_buckets (
                facility text, zone text, bucket bigint,
                PRIMARY KEY ((facility, zone), bucket)
            ) WITH CLUSTERING ORDER BY (bucket ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.zone_snapshots (
                facility text, zone text, seq bigint,
                owner_epoch bigint static, latest_seq bigint static,
                journal_top bigint static,
                epoch bigint, payload blob,
                PRIMARY KEY ((facility, zone), seq)
            ) WITH CLUSTERING ORDER BY (seq DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.facilities (
                facility text PRIMARY KEY, payload blob, owner_epoch bigint
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.history (
                facility text, day bigint, at bigint, payload blob,
                PRIMARY KEY ((facility, day), at)
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.bookings (
                id text PRIMARY KEY, payload blob
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.idempotency (
                owner text, idem_key text, booking text, expires_at bigint,
                PRIMARY KEY ((owner, idem_key))
            ) WITH gc_grace_seconds = 10800"
        ),
    ]
}

/// Creates the keyspace and tables that are missing, and the columns a
/// table of an earlier version lacks (`facilities.owner_epoch`).
pub async fn create(session: &Session, target: &CqlUri) -> Result<(), StorageError> {
    let run = |text: String| async move {
        let mut statement = Statement::new(text);
        statement.set_request_timeout(Some(DDL_TIMEOUT));
        session
            .query_unpaged(statement, ())
            .await
            .map_err(|e| super::driver::exec_error("creating the schema", &e))
    };
    for text in ddl(target) {
        run(text).await?;
    }
    let ks = target.keyspace.as_str();
    let columns = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'facilities'",
            (ks,),
        )
        .await
        .map_err(|e| super::driver::exec_error("reading the schema", &e))?;
    let columns = super::driver::all_rows::<(String,)>(columns, "schema column")?;
    if !columns.iter().any(|(name,)| name == "owner_epoch") {
        run(format!(
            "ALTER TABLE {ks}.facilities ADD owner_epoch bigint"
        ))
        .await?;
    }
    Ok(())
}

/// Every statement the backend runs, prepared once per session. Every
/// write to `zone_journal` and `zone_snapshots` is a lightweight
/// transaction, except the partition deletion of a dead journal bucket
/// (see `storage/SCHEMA.md` for why that one is safe).
#[derive(Debug)]
pub struct Statements {
    /// One event, written only `IF owner_epoch = ?` (in a batch of one
    /// partition: the whole batch is one Paxos round).
    pub append_event: PreparedStatement,
    pub select_events: PreparedStatement,
    /// `SET owner_epoch = E IF owner_epoch < E`.
    pub raise_bucket: PreparedStatement,
    /// `SET owner_epoch = E IF owner_epoch = null`.
    pub establish_bucket: PreparedStatement,
    pub delete_bucket: PreparedStatement,
    pub index_bucket: PreparedStatement,
    pub select_buckets_from: PreparedStatement,
    pub unindex_bucket: PreparedStatement,
    pub unindex_zone: PreparedStatement,
    /// The zone's head (claim counter, newest snapshot seq, highest
    /// journal bucket), read through Paxos.
    pub read_head: PreparedStatement,
    pub first_claim: PreparedStatement,
    /// `SET owner_epoch = e + 1 IF` the whole head is as read.
    pub next_claim: PreparedStatement,
    /// `SET journal_top = b + 1 IF owner_epoch = E AND journal_top = b`.
    pub extend_journal: PreparedStatement,
    pub insert_snapshot: PreparedStatement,
    /// `SET latest_seq = n IF owner_epoch = E AND latest_seq < n`.
    pub publish_snapshot: PreparedStatement,
    /// `SET latest_seq = -1, journal_top = -1 IF owner_epoch = E` (the zone
    /// was dropped).
    pub reset_snapshots: PreparedStatement,
    pub delete_snapshot: PreparedStatement,
    pub select_latest_snapshot: PreparedStatement,
    pub select_snapshot_seqs: PreparedStatement,
    pub upsert_facility: PreparedStatement,
    pub select_facilities: PreparedStatement,
    pub select_facility: PreparedStatement,
    /// `owner_epoch` and whether the record exists.
    pub read_facility_fence: PreparedStatement,
    /// `SET owner_epoch = 1 IF owner_epoch = null`.
    pub first_facility_claim: PreparedStatement,
    /// `SET owner_epoch = e + 1 IF owner_epoch = e`.
    pub next_facility_claim: PreparedStatement,
    /// `SET payload = ? IF owner_epoch = E`: the owner's record write.
    pub fenced_put_facility: PreparedStatement,
    /// Every zone head (paged): the zones with state are listed from it.
    pub select_zone_heads: PreparedStatement,
    /// Every booking record with its remaining TTL (paged).
    pub select_all_bookings: PreparedStatement,
    /// Every idempotency key (paged).
    pub select_all_keys: PreparedStatement,
    pub upsert_booking: PreparedStatement,
    pub upsert_booking_ttl: PreparedStatement,
    pub select_booking: PreparedStatement,
    /// One sample `USING TTL ?`.
    pub insert_history: PreparedStatement,
    /// One day partition's samples in `[from, to]`.
    pub select_history: PreparedStatement,
    pub upsert_idempotency: PreparedStatement,
    /// `INSERT ... IF NOT EXISTS`: a key's first claim.
    pub claim_new_key: PreparedStatement,
    /// `UPDATE ... IF booking = ? AND expires_at = ?`: a claim of a key
    /// found expired, or naming a booking that never landed.
    pub claim_seen_key: PreparedStatement,
    pub select_idempotency: PreparedStatement,
    pub ping: PreparedStatement,
}

impl Statements {
    pub async fn prepare(session: &Session, target: &CqlUri) -> Result<Self, StorageError> {
        let ks = &target.keyspace;
        let serial = target.options.serial_consistency;
        let serial_read = match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        };
        let p = Preparer { session };
        let mut select_events = p
            .idempotent(&format!(
                "SELECT seq, payload FROM {ks}.zone_journal
                 WHERE facility = ? AND zone = ? AND bucket = ? AND seq > ?"
            ))
            .await?;
        select_events.set_page_size(EVENTS_PAGE);
        let mut read_head = p
            .idempotent(&format!(
                "SELECT owner_epoch, latest_seq, journal_top FROM {ks}.zone_snapshots
                 WHERE facility = ? AND zone = ? LIMIT 1"
            ))
            .await?;
        read_head.set_consistency(serial_read);
        let mut read_facility_fence = p
            .idempotent(&format!(
                "SELECT owner_epoch, payload FROM {ks}.facilities WHERE facility = ?"
            ))
            .await?;
        read_facility_fence.set_consistency(serial_read);
        let mut ping = p
            .idempotent("SELECT release_version FROM system.local")
            .await?;
        ping.set_request_timeout(Some(target.options.ping_timeout));
        Ok(Self {
            append_event: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_journal SET epoch = ?, payload = ?
                         WHERE facility = ? AND zone = ? AND bucket = ? AND seq = ?
                         IF owner_epoch = ?"
                    ),
                    serial,
                )
                .await?,
            select_events,
            raise_bucket: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_journal SET owner_epoch = ?
                         WHERE facility = ? AND zone = ? AND bucket = ? IF owner_epoch < ?"
                    ),
                    serial,
                )
                .await?,
            establish_bucket: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_journal SET owner_epoch = ?
                         WHERE facility = ? AND zone = ? AND bucket = ? IF owner_epoch = null"
                    ),
                    serial,
                )
                .await?,
            delete_bucket: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.zone_journal WHERE facility = ? AND zone = ? AND bucket = ?"
                ))
                .await?,
            index_bucket: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.zone_buckets (facility, zone, bucket) VALUES (?, ?, ?)"
                ))
                .await?,
            select_buckets_from: p
                .idempotent(&format!(
                    "SELECT bucket FROM {ks}.zone_buckets
                     WHERE facility = ? AND zone = ? AND bucket >= ?"
                ))
                .await?,
            unindex_bucket: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.zone_buckets
                     WHERE facility = ? AND zone = ? AND bucket = ?"
                ))
                .await?,
            unindex_zone: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.zone_buckets WHERE facility = ? AND zone = ?"
                ))
                .await?,
            read_head,
            first_claim: p
                .conditional(
                    &format!(
                        "INSERT INTO {ks}.zone_snapshots
                         (facility, zone, owner_epoch, latest_seq, journal_top)
                         VALUES (?, ?, 1, -1, -1) IF NOT EXISTS"
                    ),
                    serial,
                )
                .await?,
            next_claim: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_snapshots SET owner_epoch = ?
                         WHERE facility = ? AND zone = ?
                         IF owner_epoch = ? AND latest_seq = ? AND journal_top = ?"
                    ),
                    serial,
                )
                .await?,
            extend_journal: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_snapshots SET journal_top = ?
                         WHERE facility = ? AND zone = ? IF owner_epoch = ? AND journal_top = ?"
                    ),
                    serial,
                )
                .await?,
            insert_snapshot: p
                .prepare(&format!(
                    "INSERT INTO {ks}.zone_snapshots (facility, zone, seq, epoch, payload)
                     VALUES (?, ?, ?, ?, ?)"
                ))
                .await?,
            publish_snapshot: p
                .prepare(&format!(
                    "UPDATE {ks}.zone_snapshots SET latest_seq = ?
                     WHERE facility = ? AND zone = ? IF owner_epoch = ? AND latest_seq < ?"
                ))
                .await?,
            reset_snapshots: p
                .prepare(&format!(
                    "UPDATE {ks}.zone_snapshots SET latest_seq = -1, journal_top = -1
                     WHERE facility = ? AND zone = ? IF owner_epoch = ?"
                ))
                .await?,
            delete_snapshot: p
                .prepare(&format!(
                    "DELETE FROM {ks}.zone_snapshots WHERE facility = ? AND zone = ? AND seq = ?"
                ))
                .await?,
            select_latest_snapshot: p
                .idempotent(&format!(
                    "SELECT seq, payload FROM {ks}.zone_snapshots
                     WHERE facility = ? AND zone = ? AND seq >= 0 LIMIT 1"
                ))
                .await?,
            select_snapshot_seqs: p
                .idempotent(&format!(
                    "SELECT seq FROM {ks}.zone_snapshots
                     WHERE facility = ? AND zone = ? AND seq >= 0 LIMIT ?"
                ))
                .await?,
            upsert_facility: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.facilities (facility, payload) VALUES (?, ?)"
                ))
                .await?,
            select_facilities: p
                .idempotent(&format!("SELECT facility, payload FROM {ks}.facilities"))
                .await?,
            select_facility: p
                .idempotent(&format!(
                    "SELECT payload FROM {ks}.facilities WHERE facility = ?"
                ))
                .await?,
            read_facility_fence,
            first_facility_claim: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.facilities SET owner_epoch = 1 WHERE facility = ? IF owner_epoch = null"
                    ),
                    serial,
                )
                .await?,
            next_facility_claim: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.facilities SET owner_epoch = ? WHERE facility = ? IF owner_epoch = ?"
                    ),
                    serial,
                )
                .await?,
            fenced_put_facility: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.facilities SET payload = ? WHERE facility = ? IF owner_epoch = ?"
                    ),
                    serial,
                )
                .await?,
            select_zone_heads: p
                .idempotent(&format!(
                    "SELECT DISTINCT facility, zone, latest_seq, journal_top FROM {ks}.zone_snapshots"
                ))
                .await?,
            select_all_bookings: p
                .idempotent(&format!(
                    "SELECT id, payload, TTL(payload) FROM {ks}.bookings"
                ))
                .await?,
            select_all_keys: p
                .idempotent(&format!(
                    "SELECT owner, idem_key, booking, expires_at FROM {ks}.idempotency"
                ))
                .await?,
            upsert_booking: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.bookings (id, payload) VALUES (?, ?)"
                ))
                .await?,
            upsert_booking_ttl: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.bookings (id, payload) VALUES (?, ?) USING TTL ?"
                ))
                .await?,
            insert_history: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.history (facility, day, at, payload) VALUES (?, ?, ?, ?) USING TTL ?"
                ))
                .await?,
            select_history: p
                .idempotent(&format!(
                    "SELECT at, payload FROM {ks}.history WHERE facility = ? AND day = ? AND at >= ? AND at <= ?"
                ))
                .await?,
            select_booking: p
                .idempotent(&format!("SELECT payload FROM {ks}.bookings WHERE id = ?"))
                .await?,
            upsert_idempotency: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.idempotency (owner, idem_key, booking, expires_at)
                     VALUES (?, ?, ?, ?) USING TTL ?"
                ))
                .await?,
            claim_new_key: p
                .conditional(
                    &format!(
                        "INSERT INTO {ks}.idempotency (owner, idem_key, booking, expires_at)
                         VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
                    ),
                    serial,
                )
                .await?,
            claim_seen_key: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.idempotency USING TTL ? SET booking = ?, expires_at = ?
                         WHERE owner = ? AND idem_key = ? IF booking = ? AND expires_at = ?"
                    ),
                    serial,
                )
                .await?,
            select_idempotency: p
                .idempotent(&format!(
                    "SELECT booking, expires_at FROM {ks}.idempotency
                     WHERE owner = ? AND idem_key = ?"
                ))
                .await?,
            ping,
        })
    }
}

struct Preparer<'a> {
    session: &'a Session,
}

impl Preparer<'_> {
    async fn prepare(&self, text: &str) -> Result<PreparedStatement, StorageError> {
        self.session
            .prepare(text)
            .await
            .map_err(|e| super::driver::prepare_error(text, &e))
    }

    /// A statement the driver may retry or send twice without harm.
    async fn idempotent(&self, text: &str) -> Result<PreparedStatement, StorageError> {
        let mut statement = self.prepare(text).await?;
        statement.set_is_idempotent(true);
        Ok(statement)
    }

    /// A lightweight transaction: never retried blindly by the driver (a
    /// timeout leaves its outcome unknown, and the caller must say so).
    async fn conditional(
        &self,
        text: &str,
        serial: SerialConsistency,
    ) -> Result<PreparedStatement, StorageError> {
        let mut statement = self.prepare(text).await?;
        statement.set_serial_consistency(Some(serial));
        Ok(statement)
    }
}
