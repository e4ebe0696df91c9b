use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;

pub(crate) fn reg(id: &str, region: &str) -> Registration {
    Registration {
        id: id.into(),
        region: region.into(),
        version: "1.0".into(),
        api_version: 1,
        signal_url: format!("ws://{id}/signal"),
        relay_addr: String::new(),
        max_packet_rate: 50_000,
        conferences: BTreeMap::new(),
    }
}

pub(crate) fn report(pps: u64) -> Report {
    Report {
        rtp_packets_in_per_s: pps / 2,
        rtp_packets_out_per_s: pps / 2,
        healthy: true,
        ..Report::default()
    }
}

/// A focus with the given bridges (id, region, stress as pps of 50k).
fn focus(cfg: FocusConfig, bridges: &[(&str, &str, u64)]) -> (Focus, Instant) {
    let t0 = Instant::now();
    let mut f = Focus::new(cfg);
    for &(id, region, pps) in bridges {
        f.handle_register(t0, reg(id, region)).expect("register");
        f.handle_report(t0, id, report(pps)).expect("report");
    }
    (f, t0)
}

fn groups() -> FocusConfig {
    FocusConfig {
        local_region: "eu-west".into(),
        region_groups: vec![vec!["eu-west".into(), "eu-central".into()]],
        ..FocusConfig::default()
    }
}

/// Put `n` participants of `conf` on bridge `id` through the bridge's report.
fn host(f: &mut Focus, now: Instant, id: &str, pps: u64, conf: &str, n: usize) {
    let mut r = report(pps);
    r.conferences.insert(
        conf.into(),
        (0..n).map(|i| format!("{conf}-p{i}")).collect(),
    );
    f.handle_report(now, id, r).expect("report");
}

#[test]
fn rule_1_prefers_a_conference_bridge_in_the_participants_region() {
    let (mut f, t) = focus(groups(), &[("a", "eu-west", 10_000), ("b", "eu-west", 0)]);
    host(&mut f, t, "a", 10_000, "c", 3);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("a", 1));
}

#[test]
fn rule_2_uses_a_conference_bridge_in_the_region_group() {
    let (mut f, t) = focus(groups(), &[("a", "eu-central", 0), ("b", "us-east", 0)]);
    host(&mut f, t, "a", 0, "c", 2);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("a", 2));
}

#[test]
fn rule_3_takes_a_bridge_in_the_region_over_a_conference_bridge_elsewhere() {
    let (mut f, t) = focus(
        groups(),
        &[("far", "us-east", 0), ("near", "eu-west", 20_000)],
    );
    host(&mut f, t, "far", 0, "c", 2);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("near", 3));
}

#[test]
fn rule_4_takes_the_region_group_when_the_region_has_nothing() {
    let (mut f, t) = focus(
        groups(),
        &[("x", "us-east", 0), ("y", "eu-central", 30_000)],
    );
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("y", 4));
}

#[test]
fn rule_5_stays_with_the_conference_when_nothing_is_near() {
    let (mut f, t) = focus(groups(), &[("x", "us-east", 0), ("y", "ap-south", 0)]);
    host(&mut f, t, "y", 0, "c", 1);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("y", 5));
}

#[test]
fn rule_6_takes_the_least_loaded_bridge_anywhere() {
    let (mut f, t) = focus(
        groups(),
        &[("x", "us-east", 20_000), ("y", "ap-south", 5_000)],
    );
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("y", 6));
}

#[test]
fn rule_7_when_all_are_overloaded_prefers_a_conference_bridge_below_the_cap() {
    let (mut f, t) = focus(
        groups(),
        &[("a", "eu-west", 45_000), ("b", "eu-west", 41_000)],
    );
    host(&mut f, t, "a", 45_000, "c", 3);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("a", 7));
}

#[test]
fn rule_8_falls_back_to_the_least_loaded_bridge_overall() {
    let cfg = FocusConfig {
        participant_cap: 2,
        ..groups()
    };
    let (mut f, t) = focus(cfg, &[("a", "eu-west", 45_000), ("b", "eu-west", 42_000)]);
    host(&mut f, t, "a", 45_000, "c", 2);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("b", 8));
}

#[test]
fn participant_cap_makes_a_conference_spill_to_another_bridge() {
    let cfg = FocusConfig {
        participant_cap: 3,
        ..groups()
    };
    let (mut f, t) = focus(cfg, &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    host(&mut f, t, "a", 0, "c", 3);
    let p = f.allocate(t, "c", "new", Some("eu-west")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("b", 3));
}

#[test]
fn join_rate_limit_counts_as_overloaded() {
    let cfg = FocusConfig {
        max_joins_per_minute: Some(2),
        ..groups()
    };
    let (mut f, t) = focus(cfg, &[("a", "eu-west", 0), ("b", "eu-west", 10_000)]);
    for i in 0..2 {
        let p = f.allocate(t, "c", &format!("p{i}"), None).expect("placed");
        assert_eq!(p.bridge_id, "a");
    }
    let p = f.allocate(t, "c", "p2", None).expect("placed");
    assert_eq!(p.bridge_id, "b", "a took its two joins this minute");
}

#[test]
fn missing_region_means_the_focus_region() {
    let (mut f, t) = focus(groups(), &[("x", "us-east", 0), ("w", "eu-west", 30_000)]);
    let p = f.allocate(t, "c", "new", None).expect("placed");
    assert_eq!(p.bridge_id, "w");
}

#[test]
fn single_bridge_strategy_keeps_a_conference_on_one_bridge() {
    let cfg = FocusConfig {
        strategy: Strategy::SingleBridge,
        participant_cap: 2,
        ..groups()
    };
    let (mut f, t) = focus(cfg, &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    let first = f.allocate(t, "c", "p0", None).expect("placed").bridge_id;
    for i in 1..10 {
        let p = f
            .allocate(t, "c", &format!("p{i}"), Some("us-east"))
            .expect("placed");
        assert_eq!(
            p.bridge_id, first,
            "no cascading, whatever the cap or region"
        );
    }
}

#[test]
fn split_strategy_puts_each_participant_on_another_bridge() {
    let cfg = FocusConfig {
        strategy: Strategy::Split,
        ..groups()
    };
    let (mut f, t) = focus(
        cfg,
        &[
            ("a", "eu-west", 0),
            ("b", "eu-west", 0),
            ("c", "us-east", 0),
        ],
    );
    let got: BTreeSet<String> = (0..3)
        .map(|i| {
            f.allocate(t, "conf", &format!("p{i}"), None)
                .expect("placed")
                .bridge_id
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn a_burst_of_joins_spreads_over_idle_bridges() {
    // 100 joins in 10 s (20 conferences of 5) over 4 idle bridges whose
    // reports lag: corrected stress must keep any bridge under 40 %.
    let (mut f, t0) = focus(
        groups(),
        &[
            ("a", "eu-west", 0),
            ("b", "eu-west", 0),
            ("c", "eu-west", 0),
            ("d", "eu-west", 0),
        ],
    );
    let mut per_bridge: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..100u64 {
        let now = t0 + Duration::from_millis(i * 100);
        // Conferences start one after another: p0 of conference 0, ..., as
        // a wave of meetings starting on the hour would.
        let conf = format!("c{}", i / 5);
        let p = f
            .allocate(now, &conf, &format!("p{i}"), None)
            .expect("placed");
        *per_bridge.entry(p.bridge_id).or_default() += 1;
        // Bridges keep reporting zero load: the reports lag the joins.
        if i % 10 == 0 {
            for id in ["a", "b", "c", "d"] {
                f.handle_report(now, id, report(0)).expect("report");
            }
        }
    }
    let max = per_bridge.values().max().copied().unwrap_or(0);
    assert!(max <= 40, "a bridge got {max} of 100 joins: {per_bridge:?}");
    assert_eq!(per_bridge.len(), 4);
}

#[test]
fn never_mixes_bridge_versions_in_a_conference() {
    let (mut f, t) = focus(groups(), &[("old", "eu-west", 45_000)]);
    let mut newer = reg("new", "eu-west");
    newer.version = "2.0".into();
    f.handle_register(t, newer).expect("register");
    f.handle_report(t, "new", report(0)).expect("report");
    host(&mut f, t, "old", 45_000, "c", 1);
    let p = f.allocate(t, "c", "x", None).expect("placed");
    assert_eq!(
        p.bridge_id, "old",
        "overloaded but the only one of the conference's version"
    );
    let other = f.allocate(t, "fresh", "y", None).expect("placed");
    assert_eq!(other.bridge_id, "new");
}

#[test]
fn a_silent_bridge_fails_within_the_heartbeat_timeout_and_its_participants_move() {
    let (mut f, t0) = focus(groups(), &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    host(&mut f, t0, "a", 0, "c", 2);
    while f.poll_event().is_some() {}
    // b keeps reporting, a hangs.
    for k in 1..=5 {
        let now = t0 + Duration::from_millis(500 * k);
        f.handle_report(now, "b", report(0)).expect("report");
        f.handle_timeout(now);
    }
    let mut now = t0 + Duration::from_millis(2999);
    f.handle_timeout(now);
    assert!(
        f.bridge(now, "a").expect("a").online,
        "not failed before 3 s"
    );
    now = t0 + Duration::from_millis(3000);
    f.handle_timeout(now);
    let a = f.bridge(now, "a").expect("a");
    assert_eq!(a.state, BridgeState::Failed);
    assert_eq!(
        (a.endpoints, a.conferences),
        (0, 0),
        "a dead bridge hosts nothing"
    );
    assert!(
        a.last_failure
            .as_deref()
            .is_some_and(|m| m.contains("no report")),
        "{a:?}"
    );
    let events: Vec<FocusEvent> = std::iter::from_fn(|| f.poll_event()).collect();
    let moved: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            FocusEvent::Moved {
                participant, from, ..
            } if from == "a" => Some(participant.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec!["c-p0", "c-p1"]);
    // They come back through allocate and land on b.
    assert_eq!(
        f.allocate(now, "c", "c-p0", None)
            .expect("placed")
            .bridge_id,
        "b"
    );
}

#[test]
fn unhealthy_report_or_closed_stream_fails_a_bridge_at_once() {
    let (mut f, t) = focus(groups(), &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    let mut r = report(0);
    r.healthy = false;
    f.handle_report(t, "a", r).expect("report");
    assert_eq!(f.bridge(t, "a").expect("a").state, BridgeState::Failed);
    f.handle_disconnect(t, "b", "connection reset");
    let b = f.bridge(t, "b").expect("b");
    assert!(
        !b.online
            && b.last_failure
                .as_deref()
                .is_some_and(|m| m.contains("reset"))
    );
    assert!(matches!(
        f.allocate(t, "c", "p", None),
        Err(FocusError::NoBridge(_))
    ));
}

#[test]
fn draining_bridge_takes_no_new_conferences_and_is_emptied_one_conference_at_a_time() {
    let (mut f, t0) = focus(groups(), &[("a", "eu-west", 0), ("b", "eu-west", 20_000)]);
    let mut r = report(0);
    for c in ["c1", "c2"] {
        r.conferences
            .insert(c.into(), [format!("{c}-x")].into_iter().collect());
    }
    f.handle_report(t0, "a", r).expect("report");
    f.set_drain(t0, "a", true).expect("drain");
    let p = f.allocate(t0, "c3", "y", None).expect("placed");
    assert_eq!(
        p.bridge_id, "b",
        "draining a is avoided despite lower stress"
    );
    while f.poll_event().is_some() {}
    f.handle_timeout(t0);
    let first: Vec<FocusEvent> = std::iter::from_fn(|| f.poll_event()).collect();
    let moves = |ev: &[FocusEvent]| {
        ev.iter()
            .filter(|e| matches!(e, FocusEvent::CommandMove { bridge, .. } if bridge == "a"))
            .count()
    };
    assert_eq!(moves(&first), 1, "one conference per interval: {first:?}");
    f.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(
        moves(&std::iter::from_fn(|| f.poll_event()).collect::<Vec<_>>()),
        0
    );
    f.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(
        moves(&std::iter::from_fn(|| f.poll_event()).collect::<Vec<_>>()),
        1
    );
    // Only draining bridges left: they are used rather than refusing.
    f.handle_disconnect(t0, "b", "gone");
    assert_eq!(
        f.allocate(t0, "c4", "z", None).expect("placed").bridge_id,
        "a"
    );
}

#[test]
fn registration_errors_are_precise_and_leave_the_registry_untouched() {
    let (mut f, t) = focus(groups(), &[("a", "eu-west", 0)]);
    assert_eq!(
        f.handle_register(t, reg("a", "us-east")),
        Err(FocusError::DuplicateBridge("a".into()))
    );
    assert_eq!(f.bridge(t, "a").expect("a").reg.region, "eu-west");
    let mut v9 = reg("z", "eu-west");
    v9.api_version = 9;
    assert!(matches!(
        f.handle_register(t, v9),
        Err(FocusError::IncompatibleApi { version: 9, .. })
    ));
    let mut empty = reg("", "eu-west");
    empty.id.clear();
    assert!(matches!(
        f.handle_register(t, empty),
        Err(FocusError::Invalid {
            field: "bridge_id",
            ..
        })
    ));
    assert_eq!(f.bridges(t).len(), 1);
    assert!(matches!(
        f.handle_report(t, "nope", report(0)),
        Err(FocusError::UnknownBridge(_))
    ));
    assert!(matches!(
        f.end_conference("nope"),
        Err(FocusError::UnknownConference(_))
    ));
    assert!(matches!(
        f.allocate(t, "", "p", None),
        Err(FocusError::Invalid {
            field: "conference",
            ..
        })
    ));
}

#[test]
fn a_report_older_than_an_allocation_does_not_drop_it_until_the_grace_passes() {
    let (mut f, t0) = focus(groups(), &[("a", "eu-west", 0)]);
    f.allocate(t0, "c", "late", None).expect("placed");
    // The bridge reports before the participant connected.
    f.handle_report(t0 + Duration::from_millis(500), "a", report(0))
        .expect("report");
    assert!(f.conference("c").is_some_and(|c| c["a"].contains("late")));
    // Once a report shows it, it is confirmed; when it leaves, it goes.
    host(&mut f, t0 + Duration::from_secs(1), "a", 0, "c", 0);
    let mut r = report(0);
    r.conferences
        .insert("c".into(), ["late".to_string()].into_iter().collect());
    f.handle_report(t0 + Duration::from_secs(2), "a", r)
        .expect("report");
    f.handle_report(t0 + Duration::from_secs(3), "a", report(0))
        .expect("report");
    assert!(f.conference("c").is_none(), "left after it was confirmed");
    // A participant that never connects is dropped after the grace.
    f.allocate(t0 + Duration::from_secs(4), "d", "ghost", None)
        .expect("placed");
    f.handle_report(t0 + Duration::from_secs(15), "a", report(0))
        .expect("report");
    assert!(f.conference("d").is_none());
}

#[test]
fn a_restarted_focus_rebuilds_conferences_from_registrations() {
    let t = Instant::now();
    let mut f = Focus::new(groups());
    let mut r = reg("a", "eu-west");
    r.conferences.insert(
        "c".into(),
        ["p1".to_string(), "p2".to_string()].into_iter().collect(),
    );
    f.handle_register(t, r).expect("register");
    let conf = f.conference("c").expect("rebuilt");
    assert_eq!(conf.get("a").map(|p| p.len()), Some(2));
    // A failed bridge may register again and is back in service.
    f.handle_disconnect(t, "a", "restart");
    assert!(f.conference("c").is_none());
    f.handle_register(t, reg("a", "eu-west"))
        .expect("re-register");
    let a = f.bridge(t, "a").expect("a");
    assert!(
        a.online && a.last_failure.is_some(),
        "keeps its last failure for operators"
    );
}

fn relay_commands(f: &mut Focus) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    while let Some(e) = f.poll_event() {
        if let FocusEvent::CommandRelayPeers {
            bridge,
            conference,
            peers,
        } = e
        {
            out.push((bridge, conference, peers.into_iter().map(|p| p.0).collect()));
        }
    }
    out.sort();
    out
}

#[test]
fn bridges_sharing_a_conference_are_told_their_relay_peers_and_told_again_on_failure() {
    let t = Instant::now();
    let mut f = Focus::new(FocusConfig {
        strategy: Strategy::Split,
        ..FocusConfig::default()
    });
    for id in ["a", "b", "c"] {
        let mut r = reg(id, "eu-west");
        r.relay_addr = format!("{id}:4433");
        f.handle_register(t, r).expect("register");
        f.handle_report(t, id, report(0)).expect("report");
    }
    relay_commands(&mut f);
    f.allocate(t, "conf", "p1", None).expect("placed");
    assert!(relay_commands(&mut f).is_empty(), "one bridge: no mesh");
    f.allocate(t, "conf", "p2", None).expect("placed");
    f.allocate(t, "conf", "p3", None).expect("placed");
    let cmds = relay_commands(&mut f);
    let last: BTreeMap<String, Vec<String>> = cmds.into_iter().map(|(b, _, p)| (b, p)).collect();
    assert_eq!(last.len(), 3, "{last:?}");
    assert_eq!(last["a"], vec!["b".to_string(), "c".to_string()]);
    assert_eq!(last["c"], vec!["a".to_string(), "b".to_string()]);
    // Nothing changed: nothing sent again.
    f.handle_timeout(t + Duration::from_millis(100));
    assert!(relay_commands(&mut f).is_empty());
    // c dies: a and b learn they only have each other.
    f.handle_disconnect(t, "c", "gone");
    f.handle_timeout(t + Duration::from_millis(200));
    let cmds = relay_commands(&mut f);
    assert_eq!(
        cmds,
        vec![
            ("a".to_string(), "conf".to_string(), vec!["b".to_string()]),
            ("b".to_string(), "conf".to_string(), vec!["a".to_string()]),
        ]
    );
    // c comes back and hosts nothing: nobody is told about it.
    let mut r = reg("c", "eu-west");
    r.relay_addr = "c:4433".into();
    f.handle_register(t, r).expect("re-register");
    f.handle_timeout(t + Duration::from_millis(300));
    assert!(relay_commands(&mut f).is_empty());
}

#[test]
fn a_conference_keeps_the_first_video_codec_named_and_refuses_another() {
    let (mut f, t) = focus(groups(), &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    // No codec named: none recorded, none in the token.
    let p = f.allocate(t, "open", "x", None).expect("placed");
    assert_eq!(p.video_codec, None);

    let p = f
        .allocate_with_codec(t, "slides", "alice", None, Some("h264"))
        .expect("placed");
    assert_eq!(p.video_codec.as_deref(), Some("h264"));
    let placed = |f: &Focus| -> Vec<String> {
        f.conference("slides")
            .map(|c| c.into_values().flatten().collect())
            .unwrap_or_default()
    };
    assert_eq!(placed(&f), vec!["alice".to_string()]);
    let e = f
        .allocate_with_codec(t, "slides", "bob", None, Some("vp8"))
        .expect_err("another codec");
    assert_eq!(
        e.to_string(),
        "conference slides uses video codec h264; this allocation asks for vp8"
    );
    assert_eq!(
        placed(&f),
        vec!["alice".to_string()],
        "nothing placed for the refused allocation"
    );
    // Naming none, or the same one, gets the conference's.
    let p = f
        .allocate_with_codec(t, "slides", "carol", None, Some(""))
        .expect("placed");
    assert_eq!(p.video_codec.as_deref(), Some("h264"));
    let p = f
        .allocate_with_codec(t, "slides", "dave", None, Some("h264"))
        .expect("placed");
    assert_eq!(p.video_codec.as_deref(), Some("h264"));
}

#[test]
fn a_mixed_conference_stays_on_one_bridge_and_refuses_another_mode() {
    // The split strategy spreads a forwarding conference (see above); a
    // mixed one is mixed in one place.
    let cfg = FocusConfig {
        strategy: Strategy::Split,
        ..groups()
    };
    let (mut f, t) = focus(cfg, &[("a", "eu-west", 0), ("b", "eu-west", 0)]);
    let mixed = ConferenceMode::mixed(16_000);
    let first = f
        .allocate_with_options(t, "mcu", "p0", None, None, Some(mixed))
        .expect("placed");
    assert_eq!(first.mode, mixed);
    for i in 1..4 {
        // Naming no mode gets the conference's.
        let p = f
            .allocate_with_options(t, "mcu", &format!("p{i}"), None, None, None)
            .expect("placed");
        assert_eq!(
            (p.bridge_id.as_str(), p.mode),
            (first.bridge_id.as_str(), mixed)
        );
    }
    for (asked, says) in [
        (ConferenceMode::Forwarding, "asks for forwarding"),
        (
            ConferenceMode::Mixed {
                sample_rate: 16_000,
                video: MixedVideo {
                    layout: MixLayout::Speaker,
                    width: 0,
                    height: 0,
                },
            },
            "asks for mixed at 16000 Hz, speaker layout",
        ),
        (ConferenceMode::mixed(48_000), "asks for mixed at 48000 Hz"),
    ] {
        let e = f
            .allocate_with_options(t, "mcu", "eve", None, None, Some(asked))
            .expect_err("another mode");
        assert!(matches!(e, FocusError::ModeMismatch { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "conference mcu is mixed at 16000 Hz; this allocation {says}"
            )),
            "{e}"
        );
    }
    let e = f
        .allocate_with_options(
            t,
            "other",
            "eve",
            None,
            None,
            Some(ConferenceMode::mixed(44_100)),
        )
        .expect_err("a rate no mixer takes");
    assert!(
        matches!(
            e,
            FocusError::Invalid {
                field: "audio_sample_rate",
                ..
            }
        ),
        "{e}"
    );
    // A composite of an odd or too large size is refused, naming it.
    for (w, h) in [(641, 360), (4096, 2160), (640, 0)] {
        let odd = ConferenceMode::Mixed {
            sample_rate: 16_000,
            video: MixedVideo {
                layout: MixLayout::Grid,
                width: w,
                height: h,
            },
        };
        let e = f
            .allocate_with_options(t, "odd", "eve", None, None, Some(odd))
            .expect_err("a size no composite takes");
        assert!(
            matches!(
                e,
                FocusError::Invalid {
                    field: "video_width",
                    ..
                }
            ) && e.to_string().contains(&format!("{w}x{h}")),
            "{e}"
        );
    }
    // A forwarding conference is what it was: no mode named, forwarding.
    let p = f.allocate(t, "sfu", "x", None).expect("placed");
    assert_eq!(p.mode, ConferenceMode::Forwarding);
}

#[test]
fn mixing_load_and_mixed_joins_count_towards_a_bridges_stress() {
    let (mut f, t) = focus(groups(), &[("a", "eu-west", 0), ("b", "eu-west", 10_000)]);
    // a forwards nothing but mixes with 30 % of its CPU: b (0.2) is the
    // less stressed one.
    let mut r = report(0);
    r.mixing_load = 0.3;
    f.handle_report(t, "a", r).expect("report");
    let stress = |f: &Focus, id: &str| {
        f.bridges(t)
            .into_iter()
            .find(|b| b.reg.id == id)
            .map(|b| (b.stress, b.corrected_stress))
            .expect("bridge")
    };
    assert!((stress(&f, "a").0 - 0.3).abs() < 1e-9);
    assert_eq!(
        f.allocate(t, "c1", "x", None).expect("placed").bridge_id,
        "b"
    );
    // A participant of a mixed conference adds more corrected stress than
    // a forwarded one until the reports show what it costs.
    let before = stress(&f, "b").1;
    f.allocate(t, "c1", "y", None).expect("placed");
    let forwarded = stress(&f, "b").1 - before;
    let mixed = ConferenceMode::mixed(16_000);
    let p = f
        .allocate_with_options(t, "mcu", "z", None, None, Some(mixed))
        .expect("placed");
    let on = p.bridge_id.clone();
    let before = stress(&f, &on).1;
    f.allocate(t, "mcu", "w", None).expect("placed");
    let mixed_cost = stress(&f, &on).1 - before;
    assert!(
        (forwarded - 0.01).abs() < 1e-9 && (mixed_cost - 0.02).abs() < 1e-9,
        "forwarded {forwarded}, mixed {mixed_cost}"
    );
}

#[test]
fn summary_counts_bridges_by_region_and_state_participants_and_relay_links() {
    let t = Instant::now();
    let mut f = Focus::new(FocusConfig {
        strategy: Strategy::Split,
        ..FocusConfig::default()
    });
    for (id, region) in [("a", "eu"), ("b", "eu"), ("c", "us")] {
        let mut r = reg(id, region);
        r.relay_addr = format!("{id}:4433");
        f.handle_register(t, r).expect("register");
        f.handle_report(t, id, report(10_000)).expect("report");
    }
    for p in ["p1", "p2", "p3"] {
        f.allocate(t, "conf", p, None).expect("placed");
    }
    f.allocate(t, "solo", "q1", None).expect("placed");
    let s = f.summary();
    assert_eq!((s.conferences, s.participants), (2, 4));
    // Split puts conf's three on three bridges: three pairs relay.
    assert_eq!(s.relay_links, 3);
    assert!(
        s.bridges.iter().all(|b| (b.stress - 0.2).abs() < 1e-9),
        "{s:?}"
    );

    f.handle_disconnect(t, "c", "gone");
    f.handle_timeout(t + Duration::from_millis(100));
    assert_eq!(f.summary().relay_links, 1, "only a and b still share conf");
    f.set_drain(t, "b", true).expect("drain");
    let s = f.summary();
    let by = bridges_by_region_and_state(&s);
    let n = |region: &str, st: BridgeState| by[&(region.to_string(), st)];
    assert_eq!(n("eu", BridgeState::Operational), 1);
    assert_eq!(n("eu", BridgeState::Draining), 1);
    assert_eq!(n("us", BridgeState::Failed), 1);
    // Every state of a region is present, so an emptied state reads 0.
    assert_eq!(n("us", BridgeState::Operational), 0);
    assert_eq!(by.len(), 8);
}
