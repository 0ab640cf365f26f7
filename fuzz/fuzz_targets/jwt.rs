//! Credentials (`auth::bearer` on the `Authorization` header, then
//! `Authenticator::session`): never panics; only the admin token makes
//! the admin; a user session comes only from a token signed with the
//! secret whose claims hold a valid `sub` (never `admin`) and an `exp`
//! that has not passed, and it ends at that `exp` (plus the leeway).
//!
//! Input: a mode byte, then parts (`parkme_fuzz::parts`). Mode 0: the
//! header value as sent. Mode 1: a JOSE header and claims (JSON, as the
//! fuzzer wrote them), encoded and signed with the server's secret, so
//! the claims checks are reached. Mode 2: the same, signed with another
//! secret (always refused). Whatever the mode, a user session is checked
//! against the token's own signature and claims, verified here apart
//! from the decoder.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use parkme_fuzz::parts;
use parkme_gateway::auth::{Authenticator, Principal, bearer, unix_now};
use serde_json::Value;

const ADMIN: &str = "root-token";
const SECRET: &str = "fuzz-secret";
const LEEWAY: u64 = 5;

fn signed(jose: &[u8], claims: &[u8], secret: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(jose),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(secret.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256");
    format!("{message}.{signature}")
}

/// What a token must have claimed to make a user session, checked
/// independently of the decoder.
fn check_user_claims(claims: &[u8], user: &str, valid_until: Option<u64>) {
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert_eq!(claims.get("sub").and_then(Value::as_str), Some(user));
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .expect("exp is required");
    let now = unix_now() as f64;
    assert!(exp + LEEWAY as f64 >= now - 1.0, "expired token accepted");
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(
            nbf <= now + LEEWAY as f64 + 1.0,
            "token before its nbf accepted"
        );
    }
    let until = valid_until.expect("a user session has an end");
    // In integers when `exp` is one: past 2^53 an f64 cannot tell `exp`
    // from `exp + LEEWAY` (a run found exp = 4104889600740000000).
    let outlives = match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) => until > exp.saturating_add(LEEWAY),
        None => until as f64 > exp + LEEWAY as f64 + 1.0,
    };
    assert!(!outlives, "session outlives exp");
}

/// The claims of `token` if it is signed with the server's secret,
/// checked here without the decoder under test.
fn signed_claims(token: &str) -> Option<Vec<u8>> {
    let (message, signature) = token.rsplit_once('.')?;
    let (jose, claims) = message.split_once('.')?;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let expected = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).ok()?;
    let jose: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jose).ok()?).ok()?;
    (expected == signature && jose.get("alg") == Some(&Value::from("HS256")))
        .then(|| URL_SAFE_NO_PAD.decode(claims).ok())
        .flatten()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let auth = Authenticator::new(Some(ADMIN), Some(SECRET), LEEWAY);
    let parts = parts(rest);
    let value = match mode % 3 {
        0 => parts.first().copied().unwrap_or_default().to_vec(),
        signing => {
            let (Some(jose), Some(claims)) = (parts.first(), parts.get(1)) else {
                return;
            };
            let secret = if signing == 1 {
                SECRET
            } else {
                "another secret"
            };
            format!("Bearer {}", signed(jose, claims, secret)).into_bytes()
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let token = match bearer(&headers) {
        Ok(token) => token,
        Err(refused) => {
            assert_eq!(refused.status.as_u16(), 401);
            return;
        }
    };
    match auth.session(token) {
        Ok(session) => match &session.principal {
            Principal::Admin => assert_eq!(token, Some(ADMIN)),
            Principal::Anonymous => assert_eq!(token, None),
            Principal::User(user) => {
                assert_ne!(user.as_str(), "admin");
                let token = token.expect("a user has a token");
                let Some(claims) = signed_claims(token) else {
                    panic!("a token not signed with the secret made user {user:?}");
                };
                check_user_claims(&claims, user.as_str(), session.valid_until);
            }
        },
        Err(refused) => {
            assert_eq!(
                (refused.status.as_u16(), refused.code),
                (401, "unauthorized")
            );
            assert!(!refused.message.contains(SECRET));
        }
    }
});
