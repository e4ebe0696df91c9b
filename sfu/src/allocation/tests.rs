use proptest::prelude::*;

use super::*;

fn ladder3() -> Vec<LayerCost> {
    vec![
        LayerCost {
            height: 180,
            active: true,
            bitrate_bps: 150_000,
        },
        LayerCost {
            height: 360,
            active: true,
            bitrate_bps: 500_000,
        },
        LayerCost {
            height: 720,
            active: true,
            bitrate_bps: 1_500_000,
        },
    ]
}

fn thumb(layers: &[LayerCost]) -> Candidate<'_> {
    Candidate {
        layers,
        max_height: 720,
        on_stage: false,
        screen: false,
    }
}

fn run(c: &[Candidate<'_>], budget: Option<u64>) -> Allocation {
    let mut a = Allocation::default();
    allocate(c, budget, &mut a);
    a
}

#[test]
fn without_an_estimate_every_source_gets_its_preferred_layer() {
    let l = ladder3();
    let mut small = thumb(&l);
    small.max_height = 360;
    let a = run(&[thumb(&l), small], None);
    assert_eq!(a.choices, vec![Choice::Layer(2), Choice::Layer(1)]);
    assert_eq!(a.allocated_bps, 2_000_000);
    assert_eq!(a.ideal_bps, 2_000_000);
    assert_eq!(a.next_step_bps, 0);
}

#[test]
fn fits_layers_to_a_low_estimate_and_suspends_what_does_not_fit() {
    let l = ladder3();
    let c = [thumb(&l), thumb(&l), thumb(&l)];
    let a = run(&c, Some(400_000));
    assert_eq!(
        a.choices,
        vec![Choice::Layer(0), Choice::Layer(0), Choice::Suspended]
    );
    assert_eq!(a.allocated_bps, 300_000);
    assert_eq!(a.next_step_bps, 350_000, "the first source's next step");
}

#[test]
fn on_stage_climbs_first_then_thumbnails_round_by_round() {
    let l = ladder3();
    let mut stage = thumb(&l);
    stage.on_stage = true;
    // Thumbnails first in the caller's order: on stage still goes first.
    let c = [thumb(&l), thumb(&l), stage];
    let a = run(&c, Some(2_300_000));
    assert_eq!(
        a.choices,
        vec![Choice::Layer(1), Choice::Layer(0), Choice::Layer(2)]
    );
    assert_eq!(a.allocated_bps, 2_150_000);
}

#[test]
fn on_stage_screen_share_keeps_its_layer_over_the_estimate_within_the_oversend() {
    let screen_layer = [LayerCost {
        height: 1080,
        active: true,
        bitrate_bps: 800_000,
    }];
    let l = ladder3();
    let screen = Candidate {
        layers: &screen_layer,
        max_height: 1080,
        on_stage: true,
        screen: true,
    };
    let a = run(&[thumb(&l), screen.clone()], Some(400_000));
    assert_eq!(a.choices, vec![Choice::Suspended, Choice::Layer(0)]);
    assert_eq!(a.oversend_bps, 400_000);
    // Beyond the oversend it is suspended like anything else.
    let a = run(&[screen], Some(200_000));
    assert_eq!(a.choices, vec![Choice::Suspended]);
    assert_eq!(a.allocated_bps, 0);
}

#[test]
fn on_stage_screen_share_keeps_its_resolution_and_thumbnails_give_way() {
    let l = ladder3();
    let mut screen = thumb(&l);
    screen.on_stage = true;
    screen.screen = true;
    let c = [thumb(&l), thumb(&l), screen];
    // Plenty: 720p screen, the thumbnails share the rest.
    let a = run(&c, Some(2_500_000));
    assert_eq!(a.choices[2], Choice::Layer(2));
    assert_eq!(a.oversend_bps, 0);
    // 1.2 Mbps: the screen's 720p needs 300 kbps of oversend, and gets it;
    // nothing is left for thumbnails.
    let a = run(&c, Some(1_200_000));
    assert_eq!(
        a.choices,
        vec![Choice::Suspended, Choice::Suspended, Choice::Layer(2)]
    );
    assert_eq!(a.oversend_bps, 300_000);
    // 800 kbps: 720p would need 700 kbps over, more than the oversend: the
    // screen takes 360p and the thumbnails what remains, within the estimate.
    let a = run(&c, Some(800_000));
    assert_eq!(
        a.choices,
        vec![Choice::Layer(0), Choice::Layer(0), Choice::Layer(1)]
    );
    assert_eq!(a.oversend_bps, 0);
    // A camera on stage gets no oversend: it climbs within the estimate
    // after every thumbnail has its bottom layer (360p; 720p does not fit),
    // and the first thumbnail takes the next step that does.
    let mut camera = thumb(&l);
    camera.on_stage = true;
    let a = run(&[thumb(&l), thumb(&l), camera], Some(1_200_000));
    assert_eq!(
        a.choices,
        vec![Choice::Layer(1), Choice::Layer(0), Choice::Layer(1)]
    );
    assert_eq!(a.oversend_bps, 0);
}

#[test]
fn screen_shares_go_before_thumbnails() {
    let screen_layer = [LayerCost {
        height: 1080,
        active: true,
        bitrate_bps: 600_000,
    }];
    let l = ladder3();
    let screen = Candidate {
        layers: &screen_layer,
        max_height: 1080,
        on_stage: false,
        screen: true,
    };
    // Listed second, the screen share is served first.
    let a = run(&[thumb(&l), screen], Some(700_000));
    assert_eq!(a.choices, vec![Choice::Suspended, Choice::Layer(0)]);
    let a = run(&[thumb(&l), thumb(&l)], Some(700_000));
    assert_eq!(a.choices, vec![Choice::Layer(1), Choice::Layer(0)]);
}

#[test]
fn constraints_and_inactive_layers_prune_the_ladder() {
    let mut l = ladder3();
    l[1].active = false;
    let mut c = thumb(&l);
    c.max_height = 360;
    let a = run(&[c], None);
    assert_eq!(a.choices, vec![Choice::Layer(0)]);
    let mut off = thumb(&l);
    off.max_height = 0;
    assert_eq!(run(&[off], Some(10)).choices, vec![Choice::Off]);
}

#[test]
fn a_source_with_nothing_flowing_aims_at_its_constraint_within_the_estimate_for_free() {
    let mut l = ladder3();
    for x in &mut l {
        x.active = false;
    }
    let mut c = thumb(&l);
    c.max_height = 360;
    // No estimate, or one that carries it: the constraint's layer.
    for budget in [None, Some(600_000)] {
        let a = run(&[c.clone()], budget);
        assert_eq!(a.choices, vec![Choice::Layer(1)], "{budget:?}");
        assert_eq!(a.allocated_bps, 0);
    }
    // Less: the tallest layer that fits, or at least the lowest, so the
    // first keyframe sent is not one the link cannot carry.
    for (budget, layer) in [(200_000, 0), (1, 0)] {
        let a = run(&[c.clone()], Some(budget));
        assert_eq!(a.choices, vec![Choice::Layer(layer)], "{budget}");
        assert_eq!(a.allocated_bps, 0);
    }
}

#[test]
fn a_taller_layer_cheaper_than_a_shorter_one_replaces_it_in_the_ladder() {
    let mut l = ladder3();
    l[1].bitrate_bps = 100_000;
    let a = run(&[thumb(&l)], Some(120_000));
    assert_eq!(a.choices, vec![Choice::Layer(1)]);
}

fn layer_strategy() -> impl Strategy<Value = LayerCost> {
    (1u32..1200, any::<bool>(), 1u64..4_000_000).prop_map(|(height, active, bitrate_bps)| {
        LayerCost {
            height,
            active,
            bitrate_bps,
        }
    })
}

fn source_strategy() -> impl Strategy<Value = (Vec<LayerCost>, u32, bool, bool)> {
    (
        prop::collection::vec(layer_strategy(), 0..4),
        prop_oneof![Just(0u32), 1u32..1500],
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    /// Allocation never exceeds the estimate, except an on-stage screen
    /// share's bounded oversend; every chosen layer is active and within
    /// the constraint (or the smallest active when none is).
    #[test]
    fn never_exceeds_the_estimate_outside_the_screen_oversend(
        sources in prop::collection::vec(source_strategy(), 0..12),
        budget in prop::option::of(0u64..10_000_000),
    ) {
        let c: Vec<Candidate<'_>> = sources
            .iter()
            .map(|(l, h, stage, screen)| Candidate {
                layers: l,
                max_height: *h,
                on_stage: *stage,
                screen: *screen,
            })
            .collect();
        let a = run(&c, budget);
        let mut total = 0;
        for (i, choice) in a.choices.iter().enumerate() {
            if let Choice::Layer(l) = *choice {
                let layer = c[i].layers[l];
                prop_assert!(c[i].max_height > 0);
                if c[i].layers.iter().any(|x| x.active) {
                    prop_assert!(layer.active);
                    total += layer.bitrate_bps;
                }
            }
        }
        prop_assert_eq!(total, a.allocated_bps);
        if let Some(b) = budget {
            if a.allocated_bps > b {
                prop_assert!(a.allocated_bps - b <= SCREEN_OVERSEND_BPS);
                let screen_shown = c.iter().zip(&a.choices).any(|(c, ch)| {
                    c.on_stage && c.screen && matches!(ch, Choice::Layer(_))
                });
                prop_assert!(screen_shown);
            }
            prop_assert_eq!(a.oversend_bps, a.allocated_bps.saturating_sub(b));
        } else {
            prop_assert_eq!(a.allocated_bps, a.ideal_bps);
        }
    }

    /// Of two sources with the same layers and the same standing, the one
    /// earlier in priority order never gets a lower layer, and is never
    /// suspended while the later one is shown.
    #[test]
    fn a_higher_priority_source_never_gets_less_than_a_lower_one(
        layers in prop::collection::vec(layer_strategy(), 1..4),
        n in 2usize..8,
        stage in prop::collection::vec(any::<bool>(), 8),
        budget in 0u64..6_000_000,
    ) {
        let c: Vec<Candidate<'_>> = (0..n)
            .map(|i| Candidate {
                layers: &layers,
                max_height: 1200,
                on_stage: stage[i],
                screen: false,
            })
            .collect();
        let a = run(&c, Some(budget));
        let height = |ch: Choice| match ch {
            Choice::Layer(l) => Some(layers[l].height),
            _ => None,
        };
        for i in 0..n {
            for j in i + 1..n {
                if c[i].on_stage != c[j].on_stage {
                    continue;
                }
                prop_assert!(
                    height(a.choices[i]) >= height(a.choices[j]),
                    "{:?} before {:?}", a.choices[i], a.choices[j]
                );
            }
        }
    }
}
