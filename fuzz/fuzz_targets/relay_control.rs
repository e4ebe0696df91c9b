//! The relay control stream: bytes from a peer bridge, read in whatever
//! pieces QUIC hands over, into a bridge node (see `tern_fuzz::Bridge`).
//!
//! An input is `[flags][chunking][stream bytes]`. The stream is decoded by
//! `ControlDecoder` in one piece and again in pieces (sizes from a small
//! generator seeded by `chunking`); both must give the same messages, and
//! while waiting for more bytes the decoder never holds more than one frame
//! of the maximum size. The same pieces go to the node as `RelayStream`
//! inputs on the peer's established connection (after its hello and its
//! announcements), so the link's framing and checks, the connection's
//! routing to the shard that owns each conference and that shard's core all
//! take them; every output is polled, what the node writes back must decode
//! (checked by the harness), and a stream whose framing breaks must get the
//! connection closed.
//!
//! Random bytes rarely decode into messages that name what the node knows
//! (it looks conferences and sources up in hash maps, which give the fuzzer
//! no comparison to learn from), so two modes help:
//!
//! - `flags & 0x08`: the stream bytes are not sent as they are but read as a
//!   list of messages to encode (`structured`): kinds, conference numbers
//!   (the peer's, the node's own on two shards, unknown ones), source
//!   numbers, participant ids and layer masks are picked from what the node
//!   knows, the rest is arbitrary; a pause between messages lets virtual
//!   time pass, so a `Demand` can fill the relay cache a later `Nack` reads
//!   (all of an input's pauses together at most `tern_fuzz::INPUT_TIME`).
//! - `flags & 0x02` steers raw messages (those that decode, re-encoded; the
//!   rest of the stream follows as it was): a conference number 1 becomes
//!   the peer's conference (`REMOTE_CONF`), 2 the node's own for the room,
//!   3 its own for the second room, and an empty conference name the room.
//!
//! `flags & 0x01` sends on a fresh connection, before any hello (the
//! handshake takes the input; the structured mode's `Hello` then carries
//! the current protocol version most of the time). `flags & 0x04` sends as
//! a bridge that is no relay peer of any room here (on its own connection).
#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use tern_fuzz::{
    AUDIO_SOURCE, Bridge, PEER, REMOTE, REMOTE_CONF, REMOTE_CONF2, ROOM, ROOM2, STRANGER,
    VIDEO_SOURCE, encode,
};
use tern_sfu::tern_relay::msg::{self, Hello, RelayControl, relay_control::Msg};
use tern_sfu::tern_relay::wire::{Codec, ControlDecoder, MAX_CONTROL_FRAME, MediaHeader};
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

/// The node's conference numbers, as it announced them to the peer.
#[derive(Clone, Copy)]
struct Local {
    room: u32,
    room2: u32,
}

fn steer_conf(n: &mut u32, local: Local) {
    match *n {
        1 => *n = REMOTE_CONF,
        2 => *n = local.room,
        3 => *n = local.room2,
        _ => {}
    }
}

fn steer(m: &mut Msg, local: Local) {
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
        Msg::Data(d) => steer_conf(&mut d.conference, local),
        Msg::Hello(_) | Msg::Ping(_) | Msg::Pong(_) | Msg::OversizeMedia(_) => {}
    }
}

/// The raw stream with the messages that decode steered and re-encoded,
/// followed by the bytes from where decoding stopped, as they were.
fn steered(stream: &[u8], local: Local) -> Vec<u8> {
    let mut d = ControlDecoder::default();
    d.push(stream);
    let mut msgs = Vec::new();
    let mut consumed = 0;
    while let Some(Ok(m)) = d.next_message() {
        consumed = stream.len() - d.pending();
        msgs.extend(m.msg);
    }
    for m in &mut msgs {
        steer(m, local);
    }
    let mut out = encode(msgs);
    out.extend_from_slice(&stream[consumed..]);
    out
}

/// A piece of the structured mode's input: stream bytes, or a pause (ms).
enum Segment {
    Bytes(Vec<u8>),
    Pause(u8),
}

/// One message (or a pause, as `Err(ms)`) read from `u`, with numbers the
/// node knows most of the time.
fn structured_one(u: &mut Unstructured, local: Local) -> ArbResult<Result<Msg, u8>> {
    let conference = *u.choose(&[
        REMOTE_CONF,
        local.room,
        local.room2,
        REMOTE_CONF2,
        0,
        REMOTE_CONF + 1,
        u32::MAX,
    ])?;
    let source = u32::from(*u.choose(&[AUDIO_SOURCE, VIDEO_SOURCE, 0, 3, u16::MAX])?);
    let participant = u.choose(&[REMOTE, "remote2", "local", ""])?.to_string();
    let m = match u.int_in_range(0..=12u8)? {
        0 => Msg::Hello(Hello {
            protocol_version: if u.arbitrary()? {
                PROTOCOL_VERSION
            } else {
                u.arbitrary()?
            },
            bridge_id: u.choose(&[PEER, STRANGER, "other"])?.to_string(),
            software_version: u.arbitrary()?,
        }),
        1 => Msg::ConferenceJoined(msg::ConferenceJoined {
            number: conference,
            name: u.choose(&[ROOM, ROOM2, "elsewhere", ""])?.to_string(),
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
                        bitrate_bps: *u.choose(&[0, 150_000, 1_500_000, u64::MAX])?,
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
                    svc: u.arbitrary()?,
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

/// The structured mode's input: messages encoded as a peer would, with
/// pauses between them.
fn structured(bytes: &[u8], local: Local) -> Vec<Segment> {
    let mut u = Unstructured::new(bytes);
    let mut out = Vec::new();
    while !u.is_empty() {
        let Ok(m) = structured_one(&mut u, local) else {
            break;
        };
        match (m, out.last_mut()) {
            (Ok(m), Some(Segment::Bytes(b))) => b.extend(encode([m])),
            (Ok(m), _) => out.push(Segment::Bytes(encode([m]))),
            (Err(ms), _) => out.push(Segment::Pause(ms)),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunking, stream @ ..] = data else {
        return;
    };
    let mut b = bridge().lock().unwrap_or_else(|e| e.into_inner());
    if !b.healthy() {
        *b = Bridge::new(true);
    }
    b.start_input();
    let fresh = flags & 0x01 != 0;
    let from = if flags & 0x04 != 0 {
        b.reset_relay();
        b.connect_stranger(!fresh);
        b.stranger.clone()
    } else {
        if fresh {
            let peer = b.relay_peer.clone();
            b.connect(&peer, false);
        } else {
            b.reset_relay();
        }
        b.relay_peer.clone()
    };
    b.take_closed();
    let local = Local {
        room: b.local_conf,
        room2: b.other_conf,
    };
    let segments = if flags & 0x08 != 0 {
        structured(stream, local)
    } else if flags & 0x02 != 0 {
        vec![Segment::Bytes(steered(stream, local))]
    } else {
        vec![Segment::Bytes(stream.to_vec())]
    };
    let all: Vec<u8> = segments
        .iter()
        .flat_map(|s| match s {
            Segment::Bytes(b) => b.as_slice(),
            Segment::Pause(_) => &[][..],
        })
        .copied()
        .collect();
    let whole = decode(&[&all]);
    let mut split = Vec::new();
    for s in &segments {
        if let Segment::Bytes(bytes) = s {
            split.extend(pieces(bytes, *chunking));
        }
    }
    assert_eq!(whole, decode(&split), "chunking changed what was decoded");
    for s in &segments {
        match s {
            Segment::Bytes(bytes) => {
                for p in pieces(bytes, *chunking) {
                    b.stream(&from, p.to_vec());
                }
            }
            Segment::Pause(ms) => b.pause(Duration::from_millis(u64::from(*ms))),
        }
    }
    b.advance(Duration::from_millis(1));
    let closed = b.take_closed();
    if whole.iter().any(Result::is_err) {
        assert!(
            closed.contains(&from),
            "the node kept a connection whose control stream broke"
        );
    }
    b.take_relay_control();
    if from == b.stranger {
        b.disconnect(&from);
    }
});
