//! Bandwidth allocation: which layer of each video source a receiver gets,
//! so that together they fit its estimated bandwidth (JVB's
//! BandwidthAllocator, in the same order).
//!
//! 1. Sources in priority order: on stage first, then screen shares, then
//!    the caller's order (selected, then speech order).
//! 2. Each source's layers are pruned by the receiver's constraints (taller
//!    than it asked for, or not flowing: [`crate::layers::choose_layer`]'s
//!    rules) into a ladder, cheapest first.
//! 3. An on-stage screen share is served first, up to its preferred layer,
//!    and may go over the estimate by at most [`SCREEN_OVERSEND_BPS`] to
//!    get there (or rather than be suspended): unreadable slides are worse
//!    than a congested moment, and thumbnails give way first.
//! 4. Every other source gets the bottom of its ladder if it fits, in
//!    priority order; one that does not fit is suspended (the receiver is
//!    told why).
//! 5. On-stage sources climb as far as the estimate allows, then the rest
//!    climb one step at a time in priority order, round after round, until
//!    nothing more fits.
//!
//! A plain function of its inputs: no clock, no state. The caller decides
//! when to run it (the estimate moved by more than
//! [`ESTIMATE_CHANGE`], a constraint or a layer changed, or a periodic
//! tick) and keeps the allocation between runs.

use crate::layers::{LayerView, choose_layer};

/// How far past the estimate an on-stage screen share may be sent.
pub const SCREEN_OVERSEND_BPS: u64 = 500_000;

/// Relative change of the estimate that re-runs allocation (JVB: 15 %).
pub const ESTIMATE_CHANGE: f64 = 0.15;

/// One simulcast layer as allocation weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerCost {
    pub height: u32,
    pub active: bool,
    /// What forwarding it costs (measured, else a default by height).
    pub bitrate_bps: u64,
}

/// One video source a receiver could be sent.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub layers: &'a [LayerCost],
    /// The receiver's constraint (0: it does not want this source).
    pub max_height: u32,
    pub on_stage: bool,
    pub screen: bool,
}

/// What one source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Not wanted (constraint 0) or nothing to send.
    Off,
    Layer(usize),
    /// Wanted, but even its lowest layer does not fit the estimate.
    Suspended,
}

/// The outcome of one run, reusable across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Per candidate, in the caller's order.
    pub choices: Vec<Choice>,
    /// What the chosen layers cost together.
    pub allocated_bps: u64,
    /// What every source at its preferred layer would cost: the most this
    /// receiver could use, and so what probing should look for.
    pub ideal_bps: u64,
    /// The cost of the next step up allocation would take if the estimate
    /// allowed it (0: everything is at its preferred layer).
    pub next_step_bps: u64,
    /// How much of `allocated_bps` lies above the estimate (an on-stage
    /// screen share, at most [`SCREEN_OVERSEND_BPS`]).
    pub oversend_bps: u64,
}

/// Allocate `budget` bits per second (`None`: no estimate, every source
/// gets its preferred layer) among `candidates`, given in priority order.
pub fn allocate(candidates: &[Candidate<'_>], budget: Option<u64>, out: &mut Allocation) {
    let budget = budget.unwrap_or(u64::MAX);
    out.choices.clear();
    out.choices.resize(candidates.len(), Choice::Off);
    out.allocated_bps = 0;
    out.ideal_bps = 0;
    out.next_step_bps = 0;
    out.oversend_bps = 0;

    // Ladders: indices into each source's layers, cheapest first.
    let ladders: Vec<Vec<usize>> = candidates.iter().map(ladder).collect();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| (!candidates[i].on_stage, !candidates[i].screen));
    let cost = |i: usize, step: usize| candidates[i].layers[ladders[i][step]].bitrate_bps;

    // `level[i]`: step of ladder i chosen, if any.
    let mut level: Vec<Option<usize>> = vec![None; candidates.len()];
    let mut used: u64 = 0;
    let raise = |i: usize, limit: u64, used: &mut u64, level: &mut [Option<usize>]| -> bool {
        let Some(at) = level[i] else { return false };
        if at + 1 >= ladders[i].len() {
            return false;
        }
        let delta = cost(i, at + 1).saturating_sub(cost(i, at));
        if used.saturating_add(delta) > limit {
            return false;
        }
        *used += delta;
        level[i] = Some(at + 1);
        true
    };
    // An on-stage screen share goes first of all, as high as its preferred
    // layer within the estimate plus the oversend: slides stay readable at
    // the resolution they were shared at while the thumbnails (served from
    // what is left, if anything) degrade. JVB does the same with its
    // on-stage screen share and `max-oversend-bitrate`.
    let stage_screen = |i: usize| candidates[i].on_stage && candidates[i].screen;
    let with_oversend = budget.saturating_add(SCREEN_OVERSEND_BPS);
    for &i in order.iter().filter(|&&i| stage_screen(i)) {
        if ladders[i].is_empty() {
            continue;
        }
        if used.saturating_add(cost(i, 0)) <= with_oversend {
            level[i] = Some(0);
            used += cost(i, 0);
            while raise(i, with_oversend, &mut used, &mut level) {}
        }
    }
    for &i in &order {
        if ladders[i].is_empty() {
            continue;
        }
        out.ideal_bps += cost(i, ladders[i].len() - 1);
        if stage_screen(i) {
            if level[i].is_none() {
                out.choices[i] = Choice::Suspended;
            }
            continue;
        }
        let c = cost(i, 0);
        if used.saturating_add(c) <= budget {
            level[i] = Some(0);
            used += c;
        } else {
            out.choices[i] = Choice::Suspended;
        }
    }
    for &i in order.iter().filter(|&&i| candidates[i].on_stage) {
        while raise(i, budget, &mut used, &mut level) {}
    }
    loop {
        let mut changed = false;
        for &i in order.iter().filter(|&&i| !candidates[i].on_stage) {
            changed |= raise(i, budget, &mut used, &mut level);
        }
        if !changed {
            break;
        }
    }

    for &i in &order {
        if let Some(step) = level[i] {
            out.choices[i] = Choice::Layer(ladders[i][step]);
            if out.next_step_bps == 0 && step + 1 < ladders[i].len() {
                out.next_step_bps = cost(i, step + 1).saturating_sub(cost(i, step));
            }
        } else if out.choices[i] == Choice::Suspended && out.next_step_bps == 0 {
            out.next_step_bps = cost(i, 0);
        }
    }
    // Sources with nothing flowing yet aim at what their constraint will
    // pick once something does, but no higher than what is left of the
    // estimate would carry at the layers' nominal costs; they cost nothing
    // until then. (Aiming at the constraint alone sent a new receiver the
    // top layer's first keyframe whatever its link: on a slow one that
    // burst was loss str0m's estimator remembered for seconds.)
    let left = budget.saturating_sub(used);
    for (i, c) in candidates.iter().enumerate() {
        if ladders[i].is_empty() && c.max_height > 0 && !c.layers.is_empty() {
            let all: Vec<LayerView> = c
                .layers
                .iter()
                .map(|l| LayerView {
                    height: l.height,
                    active: true,
                })
                .collect();
            let Some(preferred) = choose_layer(&all, c.max_height) else {
                continue;
            };
            let tallest = c.layers[preferred].height;
            let fits = (0..c.layers.len())
                .filter(|&l| c.layers[l].height <= tallest && c.layers[l].bitrate_bps <= left)
                .max_by_key(|&l| c.layers[l].height);
            let lowest = (0..c.layers.len()).min_by_key(|&l| c.layers[l].height);
            if let Some(l) = fits.or(lowest) {
                out.choices[i] = Choice::Layer(l);
            }
        }
    }
    out.allocated_bps = used;
    out.oversend_bps = used.saturating_sub(budget);
}

/// The layers a receiver may be sent of one source, cheapest first: the
/// active ones no taller than its constraint, or if none is, the smallest
/// active one (a receiver that asked for less than the smallest still sees
/// something).
fn ladder(c: &Candidate<'_>) -> Vec<usize> {
    if c.max_height == 0 {
        return Vec::new();
    }
    let views: Vec<LayerView> = c
        .layers
        .iter()
        .map(|l| LayerView {
            height: l.height,
            active: l.active,
        })
        .collect();
    let Some(top) = choose_layer(&views, c.max_height) else {
        return Vec::new();
    };
    let top_height = c.layers[top].height;
    let mut steps: Vec<usize> = (0..c.layers.len())
        .filter(|&i| c.layers[i].active && c.layers[i].height <= top_height)
        .collect();
    steps.sort_by_key(|&i| (c.layers[i].height, c.layers[i].bitrate_bps));
    // A taller layer that costs less than a shorter one (an idle screen, a
    // mis-measured layer) would make a step that saves bandwidth; keep the
    // ladder's costs rising so every step up is an honest trade.
    let mut rising: Vec<usize> = Vec::with_capacity(steps.len());
    for i in steps {
        // The taller one is cheaper: it replaces the shorter ones.
        while rising
            .last()
            .is_some_and(|&p| c.layers[i].bitrate_bps < c.layers[p].bitrate_bps)
        {
            rising.pop();
        }
        rising.push(i);
    }
    rising
}

/// What a layer is assumed to cost before its rate was ever measured, by
/// height (JVB's and browsers' typical figures: 180p about 200 kbps, 360p
/// about 500 kbps, 720p about 2.5 Mbps).
pub fn default_bitrate_bps(height: u32) -> u64 {
    match height {
        0..=180 => 200_000,
        181..=270 => 350_000,
        271..=360 => 500_000,
        361..=540 => 1_200_000,
        541..=720 => 2_500_000,
        _ => 4_000_000,
    }
}

#[cfg(test)]
mod tests;
