//! Datagrams at the media port: the demux (address, STUN ufrag) and whatever
//! str0m is handed. The first byte picks one of a few source addresses.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_sfu::{Core, EndpointId, JoinRequest};

struct State {
    core: Core,
    now: Instant,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let now = Instant::now();
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        let local: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
        let mut core = Core::new(tern_fuzz::core_config(local, cert), now);
        core.handle_join(
            now,
            JoinRequest {
                id: EndpointId(1),
                room: "fuzz".into(),
                participant: "p".into(),
                name: "p".into(),
                ice_password: "0123456789abcdef0123456789abcdef".into(),
            },
        )
        .expect("join");
        Mutex::new(State { core, now })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
    let src: SocketAddr = format!("127.0.0.{}:{}", 1 + sel % 3, 5000 + u16::from(sel >> 6))
        .parse()
        .expect("addr");
    let local: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
    s.now += Duration::from_millis(1);
    let now = s.now;
    s.core.handle_datagram(now, src, local, rest);
    s.core.handle_timeout(now);
    while s.core.poll_output().is_some() {}
});
