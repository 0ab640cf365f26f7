//! App socket ops (`parkme_protocol::app::parse_op`): never panics; a
//! reply echoes the `req` the client sent (refusals too, when the JSON
//! was readable); a `book` op goes through the same validation as the
//! HTTP body (`parkme_gateway::bookings::{params,
//! checked_idempotency_key}`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parkme_fuzz::{alice, check_booking};
use parkme_protocol::app::{ClientOp, Unreadable, parse_op};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sent_req = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("req").filter(|r| !r.is_null()).cloned());
    match parse_op(text) {
        Ok(ClientOp::Book {
            req,
            input,
            idempotency_key,
            ..
        }) => {
            assert_eq!(req, sent_req);
            check_booking(input, &alice(), idempotency_key.as_deref());
        }
        Ok(op) => assert_eq!(op.req(), sent_req),
        Err(Unreadable { req, .. }) => assert_eq!(req, sent_req),
    }
});
