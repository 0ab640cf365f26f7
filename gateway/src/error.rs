//! The edge's errors: every failure becomes the contract's
//! `{"error":{"code","message"}}` with a fitting status. Internal details
//! are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parkme_actors::ActorError;
use parkme_engine::EngineError;
use parkme_storage::StorageError;

/// An HTTP error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later",
            )
        }
    }

    /// The same error under another code.
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NoSpotAvailable
            | EngineError::SpotNotAvailable(_)
            | EngineError::InvalidTransition(_)
            | EngineError::SpotHasLiveBooking(_)
            | EngineError::ZoneHasLiveBooking(_)
            | EngineError::NoCapacity
            | EngineError::NotLive(_)
            | EngineError::ReservationsOverQuota { .. } => StatusCode::CONFLICT,
            EngineError::UnknownSpot(_) | EngineError::UnknownBooking(_) => StatusCode::NOT_FOUND,
            EngineError::WrongZoneShape(_)
            | EngineError::InvalidLayout(_)
            | EngineError::InvalidHold { .. }
            | EngineError::InvalidWindow(_)
            | EngineError::ReservationNamesSpot => StatusCode::BAD_REQUEST,
            EngineError::OutOfOrder { .. } => {
                tracing::error!(error = %e, "journal out of order");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the zone is recovering; retry shortly",
                );
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::warn!(error = %e, "storage error");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage is unavailable; retry shortly",
        );
        error.retry_after = Some(1);
        error
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Engine(e) => e.into(),
            ActorError::Storage(e) => e.into(),
            ActorError::UnknownFacility(id) => {
                ApiError::not_found("unknown_facility", format!("facility {id} does not exist"))
            }
            ActorError::UnknownZone(id) => {
                ApiError::not_found("unknown_zone", format!("zone {id} does not exist"))
            }
            ActorError::Unavailable(what) => {
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the {what} is restarting; retry shortly"),
                );
                error.retry_after = Some(1);
                error
            }
            ActorError::Corrupt(detail) => {
                tracing::error!(detail = %detail, "corrupt stored data");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error",
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
