//! A whole run: lays out the participants (rooms, publishers first, a join
//! ramp), starts their tasks, samples the servers at the edges of the
//! measurement window, and assembles the [`Summary`]. Orchestration only:
//! what a participant does is [`crate::participant`], how it joins is
//! [`crate::join`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::MintToken;
use crate::args::{Args, MAX_JANUS_ROOMS, Target, parse_server};
use crate::ctx::{Ctx, Progress, Spec, lock};
use crate::error::{Error, Result};
use crate::join::preflight;
use crate::measure::{proc_sample, scrape, scrape_bridges};
use crate::participant::participant;
use crate::report::{BridgeUsage, ForwardLatencySummary, ProcessUsage, Summary};
use crate::{http, janus, stats};

/// After the last join, media settles (keyframes, layer choice) before the
/// measurement window opens.
const WARMUP: Duration = Duration::from_secs(2);

pub async fn run(args: Args, mint: MintToken) -> Result<Summary> {
    args.validate()?;
    let (server, base_path) = parse_server(&args.server)?;
    // Fail fast and clearly if nothing answers there.
    preflight(&args, server, &base_path).await?;

    let total = args.publishers + args.subscribers;
    let t0 = Instant::now() + Duration::from_millis(100);
    let interval = Duration::from_millis(args.join_interval_ms);
    let ramp_end = t0 + interval * total as u32;
    let window_start = ramp_end + WARMUP;
    let window = (
        window_start,
        window_start + Duration::from_secs_f64(args.duration),
    );
    let room_name = |i: usize| format!("load-{i}");
    let mut specs = Vec::with_capacity(total);
    for i in 0..args.publishers {
        specs.push(Spec {
            name: format!("pub{i}"),
            room: room_name(i % args.rooms),
            room_index: i % args.rooms,
            room_publishers: 0,
            publish: true,
            receive: args.publishers_receive && args.publishers > args.rooms,
            count_only: false,
            start_at: t0,
            seed: 1000 + i as u64,
        });
    }
    for i in 0..args.subscribers {
        specs.push(Spec {
            name: format!("sub{i}"),
            room: room_name(i % args.rooms),
            room_index: i % args.rooms,
            room_publishers: 0,
            publish: false,
            receive: true,
            count_only: i >= args.subscribers - args.count_only.min(args.subscribers),
            start_at: t0,
            seed: 5000 + i as u64,
        });
    }
    // Publishers first, so subscribers see them at once.
    for (k, s) in specs.iter_mut().enumerate() {
        s.start_at = t0 + interval * k as u32;
    }
    // In an all-to-all meeting a publisher receives only when its room has
    // another publisher.
    let pubs_per_room = |room: &str| specs.iter().filter(|s| s.publish && s.room == room).count();
    let fix: Vec<bool> = specs
        .iter()
        .map(|s| s.receive && (!s.publish || pubs_per_room(&s.room) > 1))
        .collect();
    let counts: Vec<usize> = specs.iter().map(|s| pubs_per_room(&s.room)).collect();
    for ((s, r), n) in specs.iter_mut().zip(fix).zip(counts) {
        s.receive = r;
        s.room_publishers = n;
    }

    let ctx = Arc::new(Ctx {
        args: args.clone(),
        mint,
        server,
        base_path,
        starts: Mutex::new(HashMap::new()),
        window,
        progress: Progress::default(),
        directory: Arc::default(),
        janus_room_base: janus_room_base(),
        placements: Mutex::default(),
    });

    let proc_before: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_pid = std::process::id();
    let mut tasks = Vec::with_capacity(total);
    for s in specs {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(participant(ctx, s)));
    }
    let progress = tokio::spawn(print_progress(ctx.clone(), total));

    // Sample the server and ourselves exactly at the window's edges.
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.0)).await;
    let server_at_start: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_at_start = proc_sample(self_pid);
    let metrics_at_start = scrape(&ctx).await;
    // Everyone joined during the ramp: the bridges they were placed on are
    // known now, and are scraped at both edges.
    let placed = lock(&ctx.placements).clone();
    let bridge_metrics_at_start = scrape_bridges(&placed).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(window.1)).await;
    let server_at_end: Vec<_> = args
        .server_pids
        .iter()
        .map(|p| proc_sample(p.pid))
        .collect();
    let self_at_end = proc_sample(self_pid);
    let metrics_at_end = scrape(&ctx).await;
    let bridge_metrics_at_end = scrape_bridges(&placed).await;

    let mut reports = Vec::with_capacity(total);
    for t in tasks {
        reports.push(t.await.map_err(Error::TaskFailed)?);
    }
    progress.abort();
    if args.target == Target::Janus {
        let rooms: Vec<u64> = (0..args.rooms as u64)
            .map(|i| ctx.janus_room_base + i)
            .collect();
        if let Err(e) = janus::destroy_rooms(server, &ctx.base_path, &rooms).await {
            eprintln!(
                "warning: could not destroy the Janus rooms of this run: {}",
                e.with_causes()
            );
        }
    }

    let window_len = window.1 - window.0;
    let overall = stats::summarise(&reports.iter().collect::<Vec<_>>(), window_len);
    let per_room = stats::by_room(&reports)
        .into_iter()
        .map(|(room, rs)| (room, stats::summarise(&rs, window_len)))
        .collect();
    let delivered = overall.received_packets as f64;
    let on_bridge = |name: &str| {
        reports
            .iter()
            .filter(|r| r.bridge.as_deref() == Some(name))
            .count()
    };
    let mut server_processes = Vec::new();
    for (i, p) in args.server_pids.iter().enumerate() {
        match (&proc_before[i], &server_at_start[i], &server_at_end[i]) {
            (Ok(b), Ok(st), Ok(e)) => {
                let cpu = e.cpu_secs - st.cpu_secs;
                let user = e.user_cpu_secs - st.user_cpu_secs;
                let per_million = |secs: f64| {
                    if delivered > 0.0 {
                        secs * 1e6 / delivered
                    } else {
                        f64::NAN
                    }
                };
                // A process named after a bridge counts only the endpoints
                // placed on it (none: no per-endpoint figure).
                let endpoints = if p.name.is_empty() || placed.is_empty() {
                    total
                } else {
                    on_bridge(&p.name)
                };
                server_processes.push(ProcessUsage {
                    pid: p.pid,
                    name: p.name.clone(),
                    cpu_secs: cpu,
                    busy_cores: cpu / window_len.as_secs_f64(),
                    rss_before_kib: b.rss_kib,
                    rss_after_kib: e.rss_kib,
                    rss_per_endpoint_kib: if endpoints > 0 {
                        (e.rss_kib as f64 - b.rss_kib as f64) / endpoints as f64
                    } else {
                        f64::NAN
                    },
                    cpu_secs_per_million_delivered: per_million(cpu),
                    user_cpu_secs: user,
                    user_cpu_secs_per_million_delivered: per_million(user),
                });
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                eprintln!(
                    "warning: could not measure server process {}: {}",
                    p.pid,
                    e.with_causes()
                );
            }
        }
    }
    let mut bridges = std::collections::BTreeMap::new();
    for (id, (region, http)) in &placed {
        let d = |name: &str, label: Option<(&str, &str)>| {
            let a = bridge_metrics_at_start.get(id)?;
            let b = bridge_metrics_at_end.get(id)?;
            Some(http::metric_sum_where(b, name, label) - http::metric_sum_where(a, name, label))
        };
        let mut u = BridgeUsage {
            region: region.clone(),
            http: *http,
            publishers: reports
                .iter()
                .filter(|r| r.publisher && r.bridge.as_deref() == Some(id))
                .count(),
            subscribers: reports
                .iter()
                .filter(|r| !r.publisher && r.bridge.as_deref() == Some(id))
                .count(),
            rtp_forwarded: d("tern_rtp_forwarded_total", None),
            relay_datagrams_out: d("tern_relay_datagrams_total", Some(("direction", "out"))),
            relay_datagrams_in: d("tern_relay_datagrams_total", Some(("direction", "in"))),
            relay_datagrams_dropped: d("tern_relay_datagrams_dropped_total", None),
            process: server_processes.iter().find(|p| p.name == *id).cloned(),
            relay_datagrams_per_cpu_sec: None,
            forward_latency: match (
                bridge_metrics_at_start.get(id),
                bridge_metrics_at_end.get(id),
            ) {
                (Some(a), Some(b)) => ForwardLatencySummary::between(a, b),
                _ => None,
            },
        };
        if let (Some(p), Some(o), Some(i)) =
            (&u.process, u.relay_datagrams_out, u.relay_datagrams_in)
            && p.cpu_secs > 0.0
        {
            u.relay_datagrams_per_cpu_sec = Some((o + i) / p.cpu_secs);
        }
        bridges.insert(id.clone(), u);
    }
    let placed_elsewhere = reports
        .iter()
        .filter(|r| matches!((&r.asked_region, &r.bridge_region), (Some(a), Some(b)) if a != b))
        .count();
    // A counter's growth over the window, over the label sets with `label`
    // (or all of them).
    let delta_where =
        |name: &str, label: Option<(&str, &str)>| match (&metrics_at_start, &metrics_at_end) {
            (Some(a), Some(b)) => Some(
                http::metric_sum_where(b, name, label) - http::metric_sum_where(a, name, label),
            ),
            _ => None,
        };
    let delta = |name: &str| delta_where(name, None);
    Ok(Summary {
        label: args.label.clone(),
        target: args.target,
        server: args.server.clone(),
        publishers: args.publishers,
        subscribers: args.subscribers,
        paced: !args.burst,
        rooms: args.rooms,
        window_secs: window_len.as_secs_f64(),
        video_layer_requested: args.wanted_layer(),
        server_forwarded_packets: delta("tern_rtp_forwarded_total"),
        server_sent_packets: delta("tern_packets_sent_total"),
        server_gso_datagrams: {
            let path = |p| delta_where("tern_udp_datagrams_sent_total", Some(("path", p)));
            path("gso").zip(path("plain"))
        },
        server_polls: {
            let cause = |c| delta_where("tern_connection_polls_total", Some(("cause", c)));
            cause("timer").zip(cause("other"))
        },
        server_forward_latency: match (&metrics_at_start, &metrics_at_end) {
            (Some(a), Some(b)) => ForwardLatencySummary::between(a, b),
            _ => None,
        },
        overall,
        per_room,
        server_process: server_processes.first().cloned(),
        server_processes,
        bridges,
        placed_elsewhere,
        loadtool_cpu_secs: match (self_at_start, self_at_end) {
            (Ok(a), Ok(b)) => b.cpu_secs - a.cpu_secs,
            _ => f64::NAN,
        },
    })
}

/// The first Janus room id of this run: rooms of an earlier run against the
/// same Janus (maybe killed before it could destroy them) are never reused.
fn janus_room_base() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Unique per second and process; below 2^53 (Janus's JSON numbers pass
    // through doubles in some clients).
    let run = (secs % 1_000_000) * 1000 + u64::from(std::process::id() % 1000) + 1;
    run * MAX_JANUS_ROOMS as u64
}

async fn print_progress(ctx: Arc<Ctx>, total: usize) {
    let start = Instant::now();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = &ctx.progress;
        let rx = p.rx_packets.load(Ordering::Relaxed);
        let phase = if Instant::now() < ctx.window.0 {
            "joining/warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "[{:>5.1}s] {phase}: joined {}/{total}, connected {}, failed {}, received {} packets ({:.0}/s)",
            start.elapsed().as_secs_f64(),
            p.joined.load(Ordering::Relaxed),
            p.connected.load(Ordering::Relaxed),
            p.failed.load(Ordering::Relaxed),
            rx,
            (rx - last) as f64 / 2.0
        );
        last = rx;
    }
}
