//! The files a recorder writes, read by an independent implementation:
//! FFmpeg (Debian's, installed by the test command). Real VP8 from
//! libvpx and real Opus, through RTP with loss and reordering, into WebM;
//! ffprobe must read every file and ffmpeg decode every frame without an
//! error, and a file cut short must still play up to the cut.

use std::path::{Path, PathBuf};
use std::process::Command;

use tern_mixer::codec::{AudioCodec, AudioEncoder};
use tern_mixer::opus::Opus;
use tern_record::{Codec, TrackRecorder};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} not runnable ({e}): scripts/install-test-deps.sh installs ffmpeg")
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// VP8 frames from libvpx: 320x240 test pattern, 30 fps, a keyframe every
/// 30 frames.
fn vp8_frames(seconds: u32) -> Vec<Vec<u8>> {
    ivf_frames(
        seconds,
        "src.ivf",
        &["-c:v", "libvpx", "-g", "30", "-b:v", "400k"],
    )
}

/// RTP packets of each frame (RFC 7741, no extensions), 500 bytes of VP8
/// each: (seq, ts, marker, payload).
type Packet = (u16, u32, bool, Vec<u8>);

fn packetize(frames: &[Vec<u8>], seq: u16, ts: u32) -> Vec<Vec<Packet>> {
    let mut seq = seq;
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let chunks: Vec<&[u8]> = f.chunks(500).collect();
            let n = chunks.len();
            chunks
                .into_iter()
                .enumerate()
                .map(|(k, c)| {
                    let mut p = vec![if k == 0 { 0x10 } else { 0x00 }];
                    p.extend_from_slice(c);
                    let s = seq;
                    seq = seq.wrapping_add(1);
                    (s, ts.wrapping_add(3000 * i as u32), k + 1 == n, p)
                })
                .collect()
        })
        .collect()
}

fn write(path: &Path, r: &mut TrackRecorder) -> Vec<u8> {
    let mut file = Vec::new();
    r.take_output(&mut file);
    std::fs::write(path, &file).expect("write webm");
    file
}

fn probe(path: &Path, stream: &str, entries: &str) -> serde_json::Value {
    let (v, err) = probe_with_complaints(path, stream, entries);
    assert!(err.is_empty(), "ffprobe: {err}");
    v
}

fn probe_with_complaints(path: &Path, stream: &str, entries: &str) -> (serde_json::Value, String) {
    let (ok, out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            stream,
            "-show_entries",
            entries,
            "-of",
            "json",
            path.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "ffprobe: {err}");
    (serde_json::from_str(&out).expect("ffprobe json"), err)
}

/// The file's video is `codec`, 320x240 (the test pattern's), and
/// `frames` frames that FFmpeg decodes without a complaint.
fn video_reads_as(path: &Path, codec: &str, frames: u64) {
    let v = probe(path, "v:0", "stream=codec_name,width,height,nb_read_frames");
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], codec, "{v}");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240)),
        "{v}"
    );
    assert_eq!(
        s["nb_read_frames"].as_str(),
        Some(frames.to_string().as_str()),
        "{v}"
    );
    assert_eq!(decode_errors(path), "", "every frame decodes");
}

/// A cut file's only complaint is that it ends early.
fn only_ends_early(err: &str) -> bool {
    err.lines().all(|l| l.contains("File ended prematurely"))
}

/// ffmpeg decodes the whole file; its complaints (decoder or demuxer).
fn decode_errors(path: &Path) -> String {
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().expect("utf-8"),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(ok, "ffmpeg failed: {err}");
    err
}

#[test]
fn recorded_vp8_with_loss_and_reordering_decodes_without_an_error() {
    let frames = vp8_frames(4);
    assert_eq!(frames.len(), 120);
    let mut pkts = packetize(&frames, 65_400, u32::MAX - 100_000);
    // Frame 45 loses a packet for good (a gap until the keyframe at 60);
    // frames 70 and 71 arrive in each other's place; frame 80's first
    // packet comes twice.
    assert!(pkts[45].len() > 1, "frame 45 spans packets");
    pkts[45].remove(0);
    pkts.swap(70, 71);
    let dup = pkts[80][0].clone();
    pkts[80].push(dup);
    let mut r = TrackRecorder::new(Codec::Vp8);
    for (i, f) in pkts.iter().enumerate() {
        for (s, t, m, p) in f {
            let _ = r.push(i as i64 * 33, *s, *t, *m, p);
        }
    }
    r.finish();
    let stats = r.stats().clone();
    // 45 given up, 46-59 waited for a keyframe; everything else written.
    assert_eq!(stats.frames_incomplete, 1, "{stats:?}");
    assert_eq!(stats.frames_awaiting_keyframe, 14, "{stats:?}");
    assert_eq!(stats.frames_written, 120 - 15, "{stats:?}");

    let path = tmp("video.webm");
    let file = write(&path, &mut r);
    video_reads_as(&path, "vp8", 105);

    // Cut short (as by a crash or a full disk) two thirds in, mid-block:
    // what came before the cut still decodes.
    let cut = tmp("video-cut.webm");
    std::fs::write(&cut, &file[..file.len() * 2 / 3]).expect("write cut");
    let (v, err) = probe_with_complaints(&cut, "v:0", "stream=nb_read_frames");
    assert!(only_ends_early(&err), "{err}");
    let err = decode_errors(&cut);
    assert!(
        only_ends_early(&err),
        "no corrupt frame before the cut: {err}"
    );
    let n: u64 = v["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 60, "frames readable before the cut: {v}");
}

/// Power of `freq` in `pcm` (Goertzel), normalised by length.
fn power(pcm: &[i16], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in pcm {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / pcm.len() as f64
}

#[test]
fn recorded_opus_with_a_gap_keeps_its_tone_and_its_length() {
    let mut enc = Opus::default().encoder(48_000).expect("encoder");
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    let mut packet = Vec::new();
    // 3 s of a 440 Hz tone, 20 ms frames; frames 50-59 lost (200 ms).
    for i in 0..150u32 {
        let pcm: Vec<i16> = (0..960)
            .map(|k| {
                let t = f64::from(i * 960 + k) / 48_000.0;
                ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 8_000.0) as i16
            })
            .collect();
        enc.encode(&pcm, &mut packet).expect("encode");
        if (50..60).contains(&i) {
            continue;
        }
        let _ = r.push(
            i64::from(i) * 20,
            1000 + i as u16,
            5_000 + i * 960,
            false,
            &packet,
        );
    }
    r.finish();
    assert_eq!(r.stats().frames_written, 140, "{:?}", r.stats());
    let path = tmp("audio.webm");
    write(&path, &mut r);
    let v = probe(&path, "a:0", "stream=codec_name,sample_rate,channels");
    assert_eq!(v["streams"][0]["codec_name"], "opus", "{v}");
    assert_eq!(decode_errors(&path), "", "every frame decodes");

    // Decoded with the gap filled by silence where its timestamps say.
    let pcm_path = tmp("audio.pcm");
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-i",
            path.to_str().expect("utf-8"),
            "-af",
            "aresample=async=1:first_pts=0",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-f",
            "s16le",
            pcm_path.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "{err}");
    let raw = std::fs::read(&pcm_path).expect("pcm");
    let pcm: Vec<i16> = raw
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let secs = pcm.len() as f64 / 48_000.0;
    assert!((secs - 3.0).abs() < 0.1, "{secs} s decoded, 3 s recorded");
    let tone = power(&pcm, 48_000.0, 440.0);
    let other = power(&pcm, 48_000.0, 1_000.0);
    assert!(tone > 100.0 * other, "440 Hz {tone} vs 1 kHz {other}");
    // The gap (1.0-1.2 s) is quiet, the tone either side of it is not.
    let rms = |a: f64, b: f64| {
        let s = &pcm[(a * 48_000.0) as usize..(b * 48_000.0) as usize];
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    };
    assert!(
        rms(1.03, 1.17) < rms(0.5, 0.9) / 10.0,
        "gap {} vs tone {}",
        rms(1.03, 1.17),
        rms(0.5, 0.9)
    );
    assert!(rms(1.5, 1.9) > 1_000.0);
}

#[test]
fn a_video_begun_before_its_first_picture_starts_black_and_every_frame_decodes() {
    let frames = vp8_frames(1);
    let pkts = packetize(&frames, 1, 0);
    begins_black(Codec::Vp8, &pkts, "lead-in.webm");
    let vp9 = vp9_frames(1, "src-vp9-1s.ivf");
    begins_black(Codec::Vp9, &packetize_vp9(&vp9), "lead-in-vp9.webm");

    // A first picture soon after the arrival needs no black one.
    let mut r = TrackRecorder::new(Codec::Vp8);
    r.begin_at(850);
    for (i, f) in pkts.iter().enumerate().take(3) {
        for (s, t, m, p) in f {
            let _ = r.push(900 + i as i64 * 33, *s, *t, *m, p);
        }
    }
    r.finish();
    assert!(!r.stats().lead_in);
    assert_eq!(r.stats().frames_written, 3);
}

/// A `codec` track present from 200 ms whose camera's first picture (of
/// the 30 in `pkts`) arrives at 900 ms: black at 200 ms, the camera from
/// 900 ms, every frame decoding cleanly across the size change.
fn begins_black(codec: Codec, pkts: &[Vec<Packet>], name: &str) {
    let mut r = TrackRecorder::new(codec);
    // Present from 200 ms; the camera's first picture arrives at 900 ms.
    r.begin_at(200);
    for (i, f) in pkts.iter().enumerate() {
        for (s, t, m, p) in f {
            let _ = r.push(900 + i as i64 * 33, *s, *t, *m, p);
        }
    }
    r.finish();
    assert!(r.stats().lead_in);
    assert_eq!(r.stats().frames_written, 31, "{:?}", r.stats());
    let path = tmp(name);
    write(&path, &mut r);
    let v = probe(&path, "v:0", "stream=width,height,nb_read_frames");
    let s = &v["streams"][0];
    // The header has the camera's size; the black picture is 320x180
    // (which ffprobe reports for VP9, whose decoder it asks).
    if codec == Codec::Vp8 {
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(320), Some(240)),
            "{v}"
        );
    }
    assert_eq!(s["nb_read_frames"].as_str(), Some("31"), "{v}");
    let (ok, out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
            path.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "{err}");
    let times: Vec<f64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(times.first().copied(), Some(0.2), "black from the arrival");
    assert_eq!(
        times.get(1).copied(),
        Some(0.9),
        "the camera from its first picture"
    );
    assert_eq!(decode_errors(&path), "", "the size change decodes cleanly");
}

/// H.264 pictures from libx264 (Annex B): 320x240 test pattern, 30 fps,
/// an IDR picture every 30; each picture's NAL units, parameter sets and
/// SEI with the picture they precede.
fn h264_pictures(seconds: u32) -> Vec<Vec<Vec<u8>>> {
    let path = tmp("src.h264");
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-g",
            "30",
            "-bf",
            "0",
            "-f",
            "h264",
            path.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "ffmpeg made no H.264: {err}");
    let data = std::fs::read(&path).expect("h264");
    // Split at start codes (00 00 01, or 00 00 00 01).
    let mut nals = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut end = i;
                if end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(data[s..end].to_vec());
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(data[s..].to_vec());
    }
    let mut pictures = Vec::new();
    let mut current = Vec::new();
    for n in nals {
        let slice = matches!(n[0] & 0x1f, 1 | 5);
        current.push(n);
        if slice {
            pictures.push(std::mem::take(&mut current));
        }
    }
    pictures
}

/// RTP packets of each picture (RFC 6184: a NAL unit a packet, FU-A past
/// 1000 bytes, the marker on the picture's last): (seq, ts, marker, payload).
fn packetize_h264(pictures: &[Vec<Vec<u8>>]) -> Vec<Vec<Packet>> {
    let mut seq = 60_000u16;
    pictures
        .iter()
        .enumerate()
        .map(|(i, nals)| {
            let ts = 3000 * i as u32;
            let mut pkts: Vec<Packet> = Vec::new();
            for n in nals {
                if n.len() <= 1000 {
                    pkts.push((seq, ts, false, n.clone()));
                    seq = seq.wrapping_add(1);
                    continue;
                }
                let chunks: Vec<&[u8]> = n[1..].chunks(1000).collect();
                let k = chunks.len();
                for (j, c) in chunks.into_iter().enumerate() {
                    let mut p = vec![(n[0] & 0xe0) | 28, n[0] & 0x1f];
                    if j == 0 {
                        p[1] |= 0x80;
                    }
                    if j + 1 == k {
                        p[1] |= 0x40;
                    }
                    p.extend_from_slice(c);
                    pkts.push((seq, ts, false, p));
                    seq = seq.wrapping_add(1);
                }
            }
            if let Some(last) = pkts.last_mut() {
                last.2 = true;
            }
            pkts
        })
        .collect()
}

#[test]
fn recorded_h264_with_loss_and_reordering_is_matroska_that_decodes_without_an_error() {
    let pictures = h264_pictures(4);
    let mut r = record_with_loss_and_reordering(Codec::H264, packetize_h264(&pictures));

    let path = tmp("video.mkv");
    write(&path, &mut r);
    video_reads_as(&path, "h264", 105);
}

/// Frames from an IVF file `ffmpeg` encodes from the 320x240 test pattern
/// with `codec_args`.
fn ivf_frames(seconds: u32, name: &str, codec_args: &[&str]) -> Vec<Vec<u8>> {
    let ivf = tmp(name);
    let secs = seconds.to_string();
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        &secs,
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(codec_args);
    args.extend_from_slice(&["-f", "ivf", ivf.to_str().expect("utf-8")]);
    let (ok, _, err) = run("ffmpeg", &args);
    assert!(ok, "ffmpeg made no {name}: {err}");
    let data = std::fs::read(&ivf).expect("ivf");
    assert_eq!(&data[..4], b"DKIF");
    let header = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut frames = Vec::new();
    let mut at = header;
    while at + 12 <= data.len() {
        let n = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        frames.push(data[at + 12..at + 12 + n].to_vec());
        at += 12 + n;
    }
    frames
}

/// Feed `pkts` with frame 45 lost whole, 70 and 71 swapped and 80's first
/// packet doubled; 105 of 120 frames must be written (45 given up, 46-59
/// waiting for the keyframe at 60).
fn record_with_loss_and_reordering(codec: Codec, mut pkts: Vec<Vec<Packet>>) -> TrackRecorder {
    assert_eq!(pkts.len(), 120);
    pkts[45].clear();
    pkts.swap(70, 71);
    let dup = pkts[80][0].clone();
    pkts[80].push(dup);
    let mut r = TrackRecorder::new(codec);
    for (i, f) in pkts.iter().enumerate() {
        for (s, t, m, p) in f {
            let _ = r.push(i as i64 * 33, *s, *t, *m, p);
        }
    }
    r.finish();
    let stats = r.stats().clone();
    assert_eq!(stats.frames_awaiting_keyframe, 14, "{stats:?}");
    assert_eq!(stats.frames_written, 120 - 15, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
    r
}

/// VP9 frames from libvpx: realtime, no hidden frames (what a browser's
/// encoder sends), a keyframe every 30 frames.
fn vp9_frames(seconds: u32, name: &str) -> Vec<Vec<u8>> {
    ivf_frames(
        seconds,
        name,
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-lag-in-frames",
            "0",
            "-g",
            "30",
            "-b:v",
            "400k",
        ],
    )
}

/// RTP packets of VP9 frames (RFC 9628, the shortest descriptor: P, B, E;
/// 500 bytes of VP9 a packet).
fn packetize_vp9(frames: &[Vec<u8>]) -> Vec<Vec<Packet>> {
    let mut seq = 65_000u16;
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let inter = tern_record::vp9::keyframe_size(f).is_none();
            let chunks: Vec<&[u8]> = f.chunks(500).collect();
            let n = chunks.len();
            chunks
                .into_iter()
                .enumerate()
                .map(|(k, c)| {
                    let mut d = 0u8;
                    if inter {
                        d |= 0x40;
                    }
                    if k == 0 {
                        d |= 0x08;
                    }
                    if k + 1 == n {
                        d |= 0x04;
                    }
                    let mut p = vec![d];
                    p.extend_from_slice(c);
                    let s = seq;
                    seq = seq.wrapping_add(1);
                    (s, 3000 * i as u32, k + 1 == n, p)
                })
                .collect()
        })
        .collect()
}

#[test]
fn recorded_vp9_with_loss_and_reordering_decodes_without_an_error() {
    let frames = vp9_frames(4, "src-vp9.ivf");
    assert_eq!(frames.len(), 120);
    assert!(frames[60].len() > 500, "the keyframe spans packets");
    let mut r = record_with_loss_and_reordering(Codec::Vp9, packetize_vp9(&frames));
    let path = tmp("video-vp9.webm");
    write(&path, &mut r);
    video_reads_as(&path, "vp9", 105);
}

/// An AV1 stream's OBUs (size fields present) split into temporal units
/// at its temporal delimiters.
fn av1_temporal_units(seconds: u32) -> Vec<Vec<Vec<u8>>> {
    let path = tmp("src.obu");
    let secs = seconds.to_string();
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            &secs,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "30",
            "-b:v",
            "400k",
            "-f",
            "obu",
            path.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "ffmpeg made no AV1: {err}");
    let data = std::fs::read(&path).expect("obu");
    let mut units: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = data[at];
        let header = if h & 0x04 != 0 { 2 } else { 1 };
        assert!(h & 0x02 != 0, "FFmpeg writes size fields");
        let (mut size, mut n) = (0usize, 0);
        loop {
            let b = data[at + header + n];
            size |= usize::from(b & 0x7f) << (7 * n);
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let obu = data[at..at + header + n + size].to_vec();
        at += header + n + size;
        if (h >> 3) & 0x0f == 2 {
            units.push(Vec::new());
        } else if let Some(u) = units.last_mut() {
            u.push(obu);
        }
    }
    units
}

/// RTP packets of temporal units (AV1 RTP specification section 4): an
/// OBU a packet without its size field (as libwebrtc sends them), split at
/// 500 bytes (Z, Y); N on a unit with a sequence header.
fn packetize_av1(units: &[Vec<Vec<u8>>]) -> Vec<Vec<Packet>> {
    let mut seq = 100u16;
    units
        .iter()
        .enumerate()
        .map(|(i, obus)| {
            let key = obus.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
            let mut pkts: Vec<Packet> = Vec::new();
            for o in obus {
                // Drop the size field.
                let header = if o[0] & 0x04 != 0 { 2 } else { 1 };
                let mut n = 0;
                while o[header + n] & 0x80 != 0 {
                    n += 1;
                }
                let mut bare = vec![o[0] & !0x02];
                bare.extend_from_slice(&o[1..header]);
                bare.extend_from_slice(&o[header + n + 1..]);
                let chunks: Vec<&[u8]> = bare.chunks(500).collect();
                let k = chunks.len();
                for (j, c) in chunks.into_iter().enumerate() {
                    let mut agg = 0x10; // W = 1: one element, no length
                    if j > 0 {
                        agg |= 0x80;
                    }
                    if j + 1 < k {
                        agg |= 0x40;
                    }
                    if key && pkts.is_empty() {
                        agg |= 0x08;
                    }
                    let mut p = vec![agg];
                    p.extend_from_slice(c);
                    pkts.push((seq, 3000 * i as u32, false, p));
                    seq = seq.wrapping_add(1);
                }
            }
            if let Some(last) = pkts.last_mut() {
                last.2 = true;
            }
            pkts
        })
        .collect()
}

#[test]
fn recorded_av1_with_loss_and_reordering_decodes_without_an_error() {
    let units = av1_temporal_units(4);
    assert_eq!(units.len(), 120);
    let key = |u: &Vec<Vec<u8>>| u.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
    assert!(
        key(&units[0]) && key(&units[60]),
        "keyframes carry the sequence header"
    );
    let mut r = record_with_loss_and_reordering(Codec::Av1, packetize_av1(&units));
    let path = tmp("video-av1.webm");
    write(&path, &mut r);
    video_reads_as(&path, "av1", 105);
}
