//! Mixed conferences (issue 18), end to end on virtual time: participants
//! publish real Opus tones through a bridge whose mixing worker runs
//! inline; each receiver decodes the one audio stream it gets and a
//! frequency analysis says whose tones are in it.

use std::time::Duration;

use tern_peer::PeerConfig;
use tern_peer::synth::Talk;
use tern_peer::tone;
use tern_sim::{LinkConfig, Sim, SimConfig, seed_or, with_seed};

/// Far enough apart that no tone sits on another's harmonic or in its
/// analysis bin.
const TONES: [(&str, f32); 4] = [("a", 500.0), ("b", 700.0), ("c", 1100.0), ("d", 1300.0)];
const RATE: u32 = 16_000;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn link() -> LinkConfig {
    LinkConfig::latency(20)
}

fn mixed_sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        mix_rate: Some(RATE),
        ..SimConfig::new(seed)
    })
}

fn add_tone(sim: &mut Sim, name: &str, hz: f32) -> usize {
    sim.add_peer(
        name,
        |c: &mut PeerConfig| {
            c.video = vec![];
            c.audio = true;
            c.tone_hz = Some(hz);
            c.record_audio = true;
            // Only a's audio level says it speaks (from 1 s); the others'
            // say background noise. Every tone sounds all along: the level
            // is what talk detection reads, the mixer mixes what it hears.
            c.talk = Some(Talk {
                turns: if name == "a" {
                    vec![(secs(1.0), secs(60.0))]
                } else {
                    vec![]
                },
                quiet: 70,
            });
        },
        link(),
        link(),
    )
}

/// What `name` heard between `from` and `to` (since the start), decoded:
/// from one stream, or a panic naming how many it got.
fn heard(sim: &Sim, name: &str, from: Duration, to: Duration) -> Vec<f32> {
    let st = sim.state(name);
    assert_eq!(
        st.audio_payloads.len(),
        1,
        "{name} receives exactly one audio stream, got mids {:?}",
        st.audio_payloads.keys().collect::<Vec<_>>()
    );
    let packets = st
        .audio_payloads
        .values()
        .next()
        .map_or(&[][..], |v| &v[..]);
    tone::decode_window(packets, sim.at(from), sim.at(to))
}

fn tones_in(x: &[f32]) -> Vec<&'static str> {
    tone::tones_in(x, &TONES)
}

#[test]
fn each_participant_hears_every_other_tone_and_not_its_own() {
    with_seed(seed_or(1), |seed| {
        let mut sim = mixed_sim(seed);
        for (name, hz) in TONES {
            add_tone(&mut sim, name, hz);
        }
        sim.run_until(secs(4.0));
        for (name, _) in TONES {
            let x = heard(&sim, name, secs(2.0), secs(3.5));
            assert!(x.len() > 48_000, "{name} heard {} samples", x.len());
            let others: Vec<&str> = TONES.iter().map(|t| t.0).filter(|n| *n != name).collect();
            assert_eq!(tones_in(&x), others, "{name}'s mix");
        }
        // Talk detection still hears every participant in a mixed room:
        // a starts speaking (its audio level rises) at 1 s.
        let dominant: Vec<Option<String>> = sim
            .state("b")
            .dominant
            .iter()
            .map(|d| d.1.clone())
            .collect();
        assert_eq!(
            dominant,
            [Some("a".to_string())],
            "dominant speaker events flow"
        );
    });
}

#[test]
fn a_join_and_a_leave_change_the_mix_within_a_second() {
    with_seed(seed_or(1), |seed| {
        let mut sim = mixed_sim(seed);
        for (name, hz) in &TONES[..3] {
            add_tone(&mut sim, name, *hz);
        }
        sim.run_until(secs(3.0));
        assert_eq!(
            tones_in(&heard(&sim, "a", secs(2.0), secs(3.0))),
            ["b", "c"]
        );
        add_tone(&mut sim, "d", TONES[3].1);
        sim.run_until(secs(5.0));
        // d joined at 3 s: connected, publishing and mixed by 4 s.
        assert_eq!(
            tones_in(&heard(&sim, "a", secs(4.0), secs(5.0))),
            ["b", "c", "d"]
        );
        let b = sim.peer_index("b");
        sim.leave(b);
        sim.run_until(secs(7.0));
        assert_eq!(
            tones_in(&heard(&sim, "a", secs(6.0), secs(7.0))),
            ["c", "d"],
            "b left at 5 s"
        );
    });
}

#[test]
fn a_participant_whose_audio_does_not_decode_is_dropped_and_the_others_keep_their_mix() {
    with_seed(seed_or(1), |seed| {
        let mut sim = mixed_sim(seed);
        for (name, hz) in &TONES[..3] {
            add_tone(&mut sim, name, *hz);
        }
        sim.add_peer(
            "x",
            |c: &mut PeerConfig| {
                c.video = vec![];
                c.audio = true;
                c.corrupt_audio = true;
                c.record_audio = true;
            },
            link(),
            link(),
        );
        sim.run_until(secs(4.0));
        let host = sim.bridges[0].mixer.stats();
        let core = sim.bridges[0].core("sim").stats();
        assert_eq!(host.dropped_participants, 1, "{host:?}");
        assert_eq!(core.mix_inputs_dropped, 1);
        for (name, _) in &TONES[..3] {
            let x = heard(&sim, name, secs(2.0), secs(4.0));
            let others: Vec<&str> = TONES[..3]
                .iter()
                .map(|t| t.0)
                .filter(|n| n != name)
                .collect();
            assert_eq!(tones_in(&x), others, "{name}'s mix");
        }
        // x still hears everyone.
        assert_eq!(
            tones_in(&heard(&sim, "x", secs(2.0), secs(4.0))),
            ["a", "b", "c"]
        );
    });
}

/// Each publisher's colour (Y, U, V), far apart in every plane.
const COLOURS: [(&str, (u8, u8, u8)); 4] = [
    ("a", (200, 60, 70)),
    ("b", (80, 200, 40)),
    ("c", (120, 90, 220)),
    ("d", (230, 160, 110)),
];

/// A participant with a tone and a picture; `speaks`: its audio level says
/// it talks from 1 s on (else background noise all along).
fn add_pattern(sim: &mut Sim, name: &str, colour: (u8, u8, u8), speaks: bool) -> usize {
    let hz = TONES.iter().find(|t| t.0 == name).map_or(500.0, |t| t.1);
    sim.add_peer(
        name,
        |c: &mut PeerConfig| {
            c.audio = true;
            c.tone_hz = Some(hz);
            c.video = vec![tern_sim::LayerSpec::new("q", 320, 240, 300_000)];
            c.h264_pattern = Some(colour);
            c.record_video = true;
            c.record_audio = true;
            c.talk = Some(Talk {
                turns: if speaks {
                    vec![(secs(1.0), secs(60.0))]
                } else {
                    vec![]
                },
                quiet: 70,
            });
            c.audio_slots = 1;
            c.video_slots = 1;
        },
        link(),
        link(),
    )
}

/// The last composite `name` decoded, and the tiles it was told.
fn last_composite(
    sim: &Sim,
    name: &str,
) -> (
    tern_mixer::video::layout::Picture,
    Vec<tern_sfu::signal::CompositeTile>,
) {
    use tern_mixer::video::VideoCodec;
    use tern_mixer::video::VideoDecoder;
    use tern_mixer::video::h264::Depacketizer;
    let st = sim.state(name);
    assert_eq!(
        st.video_packets.len(),
        1,
        "{name} receives one video stream"
    );
    let packets = st.video_packets.values().next().expect("one stream");
    let mut depack = Depacketizer::default();
    let mut decoder = tern_mixer::video::openh264::OpenH264
        .decoder()
        .expect("decoder");
    let mut last = None;
    for p in packets {
        if let Some(au) = depack.push(p.seq as u16, p.ts, p.marker, &p.payload)
            && let Ok(Some(pic)) = decoder.decode(&au.annexb)
        {
            last = Some(pic);
        }
    }
    let (_, _, tiles) = st.composite.clone().expect("told the layout");
    (last.expect("a composite decoded"), tiles)
}

#[test]
fn every_receiver_gets_one_composite_with_each_publishers_picture_in_its_tile() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(SimConfig {
            mix_rate: Some(RATE),
            composite: Some(tern_mixer::video::VideoConfig::default()),
            ..SimConfig::new(seed)
        });
        for (name, colour) in &COLOURS[..3] {
            add_pattern(&mut sim, name, *colour, false);
        }
        sim.run_until(secs(3.0));
        let check = |sim: &Sim, present: &[&str]| {
            for name in present {
                let (pic, tiles) = last_composite(sim, name);
                assert_eq!((pic.width, pic.height), (640, 360));
                let names: Vec<&str> = tiles.iter().map(|t| t.participant.as_str()).collect();
                assert_eq!(names, present, "{name}'s layout");
                for t in &tiles {
                    let want = COLOURS
                        .iter()
                        .find(|c| c.0 == t.participant)
                        .map(|c| c.1)
                        .expect("colour");
                    let r = tern_mixer::video::layout::Rect {
                        x: t.x + 8,
                        y: t.y + 8,
                        w: t.width - 16,
                        h: t.height - 16,
                    };
                    let (y, u, v) = pic.mean(r);
                    let off = |a: f64, b: u8| (a - f64::from(b)).abs();
                    assert!(
                        off(y, want.0) < 10.0 && off(u, want.1) < 10.0 && off(v, want.2) < 10.0,
                        "{name} sees {}'s tile as ({y:.0}, {u:.0}, {v:.0}), want {want:?}",
                        t.participant
                    );
                }
                // The audio is still one mix, and the tones still right.
                let others: Vec<&str> = present.iter().copied().filter(|n| n != name).collect();
                assert_eq!(
                    tones_in(&heard(sim, name, sim.elapsed() - secs(1.0), sim.elapsed())),
                    others
                );
            }
        };
        check(&sim, &["a", "b", "c"]);
        // A join and a leave change the layout and the picture.
        add_pattern(&mut sim, "d", COLOURS[3].1, false);
        sim.run_until(secs(5.0));
        check(&sim, &["a", "b", "c", "d"]);
        let b = sim.peer_index("b");
        sim.leave(b);
        sim.run_until(secs(7.0));
        check(&sim, &["a", "c", "d"]);
        let v = sim.bridges[0].mixer.stats().video;
        assert!(v.frames_composed >= 90 && v.keyframes_sent >= 3, "{v:?}");
    });
}

#[test]
fn the_speaker_layout_puts_whoever_speaks_in_the_large_tile() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(SimConfig {
            mix_rate: Some(RATE),
            composite: Some(tern_mixer::video::VideoConfig::default()),
            mix_video: tern_mixer::video::CompositeSpec {
                layout: tern_mixer::video::Layout::Speaker,
                width: 480,
                height: 270,
            },
            ..SimConfig::new(seed)
        });
        // b, the second to join, speaks from 1 s: the dominant speaker,
        // it takes the top tile from a (the first, there before anyone
        // spoke).
        for (name, colour) in &COLOURS[..3] {
            add_pattern(&mut sim, name, *colour, *name == "b");
        }
        sim.run_until(secs(5.0));
        let (pic, tiles) = last_composite(&sim, "c");
        assert_eq!((pic.width, pic.height), (480, 270), "the token's size");
        let main = tiles.iter().find(|t| t.y == 0).expect("a main tile");
        assert_eq!(main.participant, "b", "{tiles:?}");
        assert!(main.width == 480 && main.height > 180, "{main:?}");
        let r = tern_mixer::video::layout::Rect {
            x: main.x + 8,
            y: main.y + 8,
            w: main.width - 16,
            h: main.height - 16,
        };
        let (y, u, v) = pic.mean(r);
        let want = COLOURS[1].1;
        assert!(
            (y - f64::from(want.0)).abs() < 10.0
                && (u - f64::from(want.1)).abs() < 10.0
                && (v - f64::from(want.2)).abs() < 10.0,
            "main tile ({y:.0}, {u:.0}, {v:.0}), want b's {want:?}"
        );
    });
}

#[test]
fn a_publisher_whose_video_does_not_decode_leaves_its_tile_black_and_the_others_shown() {
    with_seed(seed_or(1), |seed| {
        let mut sim = Sim::new(SimConfig {
            mix_rate: Some(RATE),
            composite: Some(tern_mixer::video::VideoConfig::default()),
            ..SimConfig::new(seed)
        });
        for (name, colour) in &COLOURS[..2] {
            add_pattern(&mut sim, name, *colour, false);
        }
        sim.add_peer(
            "c",
            |c: &mut PeerConfig| {
                c.audio = false;
                c.video = vec![tern_sim::LayerSpec::new("q", 320, 240, 300_000)];
                c.h264_pattern = Some(COLOURS[2].1);
                c.corrupt_video = true;
                c.video_slots = 1;
                c.audio_slots = 0;
            },
            link(),
            link(),
        );
        sim.run_until(secs(4.0));
        let (pic, tiles) = last_composite(&sim, "a");
        for t in &tiles {
            let r = tern_mixer::video::layout::Rect {
                x: t.x + 8,
                y: t.y + 8,
                w: t.width - 16,
                h: t.height - 16,
            };
            let (y, _, _) = pic.mean(r);
            let want = COLOURS
                .iter()
                .find(|c| c.0 == t.participant)
                .map(|c| c.1.0)
                .expect("colour");
            if t.participant == "c" {
                assert!((y - 16.0).abs() < 10.0, "c's tile is black, not {y:.0}");
            } else {
                assert!(
                    (y - f64::from(want)).abs() < 10.0,
                    "{}'s tile {y:.0}",
                    t.participant
                );
            }
        }
        let v = sim.bridges[0].mixer.stats().video;
        assert!(v.decode_errors > 0 || v.malformed_packets > 0, "{v:?}");
        // Asked for a keyframe at most once a second: 4 s, at most 5.
        assert!((1..=5).contains(&v.keyframe_requests), "{v:?}");
    });
}
