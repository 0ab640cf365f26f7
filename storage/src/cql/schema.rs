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
pub fn ddl(target: &CqlUri) -> Vec<String> {
    let ks = &target.keyspace;
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true",
            target.options.replication.cql_map()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.journal (
                facility text, zone text, bucket bigint, seq bigint,
                epoch bigint, payload blob,
                PRIMARY KEY ((facility, zone, bucket), seq)
            ) WITH CLUSTERING ORDER BY (seq ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.journal_buckets (
                facility text, zone text, bucket bigint,
                PRIMARY KEY ((facility, zone), bucket)
            ) WITH CLUSTERING ORDER BY (bucket ASC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.snapshots (
                facility text, zone text, seq bigint, payload blob,
                PRIMARY KEY ((facility, zone), seq)
            ) WITH CLUSTERING ORDER BY (seq DESC)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.zone_epochs (
                facility text, zone text, epoch bigint,
                PRIMARY KEY ((facility, zone))
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.facilities (
                facility text PRIMARY KEY, payload blob
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

/// Creates the keyspace and tables that are missing.
pub async fn create(session: &Session, target: &CqlUri) -> Result<(), StorageError> {
    for text in ddl(target) {
        let mut statement = Statement::new(text);
        statement.set_request_timeout(Some(DDL_TIMEOUT));
        session
            .query_unpaged(statement, ())
            .await
            .map_err(|e| super::driver::exec_error("creating the schema", &e))?;
    }
    Ok(())
}

/// Every statement the backend runs, prepared once per session.
#[derive(Debug)]
pub struct Statements {
    pub insert_event: PreparedStatement,
    pub select_events: PreparedStatement,
    pub delete_bucket: PreparedStatement,
    pub index_bucket: PreparedStatement,
    pub select_buckets_from: PreparedStatement,
    pub select_buckets_below: PreparedStatement,
    pub unindex_bucket: PreparedStatement,
    pub unindex_zone: PreparedStatement,
    pub insert_snapshot: PreparedStatement,
    pub select_latest_snapshot: PreparedStatement,
    pub select_snapshot_seqs: PreparedStatement,
    pub delete_snapshot: PreparedStatement,
    pub delete_snapshots: PreparedStatement,
    pub read_epoch: PreparedStatement,
    pub insert_first_epoch: PreparedStatement,
    pub bump_epoch: PreparedStatement,
    pub upsert_facility: PreparedStatement,
    pub select_facilities: PreparedStatement,
    pub upsert_booking: PreparedStatement,
    pub select_booking: PreparedStatement,
    pub upsert_idempotency: PreparedStatement,
    pub select_idempotency: PreparedStatement,
    pub ping: PreparedStatement,
}

impl Statements {
    pub async fn prepare(session: &Session, target: &CqlUri) -> Result<Self, StorageError> {
        let ks = &target.keyspace;
        let serial = match target.options.serial_consistency {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        };
        let p = Preparer { session };
        let mut select_events = p
            .idempotent(&format!(
                "SELECT seq, payload FROM {ks}.journal
                 WHERE facility = ? AND zone = ? AND bucket = ? AND seq > ?"
            ))
            .await?;
        select_events.set_page_size(EVENTS_PAGE);
        let mut read_epoch = p
            .idempotent(&format!(
                "SELECT epoch FROM {ks}.zone_epochs WHERE facility = ? AND zone = ?"
            ))
            .await?;
        read_epoch.set_consistency(serial);
        let mut ping = p
            .idempotent("SELECT release_version FROM system.local")
            .await?;
        ping.set_request_timeout(Some(target.options.ping_timeout));
        Ok(Self {
            insert_event: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.journal (facility, zone, bucket, seq, epoch, payload)
                     VALUES (?, ?, ?, ?, ?, ?)"
                ))
                .await?,
            select_events,
            delete_bucket: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.journal WHERE facility = ? AND zone = ? AND bucket = ?"
                ))
                .await?,
            index_bucket: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.journal_buckets (facility, zone, bucket) VALUES (?, ?, ?)"
                ))
                .await?,
            select_buckets_from: p
                .idempotent(&format!(
                    "SELECT bucket FROM {ks}.journal_buckets
                     WHERE facility = ? AND zone = ? AND bucket >= ?"
                ))
                .await?,
            select_buckets_below: p
                .idempotent(&format!(
                    "SELECT bucket FROM {ks}.journal_buckets
                     WHERE facility = ? AND zone = ? AND bucket < ?"
                ))
                .await?,
            unindex_bucket: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.journal_buckets
                     WHERE facility = ? AND zone = ? AND bucket = ?"
                ))
                .await?,
            unindex_zone: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.journal_buckets WHERE facility = ? AND zone = ?"
                ))
                .await?,
            insert_snapshot: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.snapshots (facility, zone, seq, payload) VALUES (?, ?, ?, ?)"
                ))
                .await?,
            select_latest_snapshot: p
                .idempotent(&format!(
                    "SELECT seq, payload FROM {ks}.snapshots
                     WHERE facility = ? AND zone = ? LIMIT 1"
                ))
                .await?,
            select_snapshot_seqs: p
                .idempotent(&format!(
                    "SELECT seq FROM {ks}.snapshots WHERE facility = ? AND zone = ? LIMIT ?"
                ))
                .await?,
            delete_snapshot: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.snapshots WHERE facility = ? AND zone = ? AND seq = ?"
                ))
                .await?,
            delete_snapshots: p
                .idempotent(&format!(
                    "DELETE FROM {ks}.snapshots WHERE facility = ? AND zone = ?"
                ))
                .await?,
            read_epoch,
            insert_first_epoch: p
                .conditional(
                    &format!(
                        "INSERT INTO {ks}.zone_epochs (facility, zone, epoch) VALUES (?, ?, 1)
                         IF NOT EXISTS"
                    ),
                    target.options.serial_consistency,
                )
                .await?,
            bump_epoch: p
                .conditional(
                    &format!(
                        "UPDATE {ks}.zone_epochs SET epoch = ?
                         WHERE facility = ? AND zone = ? IF epoch = ?"
                    ),
                    target.options.serial_consistency,
                )
                .await?,
            upsert_facility: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.facilities (facility, payload) VALUES (?, ?)"
                ))
                .await?,
            select_facilities: p
                .idempotent(&format!("SELECT facility, payload FROM {ks}.facilities"))
                .await?,
            upsert_booking: p
                .idempotent(&format!(
                    "INSERT INTO {ks}.bookings (id, payload) VALUES (?, ?)"
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

    /// A lightweight transaction: never retried blindly by the driver.
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
