//! The bookkeeping that keeps allocation independent of the fleet's size
//! (the region index, relay reconciliation of changed conferences only)
//! checked against the plain walk over everything, under seeded random
//! sequences of everything that can happen to a focus.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::placement;
use crate::tests::{reg, report};
use crate::{Focus, FocusConfig, Strategy};

/// xorshift64*: a fixed sequence per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

const REGIONS: [&str; 3] = ["eu", "us", "ap"];

fn bridge_ids() -> Vec<String> {
    (0..9).map(|i| format!("b{i}")).collect()
}

/// One random thing happening to the focus.
fn step(f: &mut Focus, rng: &mut Rng, now: Instant) {
    let ids = bridge_ids();
    let id = &ids[rng.below(ids.len())];
    let conf = format!("c{}", rng.below(5));
    match rng.below(9) {
        0..=2 => {
            let region = REGIONS[rng.below(3)];
            let _ = f.allocate(now, &conf, &format!("p{}", rng.below(12)), Some(region));
        }
        3 => {
            // A report with some of what the focus placed there, maybe less.
            let mut r = report(rng.below(60_000) as u64);
            for (name, c) in &f.conferences {
                if let Some(ps) = c.bridges.get(id.as_str())
                    && rng.below(3) > 0
                {
                    let kept: BTreeSet<String> =
                        ps.iter().filter(|_| rng.below(4) > 0).cloned().collect();
                    r.conferences.insert(name.clone(), kept);
                }
            }
            let _ = f.handle_report(now, id, r);
        }
        4 => f.handle_disconnect(now, id, "test"),
        5 => {
            // Back, possibly in another region and with another relay address.
            let mut r = reg(id, REGIONS[rng.below(3)]);
            r.relay_addr = if rng.below(4) == 0 {
                String::new()
            } else {
                format!("{id}:{}", 4433 + rng.below(2))
            };
            let _ = f.handle_register(now, r);
        }
        6 => {
            let _ = f.set_drain(now, id, rng.below(2) == 0);
        }
        7 => {
            if rng.below(3) == 0 {
                let _ = f.end_conference(&conf);
            } else {
                f.handle_left(&conf, &format!("p{}", rng.below(12)));
            }
        }
        _ => f.handle_timeout(now),
    }
}

/// Nine bridges in three regions. `window` is the recent-join window:
/// shorter than the time between a bridge's reports here (about 4 s), so
/// joins leave it between reports and only the index's expiries re-key.
fn cluster(strategy: Strategy, now: Instant, window: Duration) -> Focus {
    let mut f = Focus::new(FocusConfig {
        strategy,
        recent_join_window: window,
        region_groups: vec![vec!["eu".into(), "us".into()]],
        participant_cap: 4,
        max_joins_per_minute: Some(30),
        ..FocusConfig::default()
    });
    for (i, id) in bridge_ids().iter().enumerate() {
        let mut r = reg(id, REGIONS[i % 3]);
        r.relay_addr = format!("{id}:4433");
        f.handle_register(now, r).expect("register");
    }
    f
}

#[test]
fn relay_peers_told_always_match_a_recount_of_every_conference() {
    for (seed, strategy) in [
        (1, Strategy::Split),
        (2, Strategy::RegionBased),
        (3, Strategy::SingleBridge),
        (4, Strategy::Split),
    ] {
        let t0 = Instant::now();
        let mut f = cluster(strategy, t0, Duration::from_secs(20));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut told_something = 0;
        for i in 0..3_000u64 {
            let now = t0 + Duration::from_millis(50 * i);
            step(&mut f, &mut rng, now);
            f.reconcile_relay();
            assert_eq!(
                f.relay_told,
                f.relay_want_all(),
                "seed {seed}, step {i}: the incremental relay view drifted"
            );
            told_something += usize::from(!f.relay_told.is_empty());
            while f.poll_event().is_some() {}
        }
        assert!(
            told_something > 100,
            "seed {seed}: the sequence must exercise meshed conferences ({told_something})"
        );
    }
}

#[test]
fn placement_through_the_region_index_matches_the_walk_over_every_bridge() {
    let mut rules = [0usize; 9];
    for seed in 1..=4u64 {
        let t0 = Instant::now();
        let mut f = cluster(Strategy::RegionBased, t0, Duration::from_secs(1));
        let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ seed);
        for i in 0..3_000u64 {
            let now = t0 + Duration::from_millis(50 * i);
            step(&mut f, &mut rng, now);
            let conf = format!("c{}", rng.below(6));
            let participant = format!("p{}", rng.below(12));
            let region = ["eu", "us", "ap", "nowhere"][rng.below(4)];
            let c = f.conferences.get(&conf);
            let indexed = placement::select(
                now,
                &f.cfg,
                &f.bridges,
                &mut f.index,
                c,
                &participant,
                region,
            );
            let walked = placement::walk(now, &f.cfg, &f.bridges, c, &participant, region);
            assert_eq!(
                indexed, walked,
                "seed {seed}, step {i}: {participant} of {conf} from {region}"
            );
            if let Ok((_, rule)) = indexed {
                rules[usize::from(rule)] += 1;
            }
            while f.poll_event().is_some() {}
        }
    }
    // Every rule of the order must have been reached through the index
    // for the comparison to cover it.
    assert!(
        rules[1..].iter().all(|&n| n > 0),
        "placements by rule 1-8: {:?}",
        &rules[1..]
    );
}

#[test]
fn a_bridge_that_comes_back_in_another_region_is_found_there() {
    let t = Instant::now();
    let mut f = Focus::new(FocusConfig::default());
    f.handle_register(t, reg("a", "eu")).expect("register");
    f.handle_register(t, reg("b", "us")).expect("register");
    f.handle_disconnect(t, "a", "moved");
    f.handle_register(t, reg("a", "ap"))
        .expect("back elsewhere");
    let p = f.allocate(t, "c", "x", Some("ap")).expect("placed");
    assert_eq!((p.bridge_id.as_str(), p.rule), ("a", 3));
    assert_eq!(f.index.region("eu").count(), 0, "no longer indexed in eu");
}

#[test]
fn joins_in_the_window_are_counted_however_many_there_are() {
    let t = Instant::now();
    let cfg = FocusConfig {
        max_joins_per_minute: Some(1_000),
        ..FocusConfig::default()
    };
    let mut f = Focus::new(cfg);
    f.handle_register(t, reg("a", "eu")).expect("register");
    for i in 0..900u64 {
        f.allocate(
            t + Duration::from_millis(100 * i),
            "c",
            &format!("p{i}"),
            None,
        )
        .expect("placed");
    }
    let b = &f.bridges["a"];
    // At 90 s: the joins less than 60 s old, those after 30 s (the one at
    // exactly 30 s is a minute old and no longer counts).
    let at = t + Duration::from_secs(90);
    assert_eq!(b.joins_last_minute(at), 599);
    let window = f.cfg.recent_join_window;
    let expected = (0..900u64)
        .filter(|i| at.saturating_duration_since(t + Duration::from_millis(100 * i)) < window)
        .count();
    let corrected = b.corrected_stress(at, &f.cfg) - b.stress;
    assert!((corrected - expected as f64 * f.cfg.participant_stress).abs() < 1e-9);
}
