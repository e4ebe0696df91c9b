//! The core never panics on what the network sends, and counts what it drops.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tern_sfu::signal::parse_client_message;
use tern_sfu::{CodecName, Core, CoreConfig, DropReason, EndpointId, JoinRequest};

fn core_with_one_endpoint(now: Instant) -> Core {
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .expect("certificate");
    let local: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
    let mut core = Core::new(
        CoreConfig {
            shard: 0,
            local_addr: local,
            candidate_addr: local,
            tcp_candidate_addr: None,
            dtls_cert: cert,
            codecs: vec![CodecName::Opus, CodecName::Vp8],
            max_participants_per_conference: 10,
            default_max_height: 720,
            rtx_cache_packets: 256,
            rtx_cache_age: std::time::Duration::from_secs(1),
            talk: Default::default(),
            bandwidth: Default::default(),
            composite: false,
        },
        now,
    );
    core.handle_join(
        now,
        JoinRequest {
            id: EndpointId(1),
            room: "r".into(),
            participant: "p".into(),
            name: "p".into(),
            ice_password: "0123456789abcdef0123456789abcdef".into(),
            video_codec: None,
            may_publish: true,
            mix_rate: None,
            composite: Default::default(),
        },
    )
    .expect("join");
    core
}

/// A STUN binding request for `ufrag` as a browser sends it (USERNAME,
/// PRIORITY, a SOFTWARE attribute carrying `junk`, MESSAGE-INTEGRITY), with an
/// integrity value that is wrong: it must get as far as str0m's check.
fn stun_for(ufrag: &str, junk: &[u8]) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 0x0006, format!("{ufrag}:remote").as_bytes());
    attr(&mut attrs, 0x0024, &[0x6e, 0x7f, 0x1e, 0xff]);
    attr(&mut attrs, 0x8022, junk);
    attr(&mut attrs, 0x0008, &[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&attrs);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_datagrams_are_dropped_and_counted_never_panic(
        datagrams in prop::collection::vec((0u8..4, prop::collection::vec(any::<u8>(), 0..1500)), 1..20),
        stun_tails in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..5),
    ) {
        let t0 = Instant::now();
        let mut core = core_with_one_endpoint(t0);
        let local: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
        let mut now = t0;
        let mut sent = 0u64;
        for (src, data) in &datagrams {
            let from: SocketAddr = format!("127.0.0.{}:4000", 1 + src).parse().expect("addr");
            now += Duration::from_millis(3);
            core.handle_datagram(now, from, local, data);
            core.handle_timeout(now);
            sent += 1;
        }
        // STUN aimed at the real endpoint's ufrag (shard 0, endpoint 1, first
        // join) with a forged integrity reaches str0m, which refuses it.
        for tail in &stun_tails {
            let from: SocketAddr = "127.0.0.9:4000".parse().expect("addr");
            core.handle_datagram(now, from, local, &stun_for("0011", tail));
            sent += 1;
        }
        let st = core.stats();
        prop_assert_eq!(st.packets_in, sent);
        let dropped: u64 = DropReason::ALL.iter().map(|&r| st.dropped(r)).sum();
        // Nothing here authenticates: no address may have been bound.
        prop_assert!(dropped <= sent);
        prop_assert_eq!(core.endpoint_count(), 1);
        let mut bound = false;
        while let Some(o) = core.poll_output() {
            bound |= matches!(o, tern_sfu::Output::Bind { .. });
        }
        prop_assert!(!bound, "a forged datagram bound an address");
    }

    /// The same over ICE-TCP (frames from connections to a TCP candidate).
    #[test]
    fn random_tcp_frames_are_dropped_and_counted_never_panic(
        frames in prop::collection::vec((0u8..4, prop::collection::vec(any::<u8>(), 0..1500)), 1..20),
        stun_tails in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..5),
    ) {
        let t0 = Instant::now();
        let mut core = core_with_one_endpoint(t0);
        let tcp: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
        let mut sent = 0u64;
        for (src, data) in &frames {
            let from: SocketAddr = format!("127.0.0.{}:5000", 1 + src).parse().expect("addr");
            core.handle_tcp_datagrams(t0, tcp, [(from, &data[..])]);
            sent += 1;
        }
        for tail in &stun_tails {
            let from: SocketAddr = "127.0.0.9:5000".parse().expect("addr");
            let stun = stun_for("0011", tail);
            core.handle_tcp_datagrams(t0, tcp, [(from, &stun[..])]);
            sent += 1;
        }
        prop_assert_eq!(core.stats().packets_in, sent);
        prop_assert_eq!(core.endpoint_count(), 1);
        while let Some(o) = core.poll_output() {
            prop_assert!(!matches!(o, tern_sfu::Output::Bind { .. }), "a forged frame bound an address");
        }
    }

    #[test]
    fn signalling_parser_never_panics(text in "\\PC{0,300}") {
        let _ = parse_client_message(&text);
    }

    #[test]
    fn signalling_parser_survives_json_shaped_input(
        ty in prop_oneof![Just("join"), Just("offer"), Just("constraints"), Just("source_state"), Just("leave"), Just("x")],
        body in "[a-z\":,{}\\[\\]0-9 ]{0,120}",
    ) {
        let _ = parse_client_message(&format!("{{\"type\":\"{ty}\",{body}}}"));
    }
}

#[test]
fn stun_for_unknown_ufrag_and_non_stun_from_unknown_address_are_counted_separately() {
    let t0 = Instant::now();
    let mut core = core_with_one_endpoint(t0);
    let local: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
    let from: SocketAddr = "127.0.0.5:4000".parse().expect("addr");
    core.handle_datagram(t0, from, local, &stun_for("00ffff", &[]));
    core.handle_datagram(t0, from, local, &[0x80, 0x60, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(core.stats().dropped(DropReason::UnknownUfrag), 1);
    assert_eq!(core.stats().dropped(DropReason::UnknownSource), 1);
    assert_eq!(Core::shard_of_ufrag("0a1b"), Some(10));
    assert_eq!(
        Core::stun_target_ufrag(&stun_for("0011", &[])),
        Some("0011")
    );
}

/// A join as a token would ask: `mix` names a mixed conference's rate.
fn join_as(id: u64, room: &str, mix_rate: Option<u32>) -> JoinRequest {
    JoinRequest {
        id: EndpointId(id),
        room: room.into(),
        participant: format!("p{id}"),
        name: format!("p{id}"),
        ice_password: "0123456789abcdef0123456789abcdef".into(),
        video_codec: None,
        may_publish: true,
        mix_rate,
        composite: Default::default(),
    }
}

#[test]
fn a_join_asking_for_another_conference_mode_is_refused_with_the_reason() {
    use tern_sfu::SfuError;
    use tern_sfu::signal::ErrorCode;
    let now = Instant::now();
    // Room "r" forwards (its first joiner's token named no mix).
    let mut core = core_with_one_endpoint(now);
    let refused = |r: Result<(), SfuError>| match r {
        Err(SfuError::Refused(rej)) => {
            assert_eq!(rej.code, ErrorCode::ConferenceMode);
            rej.message
        }
        other => panic!("expected a conference_mode refusal, got {other:?}"),
    };
    let why = refused(core.handle_join(now, join_as(2, "r", Some(16_000))));
    assert_eq!(
        why,
        "conference r is forwarding; this token asks for mixed at 16000 Hz"
    );
    let why = refused(core.handle_join(now, join_as(3, "m", Some(44_100))));
    assert!(why.contains("not 44100"), "{why}");
    // The first join of "m" makes it mixed at 16 kHz; its mode holds.
    core.handle_join(now, join_as(4, "m", Some(16_000)))
        .expect("mixed room");
    let mixes = std::iter::from_fn(|| core.poll_output())
        .filter(|o| matches!(o, tern_sfu::Output::Mix(_)))
        .count();
    assert_eq!(mixes, 1, "the mixer is told who joined");
    let why = refused(core.handle_join(now, join_as(5, "m", None)));
    assert_eq!(
        why,
        "conference m is mixed at 16000 Hz; this token asks for forwarding"
    );
    refused(core.handle_join(now, join_as(6, "m", Some(48_000))));
    // The same rate with another composite layout is another mode too.
    let mut speaker = join_as(7, "m", Some(16_000));
    speaker.composite.layout = tern_mixer::video::Layout::Speaker;
    let why = refused(core.handle_join(now, speaker));
    assert!(why.contains("a speaker composite"), "{why}");
    assert_eq!(core.stats().joins_refused_mode, 5);
    assert_eq!(
        core.endpoint_count(),
        2,
        "refusals leave the rooms as they were"
    );
}

#[test]
fn after_a_mixer_restart_every_mixed_conference_is_told_again_who_is_in_it() {
    let now = Instant::now();
    // "r" forwards; "m" is mixed with two participants, one a viewer.
    let mut core = core_with_one_endpoint(now);
    core.handle_join(now, join_as(2, "m", Some(16_000)))
        .expect("join");
    let mut viewer = join_as(3, "m", Some(16_000));
    viewer.may_publish = false;
    core.handle_join(now, viewer).expect("join");
    while core.poll_output().is_some() {}
    core.handle_mixer_restarted();
    let mut joins: Vec<(String, u64, bool)> = std::iter::from_fn(|| core.poll_output())
        .filter_map(|o| match o {
            tern_sfu::Output::Mix(tern_mixer::host::MixCommand::Join {
                room,
                id,
                sends_audio,
                sample_rate: 16_000,
                ..
            }) => Some((room.to_string(), id, sends_audio)),
            _ => None,
        })
        .collect();
    joins.sort();
    assert_eq!(
        joins,
        [("m".to_string(), 2, true), ("m".to_string(), 3, false)]
    );
}
