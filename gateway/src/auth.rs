//! Who is calling: the operator (admin token), a user (HS256 JWT whose
//! `sub` owns bookings), or nobody. Sensor keys are checked by the sensor
//! socket against the facility's stored key hash.
//!
//! This module must never log a credential.

use std::collections::HashSet;

use axum::http::{HeaderMap, header};
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
}

/// Verifies bearer credentials.
pub struct Authenticator {
    admin_token_hash: Option<[u8; 32]>,
    jwt: Option<(DecodingKey, Validation)>,
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
    pub fn new(admin_token: Option<&str>, jwt_secret: Option<&str>) -> Self {
        let jwt = jwt_secret.filter(|s| !s.is_empty()).map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            // `exp` is checked when present but not required.
            validation.required_spec_claims = HashSet::new();
            validation.validate_aud = false;
            validation.leeway = 5;
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Self {
            admin_token_hash: admin_token.filter(|t| !t.is_empty()).map(digest),
            jwt,
        }
    }

    /// Reads `Authorization: Bearer …` (or a token passed another way).
    pub fn principal(&self, token: Option<&str>) -> Result<Principal, ApiError> {
        let Some(token) = token else {
            return Ok(Principal::Anonymous);
        };
        if let Some(admin) = &self.admin_token_hash
            && same_digest(admin, &digest(token))
        {
            return Ok(Principal::Admin);
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(ApiError::unauthorized("invalid credentials"));
        };
        let data = decode::<Claims>(token, key, validation)
            .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
        let user = UserId::parse(&data.claims.sub)
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))?;
        if user.as_str() == "admin" {
            return Err(ApiError::unauthorized("token subject is reserved"));
        }
        Ok(Principal::User(user))
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

    fn token(secret: &str, sub: &str) -> String {
        let claims = serde_json::json!({"sub": sub});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[test]
    fn the_admin_token_makes_an_admin() {
        let auth = Authenticator::new(Some("root"), Some("s"));
        assert_eq!(auth.principal(Some("root")).ok(), Some(Principal::Admin));
    }

    #[test]
    fn a_jwt_signed_with_the_secret_makes_its_sub_a_user() {
        let auth = Authenticator::new(Some("root"), Some("s3cret"));
        let p = auth.principal(Some(&token("s3cret", "alice"))).ok();
        assert_eq!(
            p,
            Some(Principal::User(UserId::parse("alice").expect("id")))
        );
    }

    #[test]
    fn a_jwt_signed_with_another_secret_is_refused() {
        let auth = Authenticator::new(Some("root"), Some("s3cret"));
        assert!(auth.principal(Some(&token("other", "alice"))).is_err());
        assert!(auth.principal(Some("garbage")).is_err());
    }

    #[test]
    fn no_credentials_is_anonymous() {
        let auth = Authenticator::new(None, None);
        assert_eq!(auth.principal(None).ok(), Some(Principal::Anonymous));
    }
}
