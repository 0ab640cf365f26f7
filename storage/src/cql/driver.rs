//! Translating to and from the driver: errors to [`StorageError`] kinds
//! (a refused login or TLS handshake told from an outage), typed rows,
//! lightweight-transaction answers, integer conversions.
//!
//! This module must never put a password in an error message.

use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, PagerExecutionError, PrepareError, RequestAttemptError,
};
use scylla::response::query_result::QueryResult;
use scylla::value::{CqlValue, Row};

use super::CqlUri;
use super::secure::scrub;
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

/// A lightweight transaction's answer: whether it applied and, when it
/// did not, the current values of the columns its condition named.
#[derive(Debug)]
pub struct LwtAnswer {
    pub applied: bool,
    row: Row,
    columns: Vec<String>,
}

impl LwtAnswer {
    /// The current value of a bigint column the condition named (`None`
    /// when the column is null or the answer does not carry it).
    pub fn bigint(&self, column: &str) -> Option<i64> {
        let at = self.columns.iter().position(|c| c == column)?;
        self.row
            .columns
            .get(at)
            .and_then(Option::as_ref)
            .and_then(CqlValue::as_bigint)
    }
}

/// Reads the answer of a lightweight transaction (a conditional statement
/// or a conditional batch; a batch may answer with one row per row it
/// touched, all carrying the same static columns, so the first is read).
pub fn lwt_answer(result: QueryResult) -> Result<LwtAnswer, StorageError> {
    let what = "lightweight transaction";
    let rows = result.into_rows_result().map_err(|e| rows_error(what, e))?;
    let columns: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|spec| spec.name().to_owned())
        .collect();
    let row: Row = rows.first_row().map_err(|e| rows_error(what, e))?;
    let applied = columns
        .iter()
        .position(|c| c == "[applied]")
        .and_then(|at| row.columns.get(at))
        .and_then(Option::as_ref)
        .and_then(CqlValue::as_boolean)
        .ok_or_else(|| rows_error(what, "no boolean [applied] column"))?;
    Ok(LwtAnswer {
        applied,
        row,
        columns,
    })
}

/// A lightweight transaction that failed without an answer: it may or may
/// not have been applied (a timeout after the proposal was accepted is
/// completed by the next Paxos round on its partition). Never an
/// acknowledgement; the zone must recover, and its next claim settles it.
pub fn lwt_error(context: &str, e: &ExecutionError) -> StorageError {
    match exec_error(context, e) {
        StorageError::Unavailable(message) => {
            StorageError::Unavailable(format!("{message} (outcome unknown)"))
        }
        other => other,
    }
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

/// Why a session could not be opened. A refused login and a failed TLS
/// handshake are [`StorageError::Refused`] and say which; anything else is
/// an outage. The password is scrubbed from every message.
pub fn session_error(target: &CqlUri, e: &NewSessionError) -> StorageError {
    let password = target.security.credentials.as_ref().map(|c| &c.password);
    let text = scrub(e.to_string(), password);
    let user = match &target.security.credentials {
        Some(c) => format!(" as {:?}", c.username),
        None => String::new(),
    };
    match refusal(e) {
        Some(Refusal::Login) => StorageError::Refused(format!(
            "CQL authentication failed{user} at {target}: {text}"
        )),
        Some(Refusal::LoginRequired) => StorageError::Refused(format!(
            "CQL authentication failed: {target} requires a login and none is configured \
             (PARKME_CQL_USERNAME and PARKME_CQL_PASSWORD, or user:password@ in the URI)"
        )),
        Some(Refusal::Tls) => StorageError::Refused(format!(
            "CQL TLS could not be established with {target}: {text}"
        )),
        None if target.security.tls.is_none() && dropped(e) => StorageError::Unavailable(format!(
            "connecting to {target}: {text} (the node closed the connection: if the \
             cluster requires TLS, set PARKME_CQL_TLS=true or tls=true in the URI)"
        )),
        None => StorageError::Unavailable(format!("connecting to {target}: {text}")),
    }
}

enum Refusal {
    Login,
    LoginRequired,
    Tls,
}

/// The error of the last connection the driver tried, when that is why
/// the session failed.
fn last_connection_error(e: &NewSessionError) -> Option<&ConnectionError> {
    match e {
        NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error,
            },
        )) => Some(last_connection_error),
        _ => None,
    }
}

fn refusal(e: &NewSessionError) -> Option<Refusal> {
    match last_connection_error(e)? {
        ConnectionError::ConnectionSetupRequestError(setup) => match setup.get_error() {
            ConnectionSetupRequestErrorKind::DbError(DbError::AuthenticationError, _) => {
                Some(Refusal::Login)
            }
            ConnectionSetupRequestErrorKind::MissingAuthentication => Some(Refusal::LoginRequired),
            _ => None,
        },
        ConnectionError::IoError(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(|_| Refusal::Tls),
        _ => None,
    }
}

/// The node accepted the TCP connection and then dropped it (what a node
/// that requires TLS does to a plain-text client).
fn dropped(e: &NewSessionError) -> bool {
    match last_connection_error(e) {
        Some(ConnectionError::IoError(io)) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        Some(ConnectionError::BrokenConnection(_)) => true,
        Some(ConnectionError::ConnectionSetupRequestError(setup)) => {
            matches!(
                setup.get_error(),
                ConnectionSetupRequestErrorKind::BrokenConnection(_)
            )
        }
        _ => false,
    }
}
