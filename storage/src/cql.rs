//! The CQL backend: ScyllaDB or any CQL-compatible cluster (Cassandra 5 in
//! the tests), selected by `PARKME_STORAGE=scylla://host:port,.../keyspace`.
//!
//! - `uri`: the `scylla://` URI and [`CqlOptions`] (replication,
//!   consistency, timeouts).
//! - `secure`: login ([`CqlCredentials`], a [`Password`] that prints as
//!   `***`) and TLS ([`CqlTls`]: rustls with ring, the server's certificate
//!   verified against a CA file or the system's roots).
//! - `schema`: the tables (created if missing) and prepared statements;
//!   `storage/SCHEMA.md` documents the layout and why it is shaped so.
//! - `plan`: what one group commit sends (groups refused outright, events
//!   grouped per zone and journal bucket, batch size caps, record TTLs).
//! - `fence`: the fencing protocol: claims, bucket epochs, conditional
//!   appends.
//! - `snapshot`: snapshots, trimming, dropping a zone.
//! - `listing`: whole-table listings for backups, `clear` for restores.
//! - `driver`: driver errors to [`StorageError`] kinds, typed rows,
//!   lightweight-transaction answers.
//!
//! # Writes
//! A [`Storage::commit_groups`] is one group commit. Every zone's events go
//! as one conditional batch per journal bucket (`... IF owner_epoch = E`,
//! one Paxos round, atomic within the partition), all zones in parallel;
//! a zone's buckets one after the other in seq order. A group's
//! idempotency keys go first, before its events (a commit that lands in
//! the journal and no further, because its writer died, must still leave
//! its key findable; a key naming a booking that never landed is harmless:
//! the retry finds no booking and books anew, overwriting the key). If
//! they fail, the journals of the zones the group writes are not sent.
//! Its booking records are sent only once every event of the group
//! applied, so a refused write never leaves a booking behind; groups
//! without events send theirs at once. `Ok` means every write of the
//! group was acknowledged at the configured consistency.
//!
//! # Fencing
//! The writer's epoch is checked in the partition it writes, by the same
//! Paxos round that writes it: there is no window between a check and a
//! write. `fence` and `storage/SCHEMA.md` give the protocol and the
//! argument.
//!
//! # Tombstones
//! The journal is bucketed: partition `(facility, zone, seq / 4096)`. A
//! snapshot at seq `n` drops only the buckets that lie entirely at or
//! below `n`, each with a single partition-level
//! deletion of a partition that is never written or read again; the hot
//! bucket is never deleted from. Snapshots are clustered newest first and
//! old ones are deleted by key; idempotency keys and ended bookings expire
//! by TTL; no write ever binds a null.
//!
//! # Failures
//! Connection errors, timeouts, `Unavailable`/`Overloaded` answers map to
//! [`StorageError::Unavailable`] (retryable); schema or statement errors to
//! [`StorageError::Corrupt`]. A lightweight transaction without an answer
//! has an unknown outcome: the group fails (never acknowledged), the group
//! committer poisons the zone, and its owner recovers through a new claim,
//! whose Paxos rounds on every bucket settle what landed. A login the
//! cluster refuses, or a TLS handshake that fails (a certificate from
//! another CA, TLS against a plain-text port), is
//! [`StorageError::Refused`], naming which, without the password.
//!
//! This module must never acknowledge a group before every one of its
//! writes was acknowledged, and never range-delete inside a journal
//! partition.

mod driver;
mod fence;
mod listing;
mod plan;
mod schema;
mod secure;
mod snapshot;
mod uri;

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::future::{BoxFuture, FutureExt, join_all};
use futures_util::{StreamExt, TryStreamExt};
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;

use self::driver::{
    all_rows, exec_error, first_row, from_i64, lwt_answer, lwt_error, pager_error, rows_error,
    session_error, to_i64,
};
use self::fence::Fences;
use self::plan::{bucket_of, first_failure, forget_ttl, idempotency_ttl};
pub use self::schema::BUCKET_SIZE;
use self::schema::Statements;
pub use self::secure::{CqlCredentials, CqlSecurity, CqlTls, Password, redact_uri};
pub use self::uri::{CqlOptions, CqlUri, CqlUriError, Replication, parse_bool, percent_decode};
use crate::backend::{Listing, Storage};
use crate::error::StorageError;
use crate::model::{Epoch, HistorySample, StoredBooking, StoredKey, Upkeep, Write, ZoneKey};

/// One in-flight write of a commit.
type InFlight<'a> = BoxFuture<'a, Result<QueryResult, ExecutionError>>;

/// Why [`CqlStorage::connect`] failed: a bad URI (permanent) or a cluster
/// that could not be reached or set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CqlConnectError {
    #[error(transparent)]
    Uri(#[from] CqlUriError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CqlConnectError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CqlConnectError::Storage(e) if e.is_retryable())
    }
}

/// The CQL store: one driver session (connection pools to every node,
/// token-aware routing), the prepared statements, and what this process
/// holds of each zone it claimed.
pub struct CqlStorage {
    session: Session,
    st: Statements,
    target: CqlUri,
    fences: Mutex<Fences>,
}

impl std::fmt::Debug for CqlStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlStorage")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl CqlStorage {
    /// Parses a `scylla://` URI, connects, and creates the keyspace and
    /// tables that are missing.
    pub async fn connect(uri: &str) -> Result<Self, CqlConnectError> {
        Ok(Self::connect_to(CqlUri::parse(uri)?).await?)
    }

    /// Connects to a parsed target (options adjusted by the caller).
    pub async fn connect_to(target: CqlUri) -> Result<Self, StorageError> {
        let options = &target.options;
        let profile = ExecutionProfile::builder()
            .consistency(options.consistency)
            .serial_consistency(Some(options.serial_consistency))
            .request_timeout(Some(options.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&target.hosts)
            .connection_timeout(options.connect_timeout)
            .default_execution_profile_handle(profile.into_handle());
        if let Some(login) = &target.security.credentials {
            builder = builder.user(login.username.clone(), login.password.expose());
        }
        if let Some(tls) = &target.security.tls {
            builder = builder.tls_context(Some(secure::client_config(tls)?));
        }
        // The driver bounds each connection attempt; this bounds the whole
        // start (name resolution, metadata fetch) as well.
        let bound = options.connect_timeout * 3;
        let session = tokio::time::timeout(bound, builder.build())
            .await
            .map_err(|_| {
                StorageError::Unavailable(format!(
                    "no CQL node of {target} answered within {bound:?}"
                ))
            })?
            .map_err(|e| session_error(&target, &e))?;
        schema::create(&session, &target).await?;
        let st = Statements::prepare(&session, &target).await?;
        tracing::info!(
            target_uri = %target,
            user = target.security.credentials.as_ref().map(|c| c.username.as_str()),
            tls = target.security.tls.is_some(),
            "connected to the CQL cluster"
        );
        Ok(Self {
            session,
            st,
            target,
            fences: Mutex::new(Fences::default()),
        })
    }

    /// The keyspace this store lives in.
    pub fn keyspace(&self) -> &str {
        &self.target.keyspace
    }

    /// The driver session, for tools and tests (e.g. dropping a keyspace).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn fences(&self) -> MutexGuard<'_, Fences> {
        // Only plain map operations run under this lock: recover from a
        // poisoned lock rather than failing every later commit.
        self.fences.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The zone's journal buckets at or above `from`, ascending.
    async fn buckets_from(&self, zone: &ZoneKey, from: i64) -> Result<Vec<i64>, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), from);
        let result = self
            .session
            .execute_unpaged(&self.st.select_buckets_from, values)
            .await
            .map_err(|e| exec_error("listing journal buckets", &e))?;
        Ok(all_rows::<(i64,)>(result, "journal bucket")?
            .into_iter()
            .map(|(b,)| b)
            .collect())
    }

    /// The booking and idempotency records of one group (`which`), all at
    /// once.
    async fn write_records(&self, group: &[Write], which: Records) -> Result<(), StorageError> {
        let now = Millis::system_now();
        let mut sends: Vec<InFlight<'_>> = Vec::new();
        for write in group {
            let wanted = match write {
                Write::Event { .. } => false,
                Write::Booking { .. } => true,
                Write::Idempotency { .. } => which == Records::All,
            };
            if !wanted {
                continue;
            }
            match write {
                Write::Event { .. } => {}
                Write::Booking {
                    id,
                    bytes,
                    forget_after: None,
                } => {
                    let values = (id.as_str(), bytes.as_slice());
                    let send = self
                        .session
                        .execute_unpaged(&self.st.upsert_booking, values);
                    sends.push(send.boxed());
                }
                Write::Booking {
                    id,
                    bytes,
                    forget_after: Some(at),
                } => {
                    let values = (id.as_str(), bytes.as_slice(), forget_ttl(*at, now));
                    let send = self
                        .session
                        .execute_unpaged(&self.st.upsert_booking_ttl, values);
                    sends.push(send.boxed());
                }
                Write::Idempotency {
                    owner,
                    key,
                    booking,
                    expires_at,
                    ..
                } => {
                    let values = (
                        owner.as_str(),
                        key.as_str(),
                        booking.as_str(),
                        expires_at.0,
                        idempotency_ttl(*expires_at, now),
                    );
                    let send = self
                        .session
                        .execute_unpaged(&self.st.upsert_idempotency, values);
                    sends.push(send.boxed());
                }
            }
        }
        first_failure(
            join_all(sends)
                .await
                .into_iter()
                .map(|o| o.map(drop).map_err(|e| exec_error("writing a record", &e)))
                .collect(),
        )
    }
}

/// Day partitions of history read at once.
const HISTORY_PARALLEL: usize = 8;

/// The day partition of a sample taken at `at` (days since the epoch).
fn history_day(at: Millis) -> i64 {
    at.0.div_euclid(86_400_000)
}

/// Claims of one facility record that may lose a race before giving up.
const FACILITY_CLAIM_ATTEMPTS: usize = 8;

impl CqlStorage {
    /// Claims the idempotency keys of a group that has events: each lands
    /// only if the key is still as its caller read it (absent, or the
    /// binding in `replaces`). A key taken meanwhile (a concurrent attempt,
    /// or the successor of a replaced owner) fails the group, retryably:
    /// the retry finds the winner's booking.
    async fn claim_keys(&self, group: &[Write]) -> Result<(), StorageError> {
        let now = Millis::system_now();
        let mut claims: Vec<BoxFuture<'_, Result<(), StorageError>>> = Vec::new();
        for write in group {
            let Write::Idempotency {
                owner,
                key,
                booking,
                expires_at,
                replaces,
            } = write
            else {
                continue;
            };
            let ttl = idempotency_ttl(*expires_at, now);
            let claim = async move {
                let sent = match replaces {
                    None => {
                        let values = (
                            owner.as_str(),
                            key.as_str(),
                            booking.as_str(),
                            expires_at.0,
                            ttl,
                        );
                        self.session
                            .execute_unpaged(&self.st.claim_new_key, values)
                            .await
                    }
                    Some((seen, seen_expiry)) => {
                        let values = (
                            ttl,
                            booking.as_str(),
                            expires_at.0,
                            owner.as_str(),
                            key.as_str(),
                            seen.as_str(),
                            seen_expiry.0,
                        );
                        self.session
                            .execute_unpaged(&self.st.claim_seen_key, values)
                            .await
                    }
                };
                let sent = sent.map_err(|e| lwt_error("claiming an idempotency key", &e))?;
                if lwt_answer(sent)?.applied {
                    Ok(())
                } else {
                    Err(StorageError::Unavailable(format!(
                        "idempotency key {key:?} was claimed by a concurrent attempt; retry"
                    )))
                }
            };
            claims.push(claim.boxed());
        }
        first_failure(join_all(claims).await)
    }
}

/// Which records of a group [`CqlStorage::write_records`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Records {
    All,
    /// Booking records only (after the group's events; its keys were
    /// claimed before them).
    Bookings,
}

#[async_trait]
impl Storage for CqlStorage {
    fn name(&self) -> &'static str {
        "scylla"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        let mut outcomes = self.commit_groups(&[writes]).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(StorageError::Unavailable("no commit outcome".into())))
    }

    async fn commit_groups(&self, groups: &[&[Write]]) -> Vec<Result<(), StorageError>> {
        let plan = {
            let fences = self.fences();
            plan::plan(groups, |zone| fences.newest(zone))
        };
        let gated = |i: usize| plan.refused[i].is_none() && !plan.zones_of[i].is_empty();
        // Keys before events, each claimed only if it is still what its
        // booking's caller read; a zone whose groups' keys failed is not
        // sent.
        let keys = join_all(groups.iter().enumerate().map(|(i, group)| async move {
            if !gated(i) {
                return Ok(());
            }
            self.claim_keys(group).await
        }))
        .await;
        let mut unsent: Vec<Option<StorageError>> = vec![None; plan.zones.len()];
        for (i, outcome) in keys.iter().enumerate() {
            if let Err(e) = outcome {
                for &z in &plan.zones_of[i] {
                    unsent[z] = Some(e.clone());
                }
            }
        }
        // Journals of every zone in parallel, and beside them the records
        // of groups that have no events to wait for.
        let journals = join_all(
            plan.zones
                .iter()
                .zip(&unsent)
                .map(|(zone, unsent)| async move {
                    match unsent {
                        Some(e) => Err(e.clone()),
                        None => self.write_zone(zone).await,
                    }
                }),
        );
        let ungated = join_all(groups.iter().enumerate().map(|(i, group)| {
            let waits = plan.refused[i].is_some() || !plan.zones_of[i].is_empty();
            async move {
                if waits {
                    return None;
                }
                Some(self.write_records(group, Records::All).await)
            }
        }));
        let (journals, ungated): (
            Vec<Result<(), StorageError>>,
            Vec<Option<Result<(), StorageError>>>,
        ) = futures_util::join!(journals, ungated);
        let gated = join_all(groups.iter().enumerate().map(|(i, group)| {
            let journals = &journals;
            let plan = &plan;
            async move {
                if plan.refused[i].is_some() || plan.zones_of[i].is_empty() {
                    return None;
                }
                let failed = first_failure(
                    plan.zones_of[i]
                        .iter()
                        .map(|&z| journals[z].clone())
                        .collect(),
                );
                Some(match failed {
                    Ok(()) => self.write_records(group, Records::Bookings).await,
                    Err(e) => Err(e),
                })
            }
        }))
        .await;
        plan.refused
            .into_iter()
            .zip(ungated.into_iter().zip(gated))
            .map(
                |(refused, (ungated, gated))| match (refused, ungated, gated) {
                    (Some(e), _, _) => Err(e),
                    (None, Some(outcome), _) | (None, None, Some(outcome)) => outcome,
                    (None, None, None) => Ok(()),
                },
            )
            .collect()
    }

    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError> {
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for bucket in self
            .buckets_from(zone, bucket_of(after.saturating_add(1)))
            .await?
        {
            let values = (zone.facility.as_str(), zone.zone.as_str(), bucket, after);
            let mut rows = self
                .session
                .execute_iter(self.st.select_events.clone(), values)
                .await
                .map_err(|e| pager_error("reading the journal", &e))?
                .rows_stream::<(i64, Vec<u8>)>()
                .map_err(|e| rows_error("journal", e))?;
            while let Some((seq, bytes)) = rows
                .try_next()
                .await
                .map_err(|e| StorageError::Unavailable(format!("reading the journal: {e}")))?
            {
                events.push((Seq(from_i64(seq, "seq")?), bytes));
            }
        }
        debug_assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
        Ok(events)
    }

    async fn put_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.store_snapshot(zone, epoch, seq, &bytes).await
    }

    async fn latest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        self.newest_snapshot(zone).await
    }

    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        self.claim(zone).await
    }

    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        self.forget_zone(zone).await
    }

    async fn put_facility(
        &self,
        id: &FacilityId,
        bytes: Vec<u8>,
        fence: Option<Epoch>,
    ) -> Result<(), StorageError> {
        let Some(fence) = fence else {
            self.session
                .execute_unpaged(&self.st.upsert_facility, (id.as_str(), bytes.as_slice()))
                .await
                .map_err(|e| exec_error("writing a facility", &e))?;
            return Ok(());
        };
        let ours = to_i64(fence.0, "facility fence")?;
        let result = self
            .session
            .execute_unpaged(
                &self.st.fenced_put_facility,
                (bytes.as_slice(), id.as_str(), ours),
            )
            .await
            .map_err(|e| lwt_error("writing a facility record", &e))?;
        let answer = lwt_answer(result)?;
        if answer.applied {
            return Ok(());
        }
        Err(StorageError::Fenced {
            zone: format!("facility record {id}"),
            current: answer
                .bigint("owner_epoch")
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(0),
            ours: fence.0,
        })
    }

    async fn put_history(&self, samples: Vec<HistorySample>) -> Result<(), StorageError> {
        let now = Millis::system_now();
        let mut outcomes = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(HISTORY_PARALLEL) {
            let mut sends: Vec<InFlight<'_>> = Vec::with_capacity(chunk.len());
            for s in chunk {
                let values = (
                    s.facility.as_str(),
                    history_day(s.at),
                    s.at.0,
                    s.bytes.as_slice(),
                    forget_ttl(s.keep_until, now),
                );
                let send = self
                    .session
                    .execute_unpaged(&self.st.insert_history, values);
                sends.push(send.boxed());
            }
            for outcome in join_all(sends).await {
                outcomes.push(
                    outcome
                        .map(drop)
                        .map_err(|e| exec_error("writing a history sample", &e)),
                );
            }
        }
        first_failure(outcomes)
    }

    async fn history(
        &self,
        id: &FacilityId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>)>, StorageError> {
        if from > to {
            return Ok(Vec::new());
        }
        let days = history_day(from)..=history_day(to);
        let reads = days.map(|day| async move {
            let values = (id.as_str(), day, from.0, to.0);
            let result = self
                .session
                .execute_unpaged(&self.st.select_history, values)
                .await
                .map_err(|e| exec_error("reading history", &e))?;
            all_rows::<(i64, Vec<u8>)>(result, "history sample")
        });
        let mut samples = Vec::new();
        for day in futures_util::stream::iter(reads)
            .buffered(HISTORY_PARALLEL)
            .collect::<Vec<_>>()
            .await
        {
            samples.extend(day?.into_iter().map(|(at, bytes)| (Millis(at), bytes)));
        }
        Ok(samples)
    }

    async fn purge_history(&self, _before: Millis) -> Result<u64, StorageError> {
        // Samples expire by TTL.
        Ok(0)
    }

    async fn claim_facility(&self, id: &FacilityId) -> Result<Option<Epoch>, StorageError> {
        for _ in 0..FACILITY_CLAIM_ATTEMPTS {
            let read = self
                .session
                .execute_unpaged(&self.st.read_facility_fence, (id.as_str(),))
                .await
                .map_err(|e| exec_error("reading a facility fence", &e))?;
            let Some((current, Some(_payload))) =
                first_row::<(Option<i64>, Option<Vec<u8>>)>(read, "facility fence")?
            else {
                // No record: nothing to fence (and no row is made here).
                return Ok(None);
            };
            let (sent, next) = match current {
                None => (
                    self.session
                        .execute_unpaged(&self.st.first_facility_claim, (id.as_str(),))
                        .await,
                    1,
                ),
                Some(current) => {
                    let next = current.checked_add(1).ok_or_else(|| {
                        StorageError::Corrupt(format!("fence of facility {id} overflows"))
                    })?;
                    let values = (next, id.as_str(), current);
                    let sent = self
                        .session
                        .execute_unpaged(&self.st.next_facility_claim, values)
                        .await;
                    (sent, next)
                }
            };
            let sent = sent.map_err(|e| lwt_error("claiming a facility record", &e))?;
            if lwt_answer(sent)?.applied {
                return Ok(Some(Epoch(from_i64(next, "facility fence")?)));
            }
        }
        Err(StorageError::Unavailable(format!(
            "claiming facility {id} lost {FACILITY_CLAIM_ATTEMPTS} races in a row"
        )))
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        let mut rows = self
            .session
            .execute_iter(self.st.select_facilities.clone(), ())
            .await
            .map_err(|e| pager_error("listing facilities", &e))?
            .rows_stream::<(String, Option<Vec<u8>>)>()
            .map_err(|e| rows_error("facility", e))?;
        let mut facilities = Vec::new();
        while let Some((id, bytes)) = rows
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable(format!("listing facilities: {e}")))?
        {
            // A row with a fence and no record is not a facility.
            let Some(bytes) = bytes else { continue };
            let id = FacilityId::parse(&id)
                .map_err(|e| StorageError::Corrupt(format!("stored facility id {id:?}: {e}")))?;
            facilities.push((id, bytes));
        }
        facilities.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(facilities)
    }

    async fn facility(&self, id: &FacilityId) -> Result<Option<Vec<u8>>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_facility, (id.as_str(),))
            .await
            .map_err(|e| exec_error("reading a facility", &e))?;
        Ok(first_row::<(Option<Vec<u8>>,)>(result, "facility")?.and_then(|(bytes,)| bytes))
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_booking, (id.as_str(),))
            .await
            .map_err(|e| exec_error("reading a booking", &e))?;
        Ok(first_row::<(Vec<u8>,)>(result, "booking")?.map(|(bytes,)| bytes))
    }

    async fn idempotency_binding(
        &self,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<(BookingId, Millis)>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_idempotency, (owner.as_str(), key))
            .await
            .map_err(|e| exec_error("reading an idempotency key", &e))?;
        let Some((booking, expires_at)) = first_row::<(String, i64)>(result, "idempotency key")?
        else {
            return Ok(None);
        };
        BookingId::parse(&booking)
            .map(|id| Some((id, Millis(expires_at))))
            .map_err(|e| StorageError::Corrupt(format!("stored booking id {booking:?}: {e}")))
    }

    /// Nothing to do here: idempotency keys and forgettable booking records
    /// were written `USING TTL`, and the cluster expires them itself.
    async fn upkeep(&self, _now: Millis) -> Result<Upkeep, StorageError> {
        Ok(Upkeep::default())
    }

    fn zones(&self) -> Listing<'_, ZoneKey> {
        self.list_zones()
    }

    fn bookings(&self) -> Listing<'_, StoredBooking> {
        self.list_bookings()
    }

    fn idempotency_keys(&self) -> Listing<'_, StoredKey> {
        self.list_keys()
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.clear_all().await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.session
            .execute_unpaged(&self.st.ping, ())
            .await
            .map_err(|e| StorageError::Unavailable(format!("ping: {e}")))?;
        Ok(())
    }
}
