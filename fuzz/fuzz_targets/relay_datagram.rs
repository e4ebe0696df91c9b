//! Media datagrams from a relay peer: the header decoder, and a bridge node
//! receiving them over an established relay connection (the peer's hello
//! made its link ready) in conferences it shares with the peer (see
//! `tern_fuzz::Bridge`): the connection routes each to the shard of the
//! conference it names, whose core fans it out to a connected receiver for
//! real.
//!
//! An input is a sequence of records `[mode][len: u16 BE][bytes]`; `mode`
//! steers what random bytes rarely reach on their own, because the node and
//! the core find conferences and sources through hash maps that give the
//! fuzzer no comparison to learn from:
//!
//! - `0x01` write a valid version/kind, [`REMOTE_CONF`] and a known source
//!   over the first 7 bytes (`0x02`: the video source, else audio) and a
//!   codec byte that matches it, unless `0x04` keeps the input's codec byte;
//! - `0x08` deliver it inside an `OversizeMedia` control message on the
//!   control stream instead, `0x10` with the payload repeated up to
//!   ~200 KiB (what only the reliable path can carry);
//! - `0x20` first let the next byte's worth of milliseconds pass (gaps time
//!   out, NACKs are retried, layers go idle), up to `tern_fuzz::INPUT_TIME`
//!   over the whole input;
//! - `0x40` from a bridge that is not a relay peer of this room (connected,
//!   after its hello, and claiming [`REMOTE_CONF`] for the room);
//! - `0x80` in one `RelayDatagrams` batch with the next record (as QUIC
//!   hands over datagrams that arrived together).
#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tern_fuzz::{AUDIO_SOURCE, Bridge, REMOTE_CONF, VIDEO_SOURCE, encode};
use tern_sfu::PeerId;
use tern_sfu::node::Input;
use tern_sfu::tern_relay::msg::relay_control::Msg;
use tern_sfu::tern_relay::wire::{HEADER_LEN, MediaHeader};

fn bridge() -> &'static Mutex<Bridge> {
    static B: OnceLock<Mutex<Bridge>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(Bridge::new(false)))
}

/// Parsing then writing a header gives back the same bytes, except what the
/// format does not carry: byte 14 is only the audio level's 7 bits, and
/// only when the level flag is set (the writer zeroes it otherwise).
fn check_round_trip(data: &[u8]) {
    let Ok((h, payload)) = MediaHeader::parse(data) else {
        return;
    };
    assert!(h.layer <= 15);
    assert!(h.audio_level.is_none_or(|l| l <= 127));
    let mut out = Vec::new();
    h.write(payload, &mut out);
    let mut expected = data.to_vec();
    expected[14] = if data[7] & 0x10 != 0 {
        data[14] & 0x7f
    } else {
        0
    };
    assert_eq!(
        out, expected,
        "header {h:?} does not re-encode to its bytes"
    );
    let (again, p2) = MediaHeader::parse(&out).expect("a written header parses");
    assert_eq!(again, h);
    assert_eq!(p2, payload);
}

/// Datagrams waiting to be handed over together, and from whom.
fn send(b: &mut Bridge, pending: &mut Option<(PeerId, Vec<Bytes>)>) {
    if let Some((peer, batch)) = pending.take() {
        b.input(Input::RelayDatagrams { peer, batch });
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = bridge().lock().unwrap_or_else(|e| e.into_inner());
    if !b.healthy() {
        *b = Bridge::new(false);
    }
    b.start_input();
    b.reset_relay();
    let mut stranger_connected = false;
    let mut pending: Option<(PeerId, Vec<Bytes>)> = None;
    let mut rest = data;
    while let [mode, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let mut d = bytes.to_vec();
        let mode = *mode;
        if mode & 0x20 != 0 {
            send(&mut b, &mut pending);
            let ms = d.first().copied().unwrap_or(0);
            b.pause(Duration::from_millis(u64::from(ms)));
        }
        if mode & 0x01 != 0 {
            if d.len() < HEADER_LEN {
                d.resize(HEADER_LEN, 0);
            }
            let video = mode & 0x02 != 0;
            d[0] = 0x10;
            d[1..5].copy_from_slice(&REMOTE_CONF.to_be_bytes());
            let source = if video { VIDEO_SOURCE } else { AUDIO_SOURCE };
            d[5..7].copy_from_slice(&source.to_be_bytes());
            if mode & 0x04 == 0 {
                d[15] = if video { 2 } else { 1 };
            }
        }
        if mode & 0x18 == 0x18 && d.len() > HEADER_LEN {
            let payload = d[HEADER_LEN..].to_vec();
            while d.len() < 200 * 1024 {
                d.extend_from_slice(&payload);
            }
        }
        check_round_trip(&d);
        let from = if mode & 0x40 != 0 {
            if !stranger_connected {
                send(&mut b, &mut pending);
                b.connect_stranger(true);
                stranger_connected = true;
            }
            b.stranger.clone()
        } else {
            b.relay_peer.clone()
        };
        if mode & 0x08 != 0 {
            send(&mut b, &mut pending);
            b.stream(&from, encode([Msg::OversizeMedia(d)]));
            continue;
        }
        if pending.as_ref().is_some_and(|(p, _)| *p != from) {
            send(&mut b, &mut pending);
        }
        pending
            .get_or_insert_with(|| (from, Vec::new()))
            .1
            .push(d.into());
        if mode & 0x80 == 0 {
            send(&mut b, &mut pending);
        }
    }
    send(&mut b, &mut pending);
    // Timers run once per input: NACKs for the holes it left, layer idling.
    b.advance(Duration::from_millis(1));
    b.take_relay_control();
    if stranger_connected {
        let stranger = b.stranger.clone();
        b.disconnect(&stranger);
    }
});
