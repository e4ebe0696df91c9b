//! Signalling messages arrive from any client on the internet.
//! Kept narrow: a pure parser, which a `Node` around it would only slow down.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tern_sfu::signal::parse_client_message(text);
    }
});
