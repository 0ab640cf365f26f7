//! Request extractors that speak the contract's error shape: the caller
//! (credentials + rate limits), JSON bodies (400 malformed, 413 too
//! large, 408 too slow) and path ids, parsed into their types once here
//! ([`Id`]: 404 when they cannot name anything).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use parkme_engine::{BookingId, FacilityId, IdError, SpotId, ZoneId};

use crate::auth::{Principal, bearer};
use crate::error::ApiError;
use crate::metrics;
pub use crate::peer::ClientIp;
use crate::rate_limit::LimitKey;
use crate::state::AppState;

/// The authenticated (or anonymous) caller of a request, already counted
/// against its rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub ip: IpAddr,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.principal {
            Principal::Admin => Ok(()),
            Principal::Anonymous => Err(ApiError::unauthorized("admin credentials required")),
            Principal::User(_) => Err(ApiError::forbidden("admin only")),
        }
    }
}

/// The client address the guard settled (through trusted proxies), else
/// the TCP peer.
pub fn client_ip(parts: &Parts) -> IpAddr {
    if let Some(ClientIp(ip)) = parts.extensions.get::<ClientIp>() {
        return *ip;
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The caller's IP alone (for the app socket's per-IP caps), taken as
/// [`client_ip`] takes it.
impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        let is_write = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let principal = bearer(&parts.headers).and_then(|token| state.auth().principal(token));
        let limit_key = match &principal {
            Ok(Principal::Admin) => None,
            Ok(Principal::User(user)) => Some(LimitKey::User(user.to_string())),
            // Failed credentials count as anonymous, so guessing is limited.
            Ok(Principal::Anonymous) | Err(_) => is_write.then_some(LimitKey::AnonymousIp(ip)),
        };
        if let Some(key) = limit_key
            && let Err(wait) = state.limits().check_shared(key).await
        {
            metrics::rate_limited();
            return Err(ApiError::rate_limited(wait));
        }
        Ok(Caller {
            principal: principal?,
            ip,
        })
    }
}

/// A JSON body, refused with the contract's errors.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let read = Bytes::from_request(req, state);
        let read = match state.body_timeout() {
            Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| {
                metrics::connection_timed_out("body");
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the request body did not arrive within {limit:?}"),
                )
            })?,
            None => read.await,
        };
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request bodies are limited to 1 MiB",
                )
            } else {
                ApiError::bad_request("malformed_body", "could not read the request body")
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("invalid JSON body: {e}")))
    }
}

/// A caller that must be the admin; refused before the body is read.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

/// A caller that must be signed in (a user or the admin).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Caller);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.principal == Principal::Anonymous {
            return Err(ApiError::unauthorized("credentials required"));
        }
        Ok(SignedIn(caller))
    }
}

/// Path ids (`{fid}`, `{zid}`, `{sid}`, `{id}`) as strings. A parameter
/// that is not valid UTF-8 once percent-decoded cannot name anything, so
/// it is the same 404 as any other unknown id (axum's own `Path` would
/// answer a plain-text 400).
#[derive(Debug)]
pub struct Ids<T>(pub T);

impl<T, S> FromRequestParts<S> for Ids<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(ids)| Ids(ids))
            .map_err(|rejection| unreadable_id(&rejection))
    }
}

fn unreadable_id(rejection: &PathRejection) -> ApiError {
    let key = match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::DeserializeError { key, .. } => key.as_str(),
            _ => "",
        },
        _ => "",
    };
    let (code, what) = match key {
        "fid" => ("unknown_facility", "facility"),
        "zid" => ("unknown_zone", "zone"),
        "sid" => ("unknown_spot", "spot"),
        "id" => ("unknown_booking", "booking"),
        _ => ("not_found", "resource"),
    };
    ApiError::not_found(code, format!("no such {what}"))
}

/// An id type a path segment names.
pub trait PathId: Sized {
    /// What it names, for the 404 (`unknown_facility`, ...).
    const WHAT: &'static str;
    fn parse(raw: &str) -> Result<Self, IdError>;
}

macro_rules! path_id {
    ($($name:ident => $what:literal),* $(,)?) => {
        $(impl PathId for $name {
            const WHAT: &'static str = $what;
            fn parse(raw: &str) -> Result<Self, IdError> {
                $name::parse(raw)
            }
        })*
    };
}

path_id!(FacilityId => "facility", ZoneId => "zone", SpotId => "spot", BookingId => "booking");

fn parse_id<T: PathId>(raw: &str) -> Result<T, ApiError> {
    T::parse(raw).map_err(|_| ApiError::unknown(T::WHAT, raw))
}

/// Typed path ids (`{fid}`, `{fid}/{zid}`, ...), parsed once here: a
/// segment that is not a valid id cannot name anything, so it is the
/// 404 of an unknown one. Handlers never parse ids again.
#[derive(Debug)]
pub struct Id<T>(pub T);

impl<A: PathId + Send> FromRequestParts<AppState> for Id<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ids(raw) = Ids::<String>::from_request_parts(parts, state).await?;
        parse_id(&raw).map(Id)
    }
}

impl<A: PathId + Send, B: PathId + Send> FromRequestParts<AppState> for Id<(A, B)> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ids((a, b)) = Ids::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(Id((parse_id(&a)?, parse_id(&b)?)))
    }
}
