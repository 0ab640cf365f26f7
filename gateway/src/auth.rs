//! Who is calling: the operator (admin token), a user (HS256 JWT whose
//! `sub` owns bookings), or nobody. Sensor keys are checked by the sensor
//! socket against the facility's stored key hash.
//!
//! A user token must carry `exp` and is refused once past it (and before
//! its `nbf`, when it has one), give or take the configured leeway. A
//! [`Session`] remembers when its token stops being valid, so a socket
//! opened with it can refuse booking ops after that instant although the
//! token was only read at the handshake.
//!
//! This module must never log a credential.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use parkme_engine::UserId;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    User(UserId),
    Anonymous,
}

impl Principal {
    /// The owner recorded on bookings this principal makes.
    pub fn owner(&self) -> Option<UserId> {
        match self {
            Principal::Admin => UserId::parse("admin").ok(),
            Principal::User(id) => Some(id.clone()),
            Principal::Anonymous => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Required and checked by the validation (optional here so that a
    /// token without it gets the validation's clear refusal); kept for
    /// sessions.
    #[serde(default)]
    exp: Option<u64>,
    /// Every other claim, read as JSON values only to be refused when it
    /// is not JSON: a claim skipped unread is not checked for UTF-8
    /// (serde_json), and a claims set must be a JSON object (RFC 7519
    /// §7.2), i.e. UTF-8 text.
    #[serde(flatten)]
    _others: serde_json::Map<String, serde_json::Value>,
}

/// Default tolerance, in seconds, for clocks that disagree on `exp`/`nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// Seconds since the Unix epoch, the unit of `exp` and `nbf`.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A caller as the credentials presented once (a handshake) say, and
/// until when they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    /// Last second (Unix time, leeway included) at which a user token is
    /// still valid; `None` for the admin and for anonymous callers.
    pub valid_until: Option<u64>,
}

impl Session {
    /// Whether the token behind this session has expired at `now`.
    pub fn expired_at(&self, now: u64) -> bool {
        self.valid_until.is_some_and(|last| now > last)
    }
}

/// Verifies bearer credentials.
pub struct Authenticator {
    admin_token_hash: Option<[u8; 32]>,
    jwt: Option<(DecodingKey, Validation)>,
}

/// The 401 a refused user token gets: always `unauthorized`, with a
/// message saying what was wrong (never echoing the token).
fn token_error(kind: &ErrorKind) -> ApiError {
    let message = match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            "the token has no exp claim; user tokens must expire"
        }
        ErrorKind::InvalidClaimFormat(claim) if claim == "exp" || claim == "nbf" => {
            "the token's exp or nbf is not a number of seconds"
        }
        _ => "invalid token",
    };
    ApiError::unauthorized(message)
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("admin", &self.admin_token_hash.is_some())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Authenticator {
    pub fn new(admin_token: Option<&str>, jwt_secret: Option<&str>, leeway_secs: u64) -> Self {
        let jwt = jwt_secret.filter(|s| !s.is_empty()).map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = false;
            validation.leeway = leeway_secs;
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Self {
            admin_token_hash: admin_token.filter(|t| !t.is_empty()).map(digest),
            jwt,
        }
    }

    /// Reads `Authorization: Bearer …` (or a token passed another way).
    pub fn principal(&self, token: Option<&str>) -> Result<Principal, ApiError> {
        self.session(token).map(|session| session.principal)
    }

    /// Like [`Authenticator::principal`], remembering until when a user
    /// token holds (for a socket that outlives the request).
    pub fn session(&self, token: Option<&str>) -> Result<Session, ApiError> {
        let Some(token) = token else {
            return Ok(Session {
                principal: Principal::Anonymous,
                valid_until: None,
            });
        };
        if let Some(admin) = &self.admin_token_hash
            && same_digest(admin, &digest(token))
        {
            return Ok(Session {
                principal: Principal::Admin,
                valid_until: None,
            });
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(ApiError::unauthorized("invalid credentials"));
        };
        let data = decode::<Claims>(token, key, validation).map_err(|e| token_error(e.kind()))?;
        let user = UserId::parse(&data.claims.sub)
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))?;
        if user.as_str() == "admin" {
            return Err(ApiError::unauthorized("token subject is reserved"));
        }
        Ok(Session {
            principal: Principal::User(user),
            valid_until: Some(
                data.claims
                    .exp
                    .unwrap_or_default()
                    .saturating_add(validation.leeway),
            ),
        })
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected 'Authorization: Bearer <token>'"))?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn signed(secret: &str, claims: &serde_json::Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    fn token(secret: &str, sub: &str) -> String {
        signed(
            secret,
            &serde_json::json!({"sub": sub, "exp": unix_now() + 3600}),
        )
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some("root"), Some("s3cret"), DEFAULT_LEEWAY_SECS)
    }

    fn refusal(result: Result<Principal, ApiError>) -> (u16, &'static str, String) {
        let error = result.expect_err("refused");
        (error.status.as_u16(), error.code, error.message)
    }

    #[test]
    fn the_admin_token_makes_an_admin() {
        let auth = Authenticator::new(Some("root"), Some("s"), DEFAULT_LEEWAY_SECS);
        assert_eq!(auth.principal(Some("root")).ok(), Some(Principal::Admin));
    }

    #[test]
    fn a_jwt_signed_with_the_secret_makes_its_sub_a_user() {
        let auth = auth();
        let p = auth.principal(Some(&token("s3cret", "alice"))).ok();
        assert_eq!(
            p,
            Some(Principal::User(UserId::parse("alice").expect("id")))
        );
    }

    #[test]
    fn a_jwt_signed_with_another_secret_is_refused() {
        let auth = auth();
        assert!(auth.principal(Some(&token("other", "alice"))).is_err());
        assert!(auth.principal(Some("garbage")).is_err());
    }

    #[test]
    fn a_user_token_whose_claims_are_not_utf8_json_is_refused() {
        // Found by the jwt fuzz target: signed claims with bytes that are
        // not UTF-8 in a claim nobody reads made a user session.
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = unix_now() + 3600;
        let sign = |claims: &[u8]| {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let key = EncodingKey::from_secret(b"s3cret");
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
                .expect("HS256");
            format!("{message}.{signature}")
        };
        let text = format!(r#"{{"sub":"alice","exp":{exp},"note":"time one"}}"#);
        assert!(auth().principal(Some(&sign(text.as_bytes()))).is_ok());
        let mut not_text = format!(r#"{{"sub":"alice","exp":{exp},"note":"tim"#).into_bytes();
        not_text.extend_from_slice(&[0x9b, 0x7f]);
        not_text.extend_from_slice(br#"one"}"#);
        assert!(std::str::from_utf8(&not_text).is_err());
        assert_eq!(
            refusal(auth().principal(Some(&sign(&not_text)))),
            (401, "unauthorized", "invalid token".into())
        );
    }

    #[test]
    fn no_credentials_is_anonymous() {
        let auth = Authenticator::new(None, None, DEFAULT_LEEWAY_SECS);
        assert_eq!(auth.principal(None).ok(), Some(Principal::Anonymous));
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let token = signed("s3cret", &serde_json::json!({"sub": "alice"}));
        let (status, code, message) = refusal(auth().principal(Some(&token)));
        assert_eq!((status, code), (401, "unauthorized"));
        assert!(message.contains("exp"), "{message}");
    }

    #[test]
    fn an_expired_token_is_refused_past_the_leeway_only() {
        let now = unix_now();
        let expired = signed(
            "s3cret",
            &serde_json::json!({"sub": "alice", "exp": now - 60}),
        );
        let (status, _, message) = refusal(auth().principal(Some(&expired)));
        assert_eq!(status, 401);
        assert!(message.contains("expired"), "{message}");
        let within = signed(
            "s3cret",
            &serde_json::json!({"sub": "alice", "exp": now - 2}),
        );
        assert!(auth().principal(Some(&within)).is_ok());
        let strict = Authenticator::new(None, Some("s3cret"), 0);
        assert!(strict.principal(Some(&within)).is_err());
    }

    #[test]
    fn a_token_before_its_nbf_is_refused() {
        let now = unix_now();
        let early = serde_json::json!({"sub": "alice", "exp": now + 3600, "nbf": now + 600});
        let (status, _, message) = refusal(auth().principal(Some(&signed("s3cret", &early))));
        assert_eq!(status, 401);
        assert!(message.contains("nbf"), "{message}");
        let ready = serde_json::json!({"sub": "alice", "exp": now + 3600, "nbf": now - 1});
        assert!(auth().principal(Some(&signed("s3cret", &ready))).is_ok());
    }

    #[test]
    fn a_session_knows_when_its_token_expires() {
        let now = unix_now();
        let token = signed(
            "s3cret",
            &serde_json::json!({"sub": "alice", "exp": now + 100}),
        );
        let session = auth().session(Some(&token)).expect("valid");
        assert_eq!(session.valid_until, Some(now + 100 + DEFAULT_LEEWAY_SECS));
        assert!(!session.expired_at(now + 100 + DEFAULT_LEEWAY_SECS));
        assert!(session.expired_at(now + 101 + DEFAULT_LEEWAY_SECS));
        let admin = auth().session(Some("root")).expect("admin");
        assert!(!admin.expired_at(u64::MAX));
    }
}
