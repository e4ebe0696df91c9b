//! RTP payloads the core parses on every forwarded packet.
//! Kept narrow: pure parsers, which a `Node` hands only known sources' packets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tern_sfu::vp8::parse(data);
    let _ = tern_sfu::h264::starts_keyframe(data);
    if let Some(info) = tern_sfu::vp9::parse(data) {
        assert!(info.spatial.is_none_or(|s| (1..=8).contains(&s.count)));
    }
    let _ = tern_sfu::av1::starts_keyframe(data);
    if let Some(primary) = tern_sfu::red::red_primary(data) {
        assert!(data.ends_with(primary));
    }
    let _ = tern_peer::synth::read_block(data);
    if let Ok(d) = str0m::rtp::Vp8Descriptor::parse(data) {
        let _ = d.patch().picture_id(0x1234).tl0_pic_idx(7).build();
    }
});
