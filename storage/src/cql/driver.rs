//! Translating to and from the driver: errors to [`StorageError`] kinds,
//! typed rows, lightweight-transaction answers, integer conversions.

use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{
    DbError, ExecutionError, NewSessionError, PagerExecutionError, PrepareError,
    RequestAttemptError,
};
use scylla::response::query_result::QueryResult;
use scylla::value::{CqlValue, Row};

use super::CqlUri;
use crate::error::StorageError;

pub fn to_i64(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value)
        .map_err(|_| StorageError::Corrupt(format!("{what} {value} does not fit a CQL bigint")))
}

pub fn from_i64(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value)
        .map_err(|_| StorageError::Corrupt(format!("stored {what} {value} is negative")))
}

pub fn rows_error(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("unexpected {what} rows: {e}"))
}

pub fn all_rows<R>(result: QueryResult, what: &str) -> Result<Vec<R>, StorageError>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    let rows = result.into_rows_result().map_err(|e| rows_error(what, e))?;
    rows.rows::<R>()
        .map_err(|e| rows_error(what, e))?
        .collect::<Result<Vec<R>, _>>()
        .map_err(|e| rows_error(what, e))
}

pub fn first_row<R>(result: QueryResult, what: &str) -> Result<Option<R>, StorageError>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    let rows = result.into_rows_result().map_err(|e| rows_error(what, e))?;
    rows.maybe_first_row::<R>().map_err(|e| rows_error(what, e))
}

/// Reads a lightweight transaction's answer: whether it applied, and the
/// `epoch` the row held when it did not (absent if there is no row).
pub fn lwt_outcome(result: QueryResult) -> Result<(bool, Option<i64>), StorageError> {
    let what = "lightweight transaction";
    let rows = result.into_rows_result().map_err(|e| rows_error(what, e))?;
    let specs = rows.column_specs();
    let applied_at = specs
        .get_by_name("[applied]")
        .map(|(i, _)| i)
        .ok_or_else(|| rows_error(what, "no [applied] column"))?;
    let epoch_at = specs.get_by_name("epoch").map(|(i, _)| i);
    let row: Row = rows.single_row().map_err(|e| rows_error(what, e))?;
    let cell = |i: usize| row.columns.get(i).and_then(Option::as_ref);
    let applied = cell(applied_at)
        .and_then(CqlValue::as_boolean)
        .ok_or_else(|| rows_error(what, "[applied] is not a boolean"))?;
    let epoch = epoch_at.and_then(cell).and_then(CqlValue::as_bigint);
    Ok((applied, epoch))
}

/// Whether a server error is permanent (the statement or schema is wrong)
/// rather than a passing outage.
fn permanent(db: &DbError) -> bool {
    matches!(
        db,
        DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::ConfigError
            | DbError::ProtocolError
    )
}

pub fn exec_error(context: &str, e: &ExecutionError) -> StorageError {
    let message = format!("{context}: {e}");
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) if permanent(db) => {
            StorageError::Corrupt(message)
        }
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => {
            StorageError::Corrupt(message)
        }
        _ => StorageError::Unavailable(message),
    }
}

pub fn prepare_error(text: &str, e: &PrepareError) -> StorageError {
    let statement = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match e {
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(db, _),
        } if permanent(db) => StorageError::Corrupt(format!("preparing {statement:?}: {e}")),
        _ => StorageError::Unavailable(format!("preparing {statement:?}: {e}")),
    }
}

pub fn pager_error(context: &str, e: &PagerExecutionError) -> StorageError {
    StorageError::Unavailable(format!("{context}: {e}"))
}

pub fn session_error(target: &CqlUri, e: &NewSessionError) -> StorageError {
    StorageError::Unavailable(format!("connecting to {target}: {e}"))
}
