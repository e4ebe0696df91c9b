//! SDP offers arrive from any client: over the signalling socket, and as
//! the bare body of a WHIP or WHEP POST. The bridge reads them itself
//! before str0m does (which codecs, which sources), so those readers must
//! take anything.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tern_sfu::whip::sources_from_offer(text);
        let _ = tern_sfu::sdp::unsupported_codecs(text, &["opus", "VP8", "H264"]);
        // Tests run the audit on other stacks' offers too.
        let mut mid = text.len() / 2;
        while !text.is_char_boundary(mid) {
            mid -= 1;
        }
        let (offer, answer) = text.split_at(mid);
        let _ = tern_sfu::sdp_audit::audit_answer(offer, answer);
    }
});
