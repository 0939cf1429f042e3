//! Feeds arbitrary bytes to the control protocol's request parser; any panic
//! is a bug. An accepted request must survive a round trip through JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd::control::{parse_request, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        let line = serde_json::to_vec(&req).expect("a request serialises");
        let again: Request = parse_request(&line).expect("a serialised request parses");
        assert_eq!(again, req);
    }
});
