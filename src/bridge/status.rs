//! The bridge's own health and status: a watchdog over the shards' loops,
//! what `/health` (liveness) and `/ready` (readiness) answer, and the
//! status gauges (`tern_bridge_*`, see `docs/metrics.md`).
//!
//! A shard publishes a snapshot every second, idle or not (bridge/shard.rs
//! wakes for it). One whose last snapshot is older than [`SHARD_STALL`] has
//! stopped coming round its loop (a task that panicked, or one stuck in a
//! blocking call): its participants get no media, so the bridge reports
//! itself unhealthy to the focus (which moves them) and fails liveness (so
//! an orchestrator restarts it). Load is not ill health: an overloaded
//! shard still comes round, and refuses joins itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metrics::gauge;
use tern_sfu::node::Totals;

use super::app::App;
use super::shard::Snapshots;

/// How old a shard's snapshot may be before the shard counts as stalled:
/// five missed publications.
pub const SHARD_STALL: Duration = Duration::from_secs(5);

/// Shards (index, how long since they published) that have stalled. A
/// shard that never published counts from `started`.
pub fn stalled_shards(
    snapshots: &Snapshots,
    started: Instant,
    now: Instant,
) -> Vec<(usize, Duration)> {
    snapshots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let at = s
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .at
                .unwrap_or(started);
            let age = now.saturating_duration_since(at);
            (age > SHARD_STALL).then_some((i, age))
        })
        .collect()
}

/// Totals across shards from their latest snapshots, with the stalled ones
/// counted.
pub fn totals(app: &App) -> Totals {
    let mut t = Totals::default();
    for s in app.snapshots.iter() {
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        t.packets_in += s.packets_in;
        t.packets_out += s.packets_out;
        t.endpoints += s.endpoints as u32;
        t.conferences.extend(s.conferences.iter().cloned());
        t.recordings.extend(s.recordings.iter().cloned());
    }
    t.stalled_shards = stalled_shards(&app.snapshots, app.started, Instant::now()).len() as u32;
    t.mixing_busy = app.mixing.busy();
    t.cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    t
}

/// Liveness: `Err(reason)` when the process should be restarted.
pub fn live(app: &App) -> Result<(), String> {
    match stalled_shards(&app.snapshots, app.started, Instant::now()).first() {
        Some((i, age)) => Err(format!("shard {i} stalled for {} s", age.as_secs())),
        None => Ok(()),
    }
}

/// Readiness: `Err(reason)` when the bridge should get no new participants.
pub fn ready(app: &App) -> Result<(), String> {
    live(app)?;
    if app.shutting_down.load(Ordering::SeqCst) {
        return Err("shutting down".into());
    }
    if app.draining.load(Ordering::SeqCst) {
        return Err("draining".into());
    }
    if !app.cfg.bridge.focus_url.is_empty() && !app.focus_registered.load(Ordering::SeqCst) {
        return Err("not registered with the focus".into());
    }
    Ok(())
}

/// Publish the status gauges every second until the bridge stops.
pub async fn run(app: Arc<App>, bridge_id: String) {
    gauge!(
        "tern_bridge_info",
        "bridge" => bridge_id,
        "region" => app.cfg.bridge.region.clone(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
    let stress = gauge!("tern_bridge_stress");
    let healthy = gauge!("tern_bridge_healthy");
    let draining = gauge!("tern_bridge_draining");
    // Tasks alive in the runtime: sessions, connections and timers that
    // outlive their participants show here as a count that never falls.
    let tasks = gauge!("tern_bridge_tasks");
    // Only behind a focus: a standalone bridge has none to lose.
    let registered =
        (!app.cfg.bridge.focus_url.is_empty()).then(|| gauge!("tern_bridge_focus_connected"));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(u64, Instant)> = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let t = totals(&app);
        let packets = t.packets_in + t.packets_out;
        if let Some((before, then)) = last {
            let secs = now.saturating_duration_since(then).as_secs_f64().max(0.001);
            let rate = packets.saturating_sub(before) as f64 / secs;
            stress.set(rate / app.cfg.bridge.max_packet_rate.max(1) as f64);
        }
        last = Some((packets, now));
        healthy.set(if t.stalled_shards == 0 { 1.0 } else { 0.0 });
        draining.set(f64::from(u8::from(app.draining.load(Ordering::SeqCst))));
        tasks.set(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as f64,
        );
        if let Some(g) = &registered {
            g.set(f64::from(u8::from(
                app.focus_registered.load(Ordering::SeqCst),
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::shard::ShardSnapshot;

    #[test]
    fn a_shard_that_stops_publishing_is_stalled_and_an_idle_one_is_not() {
        let t0 = Instant::now();
        let snaps: Snapshots = Arc::new(vec![
            std::sync::Mutex::new(ShardSnapshot::default()),
            std::sync::Mutex::new(ShardSnapshot::default()),
        ]);
        assert!(stalled_shards(&snaps, t0, t0 + Duration::from_secs(4)).is_empty());
        let now = t0 + Duration::from_secs(20);
        snaps[0].lock().expect("lock").at = Some(now - Duration::from_secs(1));
        snaps[1].lock().expect("lock").at = Some(now - Duration::from_secs(7));
        let stalled = stalled_shards(&snaps, t0, now);
        assert_eq!(stalled, vec![(1, Duration::from_secs(7))]);
    }

    #[test]
    fn a_shard_that_never_published_stalls_from_the_start() {
        let t0 = Instant::now();
        let snaps: Snapshots = Arc::new(vec![std::sync::Mutex::new(ShardSnapshot::default())]);
        assert_eq!(
            stalled_shards(&snaps, t0, t0 + Duration::from_secs(6)).len(),
            1
        );
    }
}
