use super::*;
use proptest::prelude::*;

/// A fake VP8 frame: a keyframe header (with its size) or an interframe,
/// padded to `len`.
fn frame(key: bool, len: usize) -> Vec<u8> {
    let mut f = if key {
        vec![0x50, 0x01, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]
    } else {
        vec![0x51, 0x01, 0x00]
    };
    f.resize(len.max(f.len()), 0x77);
    f
}

/// (seq, ts, marker, payload with descriptor).
type Packet = (u16, u32, bool, Vec<u8>);

/// RTP packets of one frame.
fn packetize(seq: &mut u16, ts: u32, f: &[u8], mtu: usize) -> Vec<Packet> {
    let chunks: Vec<&[u8]> = f.chunks(mtu).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
            p.extend_from_slice(c);
            let s = *seq;
            *seq = seq.wrapping_add(1);
            (s, ts, i + 1 == n, p)
        })
        .collect()
}

/// 30 fps for `frames` frames, a keyframe every `gop`.
fn stream(frames: usize, gop: usize, start_seq: u16) -> Vec<Vec<Packet>> {
    let mut seq = start_seq;
    (0..frames)
        .map(|i| {
            let ts = (i as u32)
                .wrapping_mul(3000)
                .wrapping_add(u32::MAX - 30_000);
            packetize(&mut seq, ts, &frame(i % gop == 0, 2500), 1000)
        })
        .collect()
}

fn feed(r: &mut TrackRecorder, pkts: &[Packet]) {
    for (i, (s, t, m, p)) in pkts.iter().enumerate() {
        let _ = r.push(i as i64, *s, *t, *m, p);
    }
}

#[test]
fn every_frame_is_written_in_order_across_sequence_and_timestamp_wraps() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let all: Vec<_> = stream(90, 30, u16::MAX - 40).concat();
    feed(&mut r, &all);
    r.finish();
    assert_eq!(r.stats().frames_written, 90, "{:?}", r.stats());
    let mut out = Vec::new();
    r.take_output(&mut out);
    assert_eq!(&out[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
}

#[test]
fn reordered_and_retransmitted_packets_still_make_whole_frames() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let frames = stream(60, 30, 100);
    let mut all = Vec::new();
    for pair in frames.chunks(2) {
        // The second frame's packets first, then the first's, and one
        // packet twice.
        if let [a, b] = pair {
            all.extend(b.iter().rev().cloned());
            all.extend(a.iter().cloned());
            all.push(a[0].clone());
        }
    }
    feed(&mut r, &all);
    r.finish();
    let s = r.stats();
    assert_eq!(s.frames_written, 60, "{s:?}");
    assert_eq!(s.frames_incomplete, 0, "{s:?}");
}

#[test]
fn a_lost_packet_leaves_a_gap_until_the_next_keyframe() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let mut frames = stream(90, 30, 7);
    // Frame 40 loses its middle packet for good.
    frames[40].remove(1);
    feed(&mut r, &frames.concat());
    r.finish();
    let s = r.stats();
    // Frame 40 given up; 41-59 complete but not written (no reference);
    // from the keyframe at 60 on, written.
    assert_eq!(s.frames_incomplete, 1, "{s:?}");
    assert_eq!(s.frames_awaiting_keyframe, 19, "{s:?}");
    assert_eq!(s.frames_written, 90 - 20, "{s:?}");
}

#[test]
fn a_frame_lost_whole_also_waits_for_a_keyframe() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let mut frames = stream(60, 30, 7);
    frames[10].clear();
    feed(&mut r, &frames.concat());
    r.finish();
    let s = r.stats();
    // 11-29 complete but after a hole.
    assert_eq!(s.frames_awaiting_keyframe, 19, "{s:?}");
    assert_eq!(s.frames_written, 60 - 20, "{s:?}");
}

#[test]
fn recording_starts_at_a_keyframe() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let frames = stream(60, 30, 7);
    // Joined mid-stream: frames 5.. only.
    feed(&mut r, &frames[5..].concat());
    r.finish();
    let s = r.stats();
    assert_eq!(s.frames_awaiting_keyframe, 25, "{s:?}");
    assert_eq!(s.frames_written, 30, "{s:?}");
}

#[test]
fn packets_of_frames_already_written_are_late_and_counted() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let frames = stream(30, 30, 7);
    feed(&mut r, &frames.concat());
    let (s, t, m, p) = frames[3][0].clone();
    assert_eq!(r.push(100, s, t, m, &p), Err(RecordError::Late));
    assert_eq!(r.push(100, 1, 0, false, &[]), Err(RecordError::Empty));
    assert_eq!(
        r.push(100, 2, 0, false, &[0x90]),
        Err(RecordError::Vp8Descriptor)
    );
    let st = r.stats();
    assert_eq!((st.late, st.empty, st.malformed), (1, 1, 1), "{st:?}");
}

#[test]
fn audio_gaps_are_gaps_and_every_packet_that_came_is_written() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    for i in 0..100u32 {
        if (40..45).contains(&i) {
            continue;
        }
        let _ = r.push(
            i64::from(i) * 20,
            i as u16,
            i * 960,
            false,
            &[0xFC, 1, 2, 3],
        );
    }
    r.finish();
    assert_eq!(r.stats().frames_written, 95, "{:?}", r.stats());
    assert_eq!(r.stats().frames_incomplete, 0);
}

#[test]
fn an_audio_track_that_went_quiet_still_ends_when_it_ended() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    // One second of frames, then nothing (a mute) until 5 s.
    for i in 0..50u32 {
        let _ = r.push(i64::from(i) * 20, i as u16, i * 960, false, &[0xFC, 1, 2]);
    }
    r.finish();
    r.end_at(1_030);
    assert_eq!(
        r.stats().frames_written,
        50,
        "the last frame is recent: nothing added"
    );
    r.end_at(5_000);
    assert_eq!(r.stats().frames_written, 51);
    let mut out = Vec::new();
    r.take_output(&mut out);
    let silence = out
        .windows(OPUS_SILENCE.len())
        .rposition(|w| w == OPUS_SILENCE);
    assert_eq!(
        silence,
        Some(out.len() - OPUS_SILENCE.len()),
        "the silence closes the file"
    );
    // Video ends at its last picture.
    let mut v = TrackRecorder::new(Codec::Vp8);
    for pkts in stream(10, 10, 0) {
        feed(&mut v, &pkts);
    }
    v.finish();
    let n = v.stats().frames_written;
    v.end_at(60_000);
    assert_eq!(v.stats().frames_written, n);
}

#[test]
fn frames_under_a_millisecond_apart_still_get_increasing_block_times() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let mut seq = 0u16;
    // A keyframe, then a frame 45 ticks (0.5 ms) later, then a normal one.
    for (i, ts) in [0u32, 45, 3045].into_iter().enumerate() {
        let f = frame(i == 0, 200);
        for p in packetize(&mut seq, ts, &f, 1200) {
            let _ = r.push(1000, p.0, p.1, p.2, &p.3);
        }
    }
    r.finish();
    assert_eq!(r.stats().frames_written, 3, "{:?}", r.stats());
    assert_eq!(r.stats().retimed, 1);
    let mut out = Vec::new();
    r.take_output(&mut out);
    // One cluster (at the keyframe, 1000 ms); blocks at +0, +1 and +33.
    let rel: Vec<i16> = out
        .windows(4)
        .filter(|w| w[0] == 0x81 && (w[3] == 0x80 || w[3] == 0x00))
        .map(|w| i16::from_be_bytes([w[1], w[2]]))
        .collect();
    assert_eq!(rel, vec![0, 1, 33], "{out:02x?}");
}

#[test]
fn an_audio_track_begins_when_its_participant_arrived() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.begin_at(2_000);
    // Its first packet arrives 600 ms later.
    for i in 0..10u32 {
        let _ = r.push(
            2_600 + i64::from(i) * 20,
            i as u16,
            i * 960,
            false,
            &[0xFC, 1],
        );
    }
    r.finish();
    assert_eq!(r.stats().frames_written, 11, "{:?}", r.stats());
    assert_eq!(
        r.stats().late,
        0,
        "the packets after it are placed after it"
    );
    let mut out = Vec::new();
    r.take_output(&mut out);
    // The first cluster opens at 2000 ms (0xE7, size 2, 0x07D0).
    assert!(out.windows(4).any(|w| w == [0xE7, 0x82, 0x07, 0xD0]));

    // A first packet inside what the silence would span begins the file
    // itself (5 ms after the arrival), without the silence: moved past it
    // it would overlap the next (found by the Chromium test: FFmpeg saw
    // time go back).
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.begin_at(1_000);
    let _ = r.push(1_005, 1, 0, false, &[0xFC, 1]);
    let _ = r.push(1_025, 2, 960, false, &[0xFC, 1]);
    r.finish();
    let mut out = Vec::new();
    r.take_output(&mut out);
    // The cluster at 1005 ms (0x03ED), blocks 20 ms apart.
    assert!(out.windows(4).any(|w| w == [0xE7, 0x82, 0x03, 0xED]));
    assert_eq!(rel_times(&out), vec![0, 20], "{out:02x?}");
    assert!(!r.stats().lead_in);
}

#[test]
fn the_origin_places_the_first_frame_on_the_recording_timeline() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    // RTP 96000 (2 s into the stream) is 1.5 s into the recording.
    assert!(r.set_origin(96_000, 1_500));
    let _ = r.push(0, 1, 96_000 + 4_800, false, &[0xFC, 1]);
    r.finish();
    let mut out = Vec::new();
    r.take_output(&mut out);
    // The cluster's timestamp element: 0xE7, size 2, 1600 ms.
    let at = out
        .windows(4)
        .position(|w| w == [0xE7, 0x82, 0x06, 0x40])
        .map(|_| ());
    assert_eq!(at, Some(()), "cluster at 1600 ms");
    assert!(!r.set_origin(0, 0), "not once frames are written");
}

/// Block times relative to their cluster, in file order.
fn rel_times(out: &[u8]) -> Vec<i16> {
    out.windows(4)
        .filter(|w| w[0] == 0x81 && (w[3] == 0x80))
        .map(|w| i16::from_be_bytes([w[1], w[2]]))
        .collect()
}

#[test]
fn held_frames_wait_for_the_origin_and_are_placed_by_it() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.hold();
    // Two seconds of audio arrive while the track waits for a sender report.
    for i in 0..100u32 {
        let _ = r.push(
            500 + i64::from(i) * 20,
            i as u16,
            48_000 + i * 960,
            false,
            &[0xFC, 1],
        );
    }
    let mut out = Vec::new();
    r.take_output(&mut out);
    assert!(out.is_empty(), "nothing written while held");
    assert_eq!(r.stats().frames_written, 0);
    // The report places RTP 48000 at 300 ms (200 ms before it arrived).
    assert!(r.set_origin(48_000, 300));
    assert!(!r.holding());
    assert_eq!(r.stats().frames_written, 100, "{:?}", r.stats());
    assert!(r.stats().origin_set);
    r.take_output(&mut out);
    // The first cluster opens at 300 ms (0xE7, size 2, 0x012C).
    assert!(
        out.windows(4).any(|w| w == [0xE7, 0x82, 0x01, 0x2C]),
        "{out:02x?}"
    );
}

#[test]
fn held_frames_released_without_an_origin_are_placed_by_arrival() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.hold();
    // 800 ms of audio: past the reorder wait of the first frame.
    for i in 0..40u32 {
        let _ = r.push(
            700 + i64::from(i) * 20,
            i as u16,
            i * 960,
            false,
            &[0xFC, 1],
        );
    }
    r.release();
    assert_eq!(r.stats().frames_written, 40, "{:?}", r.stats());
    assert!(!r.stats().origin_set);
    assert!(!r.set_origin(0, 0), "too late once frames are written");
    let mut out = Vec::new();
    r.take_output(&mut out);
    // 700 ms: 0xE7, size 2, 0x02BC.
    assert!(
        out.windows(4).any(|w| w == [0xE7, 0x82, 0x02, 0xBC]),
        "{out:02x?}"
    );

    // A recording that ends while a track is held still writes it.
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.hold();
    let _ = r.push(100, 1, 0, false, &[0xFC, 1]);
    r.finish();
    assert_eq!(r.stats().frames_written, 1);
}

/// Found by the Chromium AV1 recording test: a first frame the sender's
/// clock placed inside the leading silence was moved to the silence's end,
/// 10 ms onto the frame after it, and FFmpeg read that as time going back.
#[test]
fn a_frame_the_origin_places_inside_the_leading_silence_begins_the_file_without_it() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.begin_at(1_000);
    r.hold();
    let _ = r.push(1_050, 1, 0, false, &[0xFC, 1]);
    let _ = r.push(1_070, 2, 960, false, &[0xFC, 1]);
    // The sender's clock puts the first frame 10 ms into the silence.
    assert!(r.set_origin(0, 1_010));
    r.finish();
    let mut out = Vec::new();
    r.take_output(&mut out);
    // No silence; the frames 20 ms apart, as captured.
    assert_eq!(rel_times(&out), vec![0, 20], "{out:02x?}");
    assert_eq!(r.stats().retimed, 0);
    assert!(!r.stats().lead_in);

    // Placed after the silence's end: the silence stays.
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.begin_at(1_000);
    r.hold();
    let _ = r.push(1_050, 1, 0, false, &[0xFC, 1]);
    let _ = r.push(1_070, 2, 960, false, &[0xFC, 1]);
    assert!(r.set_origin(0, 1_050));
    r.finish();
    let mut out = Vec::new();
    r.take_output(&mut out);
    assert_eq!(rel_times(&out), vec![0, 50, 70], "{out:02x?}");
    assert!(r.stats().lead_in);
}

#[test]
fn a_stray_packet_with_a_frames_timestamp_is_not_written_into_it() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let frames = stream(30, 30, 100);
    let mut all = frames.concat();
    // Frame 5's timestamp on a packet numbered far outside it.
    let (_, ts, _, _) = frames[5][0];
    all.insert(0, (9_000, ts, false, vec![0x00, 0xEE, 0xEE]));
    feed(&mut r, &all);
    r.finish();
    assert_eq!(r.stats().frames_written, 30, "{:?}", r.stats());
    let mut out = Vec::new();
    r.take_output(&mut out);
    assert!(
        !out.windows(2).any(|w| w == [0xEE, 0xEE]),
        "the stray bytes are in the file"
    );
}

/// Found by the `record_track` fuzz target: a frame whose marker packet's
/// number is below its start packet's panicked (`BTreeMap::range` with
/// start > end).
#[test]
fn a_marker_numbered_before_the_start_is_no_frame_and_no_panic() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    let _ = r.push(0, 10, 1000, false, &[0x10, 0x50, 0x01]);
    let _ = r.push(0, 5, 1000, true, &[0x00, 0x77]);
    r.finish();
    assert_eq!(r.stats().frames_written, 0);
    assert_eq!(r.stats().frames_incomplete, 1);
}

#[test]
fn frames_that_never_complete_hold_bounded_memory() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    // 400 frames within the reorder window, each 100 packets of 1,100
    // bytes and no marker: 44 MB if nothing were given up.
    let mut payload = vec![0x10];
    payload.resize(1101, 0x55);
    let mut seq = 0u16;
    for i in 0..400u32 {
        for _ in 0..100 {
            let _ = r.push(0, seq, i, false, &payload);
            seq = seq.wrapping_add(1);
            assert!(r.pending_bytes() <= MAX_PENDING_BYTES);
        }
    }
    assert!(r.stats().frames_incomplete > 200, "{:?}", r.stats());
}

proptest! {
    #[test]
    fn never_panics_and_never_writes_backwards(
        pkts in prop::collection::vec(
            (any::<u16>(), any::<u32>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..40)),
            0..200,
        ),
        opus in any::<bool>(),
    ) {
        let codec = if opus { Codec::Opus { channels: 2 } } else { Codec::Vp8 };
        let mut r = TrackRecorder::new(codec);
        for (i, (s, t, m, p)) in pkts.iter().enumerate() {
            let _ = r.push(i as i64, *s, *t, *m, p);
        }
        r.finish();
        let s = r.stats();
        prop_assert!(s.frames_written <= s.packets);
        prop_assert_eq!(r.pending_bytes(), 0, "everything written or given up");
    }
}

#[test]
fn frames_captured_before_the_recording_began_start_it_and_the_file_starts_at_a_keyframe() {
    // Found by the Chromium kill test in CI (a camera file FFmpeg decoded
    // no frame of): a sender report placed the first keyframe before the
    // recording's start; it was dropped as late, and the interframes after
    // it began the file.
    let mut r = TrackRecorder::new(Codec::Vp8);
    let frames = stream(30, 30, 100);
    let (_, ts0, _, _) = frames[0][0];
    // Frame 0 at -50 ms, frame 1 at -17, frame 2 at +16.
    assert!(r.set_origin(ts0, -50));
    feed(&mut r, &frames.concat());
    r.finish();
    let s = r.stats().clone();
    assert_eq!(s.frames_written, 30, "{s:?}");
    assert_eq!(s.late, 0, "{s:?}");
    let mut out = Vec::new();
    r.take_output(&mut out);
    // The first block is the keyframe (flags 0x80) at 0, then 1 and 16:
    // SimpleBlock (0xA3), a two-byte size (these frames are 2.5 kB),
    // track 1 (0x81), the time, the flags.
    let first: Vec<(i16, u8)> = out
        .windows(7)
        .filter(|w| w[0] == 0xA3 && w[1] & 0xC0 == 0x40 && w[3] == 0x81)
        .map(|w| (i16::from_be_bytes([w[4], w[5]]), w[6]))
        .take(3)
        .collect();
    assert_eq!(first, vec![(0, 0x80), (1, 0x00), (16, 0x00)]);
}

/// Found by the Chromium AV1 recording test in CI ("non monotonically
/// increasing dts ... 7 >= 1"): a sender report placed an audio frame 13 ms
/// before the recording began; moved to 0 it overlapped the next frame, at
/// 7 ms. Audio captured before the start is left out instead.
#[test]
fn audio_captured_before_the_recording_began_is_left_out_not_piled_at_the_start() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    assert!(r.set_origin(0, -13));
    for i in 0..3u32 {
        let _ = r.push(i64::from(i) * 20, i as u16, i * 960, false, &[0xFC, 1]);
    }
    r.finish();
    let s = r.stats().clone();
    assert_eq!(
        (s.frames_written, s.before_start, s.retimed),
        (2, 1, 0),
        "{s:?}"
    );
    let mut out = Vec::new();
    r.take_output(&mut out);
    // The cluster at 7 ms (0xE7, size 1, 7), blocks 20 ms apart.
    assert!(
        out.windows(3).any(|w| w == [0xE7, 0x81, 0x07]),
        "{out:02x?}"
    );
    assert_eq!(rel_times(&out), vec![0, 20], "{out:02x?}");
}

/// A track held for its sender's first report keeps all of it: 8 s of
/// 10 ms Opus frames (800, what a client with `ptime` 10 sends) were over
/// the 512 frames a recorder kept waiting, and the first were given up.
#[test]
fn a_held_track_of_10_ms_audio_frames_keeps_eight_seconds() {
    let mut r = TrackRecorder::new(Codec::Opus { channels: 2 });
    r.hold();
    for i in 0..800u32 {
        let _ = r.push(i64::from(i) * 10, i as u16, i * 480, false, &[0xFC, 1]);
    }
    assert!(r.set_origin(0, 0));
    r.finish();
    let s = r.stats().clone();
    assert_eq!((s.frames_written, s.frames_incomplete), (800, 0), "{s:?}");
}

#[test]
fn a_video_track_says_it_awaits_a_keyframe_only_once_its_file_stands_still() {
    let mut r = TrackRecorder::new(Codec::Vp8);
    // Before its first keyframe the track waits too, but nothing stands
    // still yet (the caller asks for the first keyframe on its own terms).
    assert!(!r.awaiting_keyframe());
    let frames = stream(30, 30, 100);
    // Frames 0-9 whole, frame 10 lost, 11-29 after it.
    let mut all: Vec<Packet> = frames[..10].concat();
    feed(&mut r, &all);
    assert!(!r.awaiting_keyframe(), "{:?}", r.stats());
    all = frames[11..].concat();
    for (i, (s, t, m, p)) in all.iter().enumerate() {
        let _ = r.push(1_000 + i as i64, *s, *t, *m, p);
    }
    assert!(r.awaiting_keyframe(), "{:?}", r.stats());
    // A held track is not standing still: it waits for its placement.
    let mut h = TrackRecorder::new(Codec::Vp8);
    h.hold();
    feed(&mut h, &frames[..10].concat());
    assert!(!h.awaiting_keyframe());
    // Audio never waits for one.
    let mut a = TrackRecorder::new(Codec::Opus { channels: 2 });
    let _ = a.push(0, 1, 0, false, &[0xFC, 1]);
    assert!(!a.awaiting_keyframe());
}
