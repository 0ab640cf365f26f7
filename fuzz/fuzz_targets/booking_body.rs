//! Booking request bodies (`POST /v1/facilities/{fid}/bookings`: the
//! JSON body → `parkme_protocol::rest::BookingInput` →
//! `parkme_gateway::bookings::params`, with the `Idempotency-Key` header
//! through `http::bookings::idempotency_key`): never panics; what is
//! accepted is within the contract (see `parkme_fuzz::check_booking`).
//!
//! Input: parts (`parkme_fuzz::parts`): the header value, then the body;
//! the first byte of the header part also picks the caller.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use parkme_fuzz::{alice, assert_visible_key, check_booking, parts};
use parkme_gateway::auth::Principal;
use parkme_gateway::http::bookings::idempotency_key;
use parkme_protocol::rest::BookingInput;

fuzz_target!(|data: &[u8]| {
    let parts = parts(data);
    let (Some(header), Some(body)) = (parts.first(), parts.get(1)) else {
        return;
    };
    let principal = match header.first().map(|b| b % 3) {
        Some(1) => Principal::Admin,
        Some(2) => Principal::Anonymous,
        _ => alice(),
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(header) {
        headers.insert("idempotency-key", value);
    }
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(refused) => {
            assert_eq!(refused.code, "invalid_idempotency_key");
            return;
        }
    };
    if let Some(key) = &key {
        assert_visible_key(key);
    }
    let Ok(input) = serde_json::from_slice::<BookingInput>(body) else {
        return;
    };
    check_booking(input, &principal, key.as_deref());
});
