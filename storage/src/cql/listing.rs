//! Whole-table listings (zones with state, booking records, idempotency
//! keys) for backups, and `clear` for restores over a non-empty keyspace.
//!
//! A listing is one paged scan (the driver fetches a page at a time), so
//! memory stays at one page whatever the table holds. `clear` drops every
//! zone through the fencing protocol (a claim first, the claim counter
//! kept) and truncates the unfenced tables.
//!
//! This module must never delete a zone's head counter, and never run a
//! statement that is not bounded by a timeout.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use parkme_engine::{BookingId, FacilityId, Millis, UserId, ZoneId};
use scylla::deserialize::row::DeserializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;

use super::CqlStorage;
use super::driver::{exec_error, pager_error, rows_error};
use crate::backend::Listing;
use crate::error::StorageError;
use crate::model::{StoredBooking, StoredKey, ZoneKey};

/// Zones dropped at once by `clear`.
const CLEAR_PARALLEL: usize = 16;
/// `TRUNCATE` waits for every replica; give it time.
const TRUNCATE_TIMEOUT: Duration = Duration::from_secs(120);

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("stored {what}: {e}"))
}

impl CqlStorage {
    /// One paged scan of `statement`, each row mapped (or skipped: `None`).
    fn scan<'a, R, T, F>(
        &'a self,
        statement: &PreparedStatement,
        what: &'static str,
        map: F,
    ) -> Listing<'a, T>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
        T: Send + 'a,
        F: Fn(R) -> Result<Option<T>, StorageError> + Send + 'a,
    {
        let statement = statement.clone();
        futures_util::stream::once(async move {
            let pager = self
                .session
                .execute_iter(statement, ())
                .await
                .map_err(|e| pager_error(what, &e))?;
            let rows = pager.rows_stream::<R>().map_err(|e| rows_error(what, e))?;
            Ok::<_, StorageError>(
                rows.map_err(move |e| StorageError::Unavailable(format!("listing {what}: {e}"))),
            )
        })
        .try_flatten()
        .try_filter_map(move |row| futures_util::future::ready(map(row)))
        .boxed()
    }

    pub(super) fn list_zones(&self) -> Listing<'_, ZoneKey> {
        type Head = (String, String, Option<i64>, Option<i64>);
        self.scan(
            &self.st.select_zone_heads,
            "zones",
            |(facility, zone, latest, top): Head| {
                // A dropped zone keeps its head (the claim counter) with
                // neither a snapshot nor a journal.
                if latest.unwrap_or(-1) < 0 && top.unwrap_or(-1) < 0 {
                    return Ok(None);
                }
                Ok(Some(ZoneKey::new(
                    FacilityId::parse(&facility).map_err(|e| corrupt("zone key", e))?,
                    ZoneId::parse(&zone).map_err(|e| corrupt("zone key", e))?,
                )))
            },
        )
    }

    pub(super) fn list_bookings(&self) -> Listing<'_, StoredBooking> {
        let now = Millis::system_now().0;
        self.scan(
            &self.st.select_all_bookings,
            "bookings",
            move |(id, bytes, ttl): (String, Vec<u8>, Option<i32>)| {
                Ok(Some(StoredBooking {
                    id: BookingId::parse(&id).map_err(|e| corrupt("booking id", e))?,
                    bytes,
                    // Written USING TTL until its forget time.
                    forget_after: ttl
                        .map(|secs| Millis(now.saturating_add(i64::from(secs) * 1000))),
                }))
            },
        )
    }

    pub(super) fn list_keys(&self) -> Listing<'_, StoredKey> {
        self.scan(
            &self.st.select_all_keys,
            "idempotency keys",
            |(owner, key, booking, expires_at): (String, String, String, i64)| {
                Ok(Some(StoredKey {
                    owner: UserId::parse(&owner).map_err(|e| corrupt("idempotency owner", e))?,
                    key,
                    booking: BookingId::parse(&booking)
                        .map_err(|e| corrupt("idempotency booking", e))?,
                    expires_at: Millis(expires_at),
                }))
            },
        )
    }

    /// Drops every zone with state (claim first, counter kept), then
    /// truncates the facility, booking, idempotency and history tables.
    pub(super) async fn clear_all(&self) -> Result<(), StorageError> {
        self.list_zones()
            .try_for_each_concurrent(CLEAR_PARALLEL, |zone| async move {
                self.forget_zone(&zone).await
            })
            .await?;
        for table in ["facilities", "bookings", "idempotency", "history"] {
            let mut statement = Statement::new(format!("TRUNCATE {}.{table}", self.keyspace()));
            statement.set_request_timeout(Some(TRUNCATE_TIMEOUT));
            self.session
                .query_unpaged(statement, ())
                .await
                .map_err(|e| exec_error(&format!("truncating {table}"), &e))?;
        }
        Ok(())
    }
}
