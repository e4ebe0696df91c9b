//! The relay control stream: bytes from a peer bridge, read in whatever
//! pieces QUIC hands over.
//!
//! An input is `[flags][chunking][stream bytes]`. The stream is decoded by
//! `ControlDecoder` in one piece and again in pieces (sizes from a small
//! generator seeded by `chunking`); both must give the same messages, and
//! while waiting for more bytes the decoder never holds more than one frame
//! of the maximum size. The same pieces go to a `Link` (`flags & 0x01`: with
//! a valid `Hello` in front, so the rest gets past the handshake), whose
//! output must decode, and the messages the link delivers go to a bridge
//! core's `handle_relay_control` as the shell does. Without `0x01` the
//! decoded messages go to the core directly (the core must survive any
//! message, not only those a link lets through).
//!
//! Random bytes rarely decode into messages that name what the core knows
//! (it looks conferences and sources up in hash maps, which give the fuzzer
//! no comparison to learn from), so two modes help:
//!
//! - `flags & 0x08`: the stream bytes are not sent as they are but read as a
//!   list of messages to encode (`structured`): kinds, conference numbers
//!   (the peer's, the core's own, unknown ones), source numbers, participant
//!   ids and layer masks are picked from what the core knows, the rest is
//!   arbitrary; a pseudo-message (a `Ping` with a marker id) lets virtual
//!   time pass, so a `Demand` can fill the relay cache a later `Nack` reads
//!   (without a link only: a link answers pings itself).
//! - `flags & 0x02` steers raw messages: a conference number 1 becomes the
//!   peer's conference (`REMOTE_CONF`), 2 the core's own, and an empty
//!   conference name the shared room.
//!
//! `flags & 0x04` sends as a bridge that is not a relay peer here.
#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use tern_fuzz::{AUDIO_SOURCE, Bridge, PEER, REMOTE, REMOTE_CONF, ROOM, VIDEO_SOURCE};
use tern_sfu::tern_relay::link::{Link, LinkConfig};
use tern_sfu::tern_relay::msg::{self, Hello, RelayControl, relay_control::Msg};
use tern_sfu::tern_relay::wire::{
    Codec, ControlDecoder, MAX_CONTROL_FRAME, MediaHeader, encode_control,
};
use tern_sfu::tern_relay::{PROTOCOL_VERSION, RelayError};

fn bridge() -> &'static Mutex<Bridge> {
    static B: OnceLock<Mutex<Bridge>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(Bridge::new(true)))
}

/// A varint length prefix is at most 10 bytes.
const MAX_PENDING: usize = MAX_CONTROL_FRAME + 10;

/// Piece sizes: `chunking` picks the largest size (1 byte up to 64 KiB, the
/// shell's read buffer) and seeds the sequence.
fn pieces(stream: &[u8], chunking: u8) -> Vec<&[u8]> {
    let max = [1usize, 2, 3, 7, 16, 100, 1500, 64 * 1024][usize::from(chunking & 7)];
    let mut x = u32::from(chunking) | 0x100;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (x >> 8) as usize % max).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Everything the decoder gives for `pieces` fed in order, up to and
/// including the first error (the stream is unusable after one).
fn decode(pieces: &[&[u8]]) -> Vec<Result<RelayControl, RelayError>> {
    let mut d = ControlDecoder::default();
    let mut out = Vec::new();
    for p in pieces {
        d.push(p);
        while let Some(m) = d.next_message() {
            let failed = m.is_err();
            out.push(m);
            if failed {
                return out;
            }
        }
        assert!(
            d.pending() <= MAX_PENDING,
            "decoder waits holding {} bytes",
            d.pending()
        );
    }
    out
}

fn steer_conf(n: &mut u32, local: u32) {
    match *n {
        1 => *n = REMOTE_CONF,
        2 => *n = local,
        _ => {}
    }
}

fn steer(m: &mut Msg, local: u32) {
    match m {
        Msg::ConferenceJoined(c) => {
            steer_conf(&mut c.number, local);
            if c.name.is_empty() {
                c.name = ROOM.into();
            }
        }
        Msg::ConferenceLeft(c) => steer_conf(&mut c.number, local),
        Msg::ParticipantJoined(p) => steer_conf(&mut p.conference, local),
        Msg::ParticipantLeft(p) => steer_conf(&mut p.conference, local),
        Msg::Sources(s) => steer_conf(&mut s.conference, local),
        Msg::Demand(d) => steer_conf(&mut d.conference, local),
        Msg::KeyframeRequest(k) => steer_conf(&mut k.conference, local),
        Msg::Nack(n) => steer_conf(&mut n.conference, local),
        Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_) | Msg::OversizeMedia(_) => {}
    }
}

/// One message (or a pause, as `Err(ms)`) read from `u`, with numbers the
/// core knows most of the time.
fn structured_one(u: &mut Unstructured, local: u32) -> ArbResult<Result<Msg, u8>> {
    let conference = *u.choose(&[REMOTE_CONF, local, 0, REMOTE_CONF + 1, u32::MAX])?;
    let source = u32::from(*u.choose(&[AUDIO_SOURCE, VIDEO_SOURCE, 0, 3, u16::MAX])?);
    let participant = u.choose(&[REMOTE, "remote2", "local", ""])?.to_string();
    let m = match u.int_in_range(0..=12u8)? {
        0 => Msg::Hello(Hello {
            protocol_version: u.arbitrary()?,
            bridge_id: u.choose(&[PEER, "stranger"])?.to_string(),
            software_version: u.arbitrary()?,
        }),
        1 => Msg::ConferenceJoined(msg::ConferenceJoined {
            number: conference,
            name: u.choose(&[ROOM, "elsewhere", ""])?.to_string(),
        }),
        2 => Msg::ConferenceLeft(msg::ConferenceLeft { number: conference }),
        3 => Msg::ParticipantJoined(msg::ParticipantJoined {
            conference,
            participant,
            name: u.arbitrary()?,
        }),
        4 => Msg::ParticipantLeft(msg::ParticipantLeft {
            conference,
            participant,
        }),
        5 => {
            let mut sources = Vec::new();
            for _ in 0..u.int_in_range(0..=4u8)? {
                let mut layers = Vec::new();
                for _ in 0..u.int_in_range(0..=4u8)? {
                    layers.push(msg::Layer {
                        rid: u.choose(&["q", "h", "f", ""])?.to_string(),
                        height: *u.choose(&[0, 180, 360, 720, u32::MAX])?,
                        active: u.arbitrary()?,
                    });
                }
                sources.push(msg::Source {
                    number: u32::from(*u.choose(&[AUDIO_SOURCE, VIDEO_SOURCE, 3, u16::MAX])?),
                    id: u
                        .choose(&["remote-audio", "remote-video", "x", ""])?
                        .to_string(),
                    name: u.arbitrary()?,
                    kind: u.int_in_range(0..=3)?,
                    muted: u.arbitrary()?,
                    layers,
                });
            }
            Msg::Sources(msg::Sources {
                conference,
                participant,
                sources,
            })
        }
        6 => Msg::Demand(msg::Demand {
            conference,
            source,
            layers: if u.arbitrary()? {
                u.int_in_range(0..=7)?
            } else {
                u.arbitrary()?
            },
        }),
        7 => Msg::KeyframeRequest(msg::KeyframeRequest {
            conference,
            source,
            layer: *u.choose(&[0, 1, 2, 3, u32::MAX])?,
        }),
        8 => {
            let mut seqs = Vec::new();
            for _ in 0..u.int_in_range(0..=16u8)? {
                seqs.push(u.arbitrary()?);
            }
            Msg::Nack(msg::Nack {
                conference,
                source,
                layer: *u.choose(&[0, 1, 2, 3, u32::MAX])?,
                seqs,
            })
        }
        9 => Msg::Ping(msg::Ping { id: u.arbitrary()? }),
        10 => Msg::Pong(msg::Pong { id: u.arbitrary()? }),
        11 => {
            let h = MediaHeader {
                conference,
                source: source as u16,
                layer: u.int_in_range(0..=3)?,
                marker: u.arbitrary()?,
                retransmission: u.arbitrary()?,
                seq: u.arbitrary()?,
                timestamp: u.arbitrary()?,
                audio_level: u.arbitrary::<Option<u8>>()?.map(|l| l & 0x7f),
                voice_activity: u.arbitrary()?,
                codec: *u.choose(&[Codec::Opus, Codec::Vp8, Codec::H264])?,
            };
            let len = usize::from(u.arbitrary::<u16>()?) % 3000;
            let payload = u.bytes(len.min(u.len()))?;
            let mut d = Vec::new();
            h.write(payload, &mut d);
            Msg::OversizeMedia(d)
        }
        // A pause of up to 100 ms: enough for layers to start and stop and
        // NACK retries to fire, short enough to keep inputs fast.
        _ => return Ok(Err(u.int_in_range(1..=100)?)),
    };
    Ok(Ok(m))
}

/// The structured mode's stream: messages encoded as a peer would, with
/// each pause as a `Ping` whose id is [`PAUSE`] plus the
/// milliseconds (the target pauses there instead of delivering it).
fn structured(bytes: &[u8], local: u32) -> Vec<u8> {
    let mut u = Unstructured::new(bytes);
    let mut out = Vec::new();
    while !u.is_empty() {
        let Ok(m) = structured_one(&mut u, local) else {
            break;
        };
        let m = m.unwrap_or_else(|ms| {
            Msg::Ping(msg::Ping {
                id: PAUSE | u64::from(ms),
            })
        });
        encode_control(&RelayControl { msg: Some(m) }, &mut out);
    }
    out
}

/// A `Ping` id with these bits set is a pause in the structured mode.
const PAUSE: u64 = 0x7061_7573_6500_0000;

/// What a link writes is what a decoder reads: whole, valid frames.
fn check_link_output(link: &mut Link) {
    while let Some(bytes) = link.poll_transmit() {
        let mut d = ControlDecoder::default();
        d.push(&bytes);
        while let Some(m) = d.next_message() {
            assert!(m.is_ok(), "link wrote an undecodable frame: {m:?}");
        }
        assert_eq!(d.pending(), 0, "link wrote a partial frame");
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunking, stream @ ..] = data else {
        return;
    };
    let mut b = bridge().lock().unwrap_or_else(|e| e.into_inner());
    b.reset_relay();
    let local = b.local_conf;
    let built;
    let stream = if flags & 0x08 != 0 {
        built = structured(stream, local);
        built.as_slice()
    } else {
        stream
    };
    let whole = decode(&[stream]);
    let split = pieces(stream, *chunking);
    let chunked = decode(&split);
    assert_eq!(whole, chunked, "chunking changed what was decoded");
    let from = if flags & 0x04 != 0 { "stranger" } else { PEER };
    let mut to_core: Vec<Msg> = Vec::new();
    if flags & 0x01 != 0 {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::new("local"), PEER, t0);
        check_link_output(&mut link);
        let mut hello = Vec::new();
        encode_control(
            &RelayControl {
                msg: Some(Msg::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    bridge_id: PEER.into(),
                    software_version: String::new(),
                })),
            },
            &mut hello,
        );
        link.handle_stream(t0, &hello);
        assert!(link.is_ready());
        for (i, p) in split.iter().enumerate() {
            let t = t0 + Duration::from_millis(i as u64);
            let failed = link.error().is_some();
            link.handle_stream(t, p);
            link.handle_timeout(t);
            check_link_output(&mut link);
            while let Some(m) = link.poll_message() {
                assert!(!failed, "a failed link delivered a message");
                assert!(
                    !matches!(m.msg, Some(Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_))),
                    "the link passed on its own message: {m:?}"
                );
                to_core.extend(m.msg);
            }
        }
        assert!(!(link.is_ready() && link.error().is_some()));
    } else {
        to_core.extend(chunked.into_iter().filter_map(|m| m.ok()?.msg));
    }
    for mut m in to_core {
        if let Msg::Ping(p) = &m
            && flags & 0x08 != 0
            && p.id & !0xff == PAUSE
        {
            b.advance(Duration::from_millis(p.id & 0xff));
            continue;
        }
        if flags & 0x02 != 0 {
            steer(&mut m, local);
        }
        let now = b.now;
        b.core.handle_relay_control(now, from, m);
        b.flush();
    }
    b.advance(Duration::from_millis(1));
    b.take_relay_control();
});
