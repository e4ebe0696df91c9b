use std::time::{Duration, Instant};

use super::h264::{Depacketizer, packetize, split_annexb};
use super::layout::{Picture, grid};
use super::*;

/// A "codec" that carries pictures raw (an SPS-like NAL with the size,
/// then the planes in one slice NAL): the composite checked exactly.
#[derive(Clone, Copy)]
struct Raw;
struct RawDec;
struct RawEnc;

impl VideoDecoder for RawDec {
    fn decode(&mut self, annexb: &[u8]) -> Result<Option<Picture>, MixerError> {
        let nals = split_annexb(annexb);
        let (Some(sps), Some(slice)) = (nals.iter().find(|n| n[0] & 0x1f == 7), nals.last()) else {
            return Err(MixerError::Codec("no sps".into()));
        };
        if sps.len() < 5 {
            return Err(MixerError::Codec("short sps".into()));
        }
        let w = u32::from(u16::from_be_bytes([sps[1], sps[2]]));
        let h = u32::from(u16::from_be_bytes([sps[3], sps[4]]));
        let (ny, nc) = ((w * h) as usize, (w * h / 4) as usize);
        let body = &slice[1..];
        if body.len() != ny + 2 * nc {
            return Err(MixerError::Codec("size".into()));
        }
        Ok(Some(Picture {
            width: w,
            height: h,
            y: body[..ny].to_vec(),
            u: body[ny..ny + nc].to_vec(),
            v: body[ny + nc..].to_vec(),
        }))
    }
}

impl VideoEncoder for RawEnc {
    fn encode(&mut self, p: &Picture, keyframe: bool) -> Result<Vec<u8>, MixerError> {
        let mut out = vec![0, 0, 0, 1, 0x67];
        out.extend_from_slice(&(p.width as u16).to_be_bytes());
        out.extend_from_slice(&(p.height as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
        // Planes of limited-range video never hold 0, so no start code can
        // appear inside.
        out.extend(p.y.iter().chain(&p.u).chain(&p.v).map(|&b| b.max(1)));
        Ok(out)
    }
}

impl VideoCodec for Raw {
    type Decoder = RawDec;
    type Encoder = RawEnc;
    fn decoder(&self) -> Result<RawDec, MixerError> {
        Ok(RawDec)
    }
    fn encoder(&self, _: &VideoConfig) -> Result<RawEnc, MixerError> {
        Ok(RawEnc)
    }
}

const COLOURS: [(u8, u8, u8); 4] = [
    (200, 60, 70),
    (80, 200, 40),
    (120, 90, 220),
    (230, 160, 110),
];

/// A publisher: its pictures encoded and packetized, numbered.
struct Publisher<E> {
    id: u64,
    encoder: E,
    picture: Picture,
    seq: u16,
    ts: u32,
}

impl<E: VideoEncoder> Publisher<E> {
    fn send<C: VideoCodec>(&mut self, now: Instant, mixer: &mut VideoMixer<C>, keyframe: bool) {
        let annexb = self
            .encoder
            .encode(&self.picture, keyframe)
            .expect("encode");
        let nals = split_annexb(&annexb);
        let payloads = packetize(&nals, 1_100);
        let n = payloads.len();
        for (i, p) in payloads.iter().enumerate() {
            mixer
                .handle_packet(now, self.id, self.seq, self.ts, i + 1 == n, p)
                .expect("member");
            self.seq = self.seq.wrapping_add(1);
        }
        self.ts = self.ts.wrapping_add(3_000);
    }
}

/// Run the mixer for `frames` composite frames with every publisher
/// sending one picture per frame; the receiver's decoded composites.
fn run<C: VideoCodec, E: VideoEncoder, D: VideoDecoder>(
    t0: Instant,
    mixer: &mut VideoMixer<C>,
    pubs: &mut [Publisher<E>],
    decoder: &mut D,
    frames: u32,
) -> (Vec<Picture>, Vec<VideoOutput>) {
    let mut depack = Depacketizer::default();
    let mut seq = 0u16;
    let mut pictures = Vec::new();
    let mut other = Vec::new();
    for k in 0..frames {
        let now = t0 + Duration::from_millis(u64::from(k) * 1000 / 15);
        for p in pubs.iter_mut() {
            p.send(now, mixer, k == 0);
        }
        mixer.handle_timeout(now);
        while let Some(o) = mixer.poll_output() {
            match o {
                VideoOutput::Frame {
                    timestamp,
                    payloads,
                    ..
                } => {
                    let n = payloads.len();
                    for (i, p) in payloads.iter().enumerate() {
                        if let Some(au) = depack.push(seq, timestamp, i + 1 == n, p)
                            && let Ok(Some(pic)) = decoder.decode(&au.annexb)
                        {
                            pictures.push(pic);
                        }
                        seq = seq.wrapping_add(1);
                    }
                }
                o => other.push(o),
            }
        }
    }
    (pictures, other)
}

fn cfg() -> VideoConfig {
    VideoConfig {
        width: 320,
        height: 180,
        ..VideoConfig::default()
    }
}

#[test]
fn every_participant_is_in_its_tile_and_the_layout_is_told() {
    let t0 = Instant::now();
    let mut mixer = VideoMixer::new(Raw, cfg()).expect("mixer");
    let mut pubs: Vec<Publisher<RawEnc>> = (0..4)
        .map(|i| Publisher {
            id: 10 + i as u64,
            encoder: RawEnc,
            picture: Picture::filled(160, 120, COLOURS[i]),
            seq: 1000 * i as u16,
            ts: 0,
        })
        .collect();
    for p in &pubs {
        mixer.add(t0, p.id, true).expect("add");
    }
    // A viewer: in the layout, a black tile.
    mixer.add(t0, 99, false).expect("add");
    let (pictures, other) = run(t0, &mut mixer, &mut pubs, &mut RawDec, 5);
    let last = pictures.last().expect("composites decoded");
    assert_eq!((last.width, last.height), (320, 180));
    let rects = grid(5, 320, 180);
    for (i, colour) in COLOURS.iter().enumerate() {
        let (y, u, v) = last.mean(rects[i]);
        assert_eq!((y as u8, u as u8, v as u8), *colour, "tile {i}");
    }
    assert_eq!(
        last.mean(rects[4]).0 as u8,
        16,
        "the viewer's tile is black"
    );
    let Some(VideoOutput::Layout { tiles, .. }) = other
        .iter()
        .rev()
        .find(|o| matches!(o, VideoOutput::Layout { .. }))
    else {
        panic!("no layout in {other:?}");
    };
    assert_eq!(
        tiles.iter().map(|t| t.0).collect::<Vec<_>>(),
        [10, 11, 12, 13, 99]
    );
    // Leaving changes the layout.
    mixer.remove(11).expect("remove");
    assert!(matches!(
        mixer.poll_output(),
        Some(VideoOutput::Layout { tiles, .. }) if tiles.len() == 4
    ));
}

#[test]
fn a_publisher_that_lost_a_packet_is_asked_for_a_keyframe_once_a_second() {
    let t0 = Instant::now();
    let mut mixer = VideoMixer::new(Raw, cfg()).expect("mixer");
    mixer.add(t0, 1, true).expect("add");
    let asks = |m: &mut VideoMixer<Raw>| {
        std::iter::from_fn(|| m.poll_output())
            .filter(|o| matches!(o, VideoOutput::KeyframeRequest { participant: 1 }))
            .count()
    };
    assert_eq!(asks(&mut mixer), 0);
    let slice: &[u8] = &[0x41, 9, 9];
    // Packets 1, 2, then 5: a gap.
    for (seq, ms) in [
        (1u16, 0u64),
        (2, 10),
        (5, 20),
        (6, 30),
        (7, 500),
        (8, 1_100),
    ] {
        mixer
            .handle_packet(
                t0 + Duration::from_millis(ms),
                1,
                seq,
                u32::from(seq) * 3000,
                true,
                slice,
            )
            .expect("member");
    }
    // Asked at 20 ms (the gap) and again at 1.1 s, not in between.
    assert_eq!(asks(&mut mixer), 2);
    assert!(mixer.stats().units_dropped >= 3);
}

#[test]
fn a_keyframe_is_sent_on_join_and_on_request_only() {
    let t0 = Instant::now();
    let mut mixer = VideoMixer::new(Raw, cfg()).expect("mixer");
    mixer.add(t0, 1, false).expect("add");
    let mut keyframes = Vec::new();
    for k in 0..10u64 {
        let now = t0 + Duration::from_millis(k * 67);
        if k == 5 {
            mixer.request_keyframe();
        }
        mixer.handle_timeout(now);
        while let Some(o) = mixer.poll_output() {
            if let VideoOutput::Frame { keyframe, .. } = o {
                keyframes.push(keyframe);
            }
        }
    }
    assert_eq!(keyframes.len(), 10);
    let at: Vec<usize> = keyframes
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at, [0, 5]);
}

#[cfg(feature = "openh264")]
#[test]
fn openh264_publishers_come_out_in_their_tiles_of_the_encoded_composite() {
    use super::openh264::OpenH264;
    let t0 = Instant::now();
    let mut mixer = VideoMixer::new(OpenH264, cfg()).expect("mixer");
    let publisher_cfg = VideoConfig {
        width: 160,
        height: 120,
        ..cfg()
    };
    let mut pubs: Vec<_> = (0..4)
        .map(|i| Publisher {
            id: i as u64,
            encoder: OpenH264.encoder(&publisher_cfg).expect("encoder"),
            picture: Picture::filled(160, 120, COLOURS[i]),
            seq: 7 + 100 * i as u16,
            ts: 0,
        })
        .collect();
    for p in &pubs {
        mixer.add(t0, p.id, true).expect("add");
    }
    let mut decoder = OpenH264.decoder().expect("decoder");
    let (pictures, _) = run(t0, &mut mixer, &mut pubs, &mut decoder, 15);
    let last = pictures.last().expect("composites decoded");
    let rects = grid(4, 320, 180);
    for (i, colour) in COLOURS.iter().enumerate() {
        let (y, u, v) = last.mean(rects[i]);
        let off = |a: f64, b: u8| (a - f64::from(b)).abs();
        assert!(
            off(y, colour.0) < 8.0 && off(u, colour.1) < 8.0 && off(v, colour.2) < 8.0,
            "tile {i}: ({y:.0}, {u:.0}, {v:.0}), want {colour:?}"
        );
    }
    assert!(mixer.stats().units_decoded >= 50, "{:?}", mixer.stats());
}

#[test]
fn the_speaker_layout_follows_the_dominant_speaker() {
    let t0 = Instant::now();
    let cfg = VideoConfig {
        layout: Layout::Speaker,
        ..cfg()
    };
    let mut mixer = VideoMixer::new(Raw, cfg).expect("mixer");
    let mut pubs: Vec<Publisher<RawEnc>> = (0..3)
        .map(|i| Publisher {
            id: i as u64,
            encoder: RawEnc,
            picture: Picture::filled(160, 120, COLOURS[i]),
            seq: 0,
            ts: 0,
        })
        .collect();
    for p in &pubs {
        mixer.add(t0, p.id, true).expect("add");
    }
    while mixer.poll_output().is_some() {}
    mixer.set_speaker(Some(2));
    let Some(VideoOutput::Layout { tiles, .. }) = mixer.poll_output() else {
        panic!("the layout is told again when the speaker changes");
    };
    let main = tiles.iter().find(|t| t.1.y == 0).expect("a main tile");
    assert_eq!(main.0, 2, "{tiles:?}");
    let (pictures, _) = run(t0, &mut mixer, &mut pubs, &mut RawDec, 3);
    let last = pictures.last().expect("composites decoded");
    let (y, u, v) = last.mean(main.1);
    assert_eq!((y as u8, u as u8, v as u8), COLOURS[2]);
    // The same speaker again changes nothing.
    mixer.set_speaker(Some(2));
    assert!(
        !std::iter::from_fn(|| mixer.poll_output())
            .any(|o| matches!(o, VideoOutput::Layout { .. }))
    );
}
