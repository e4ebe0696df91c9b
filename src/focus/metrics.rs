//! The focus's Prometheus metrics (listed with the bridge's in
//! `docs/metrics.md`). Gauges are published from the core's [`Summary`]
//! once a second, not per event: with a thousand bridges reporting every
//! second, a per-event publication would cost more than the placement.
//! No label names a conference or participant; `bridge` and `region` are
//! bounded by the fleet.

use std::collections::BTreeSet;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use tern_focus::{FocusError, Summary, bridges_by_region_and_state};

pub const ALLOCATION_DURATION: &str = "tern_focus_allocation_duration_seconds";

/// Bucket bounds of [`ALLOCATION_DURATION`]: a join storm's p99 is tens of
/// milliseconds today (BENCHMARKS.md), an idle focus answers in well
/// under one.
pub const ALLOCATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why an allocation failed, as its metric label.
pub fn failure_reason(e: &FocusError) -> &'static str {
    match e {
        FocusError::NoBridge(_) => "no_bridge",
        FocusError::CodecMismatch { .. } => "codec_mismatch",
        FocusError::ModeMismatch { .. } => "mode_mismatch",
        FocusError::Invalid { .. } => "invalid",
        FocusError::UnknownConference(_) => "unknown_conference",
        FocusError::UnknownBridge(_)
        | FocusError::AlreadyRecording { .. }
        | FocusError::RecordingRefused { .. }
        | FocusError::NotRecording(_)
        | FocusError::DuplicateBridge(_)
        | FocusError::IncompatibleApi { .. } => "other",
    }
}

/// Describe every focus metric and give the counters a zero, so a scrape
/// of an idle focus already lists them (dashboards and alerts can tell
/// "nothing happened" from "not exported").
pub fn describe() {
    describe_counter!(
        "tern_focus_allocations_total",
        "Participants placed on a bridge (gRPC Allocate, /join, WHIP/WHEP)."
    );
    describe_counter!(
        "tern_focus_allocation_failures_total",
        "Allocations refused, by reason."
    );
    describe_histogram!(
        ALLOCATION_DURATION,
        metrics::Unit::Seconds,
        "Time from an allocation request to its placement or refusal."
    );
    describe_gauge!(
        "tern_focus_bridges",
        "Registered bridges by region and state."
    );
    describe_gauge!(
        "tern_focus_bridge_stress",
        "Each bridge's stress from its last report (packet rate over its capacity)."
    );
    describe_gauge!("tern_focus_conferences", "Conferences the focus knows.");
    describe_gauge!(
        "tern_focus_participants",
        "Participants over all conferences and bridges."
    );
    describe_gauge!(
        "tern_focus_relay_links",
        "Bridge pairs told to relay to each other for at least one conference."
    );
    describe_counter!(
        "tern_focus_relay_peer_commands_total",
        "Relay-peer commands sent to bridges (a conference's peers changed)."
    );
    counter!("tern_focus_allocations_total").absolute(0);
    for reason in [
        "no_bridge",
        "codec_mismatch",
        "invalid",
        "unknown_conference",
        "unavailable",
    ] {
        counter!("tern_focus_allocation_failures_total", "reason" => reason).absolute(0);
    }
    counter!("tern_focus_relay_peer_commands_total").absolute(0);
    for protocol in ["whip", "whep"] {
        counter!("tern_focus_http_sessions_total", "protocol" => protocol, "outcome" => "created")
            .absolute(0);
    }
    // Registered without an observation, so the empty histogram is listed.
    let _ = histogram!(ALLOCATION_DURATION);
    publish(&Summary::default(), &mut BTreeSet::new());
}

pub fn allocation(took: Duration, failure: Option<&'static str>) {
    histogram!(ALLOCATION_DURATION).record(took.as_secs_f64());
    match failure {
        None => counter!("tern_focus_allocations_total").increment(1),
        Some(reason) => {
            counter!("tern_focus_allocation_failures_total", "reason" => reason).increment(1)
        }
    }
}

pub fn relay_peer_command() {
    counter!("tern_focus_relay_peer_commands_total").increment(1);
}

/// Publish the gauges. `stressed` holds the (bridge, region) pairs that
/// have a stress series: a bridge the focus forgot gets its series zeroed
/// rather than left at its last value.
pub fn publish(s: &Summary, stressed: &mut BTreeSet<(String, String)>) {
    gauge!("tern_focus_conferences").set(s.conferences as f64);
    gauge!("tern_focus_participants").set(s.participants as f64);
    gauge!("tern_focus_relay_links").set(s.relay_links as f64);
    for ((region, state), n) in bridges_by_region_and_state(s) {
        gauge!("tern_focus_bridges", "region" => region, "state" => state.as_str()).set(n as f64);
    }
    let mut now = BTreeSet::new();
    for b in &s.bridges {
        gauge!("tern_focus_bridge_stress", "bridge" => b.id.clone(), "region" => b.region.clone())
            .set(b.stress);
        now.insert((b.id.clone(), b.region.clone()));
    }
    for (bridge, region) in stressed.difference(&now) {
        gauge!("tern_focus_bridge_stress", "bridge" => bridge.clone(), "region" => region.clone())
            .set(0.0);
    }
    *stressed = now;
}
