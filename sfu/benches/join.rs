//! What a join costs the bridge core: `Core::handle_join` (the endpoint's
//! str0m `Rtc`, its DTLS instance, the conference bookkeeping) and the
//! matching `handle_leave`, for participants of ten-person conferences.
//!
//! `cargo bench -p tern-sfu --bench join` (release). Results in
//! BENCHMARKS.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_sfu::{CodecName, Core, CoreConfig, EndpointId, JoinRequest};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let addr: SocketAddr = "127.0.0.1:10000".parse().expect("address");
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("certificate");
    let t0 = Instant::now();
    let mut core = Core::new(
        CoreConfig {
            shard: 0,
            local_addr: addr,
            candidate_addr: addr,
            tcp_candidate_addr: None,
            dtls_cert: cert,
            codecs: vec![CodecName::Opus, CodecName::Vp8],
            max_participants_per_conference: 10,
            default_max_height: 720,
            rtx_cache_packets: 256,
            rtx_cache_age: Duration::from_secs(1),
            talk: Default::default(),
            bandwidth: Default::default(),
            composite: false,
        },
        t0,
    );
    const N: u64 = 2_000;
    for round in 0..3 {
        let start = Instant::now();
        for i in 0..N {
            let id = EndpointId(round * N + i + 1);
            core.handle_join(
                t0,
                JoinRequest {
                    id,
                    room: format!("r{}", i / 10),
                    participant: format!("p{i}"),
                    name: String::new(),
                    ice_password: format!("password-{i:016}"),
                    video_codec: None,
                    may_publish: true,
                    mix_rate: None,
                    composite: Default::default(),
                },
            )
            .expect("join");
        }
        let joined = start.elapsed();
        let start = Instant::now();
        for i in 0..N {
            core.handle_leave(t0, EndpointId(round * N + i + 1));
        }
        let left = start.elapsed();
        while core.poll_output().is_some() {}
        println!(
            "round {round}: join {:.1} µs, leave {:.1} µs per participant ({N} in 200 conferences)",
            joined.as_secs_f64() * 1e6 / N as f64,
            left.as_secs_f64() * 1e6 / N as f64,
        );
    }
}
