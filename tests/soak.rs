//! Soak, short: a focus and three relayed bridges (real processes) under
//! continuous churn — participants joining, leaving cleanly, vanishing
//! without a word, muting, changing the layer they watch, and starting and
//! stopping screen shares (a participant that rejoins publishing its video
//! as a "screen" source, which the bridge ranks and caps apart), several
//! times a second across three conferences — and then everyone gone. Each
//! bridge's endpoints, conferences and relay connections must fall back to
//! zero, its open descriptors to their baseline and its tokio tasks to
//! within one of it; resident memory is reported (the allocator keeps
//! some), and printed every minute in long runs.
//!
//! `TERN_SOAK_SECS` sets how long the churn runs (default 20 s in the
//! suite); `scripts/soak.sh` runs it for 30 minutes and keeps the samples.

mod native;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use native::cluster_procs::API;
use native::eventually;
use native::focus_api::{Api, api};
use native::relay_procs::{join_conference_as, pki, start_bridge, start_split_focus, wait_online};
use tern::client::Client;
use tern_sfu::signal::ClientMessage;

/// Participants present at once, over this many conferences.
const PARTICIPANTS: usize = 9;
const CONFERENCES: usize = 3;
/// One churn action this often.
const STEP: Duration = Duration::from_millis(200);

/// A small deterministic generator: the same run every time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// What a bridge process holds: open descriptors, resident KiB, tokio tasks,
/// endpoints, conferences.
#[derive(Debug, Clone, Copy)]
struct Sample {
    fds: usize,
    rss_kib: u64,
    tasks: f64,
    endpoints: f64,
    conferences: f64,
    relay_connections: f64,
}

fn sample(pid: u32, http: SocketAddr) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    Sample {
        fds,
        rss_kib,
        tasks: native::metric(http, "tern_bridge_tasks", ""),
        endpoints: native::metric(http, "tern_endpoints", ""),
        conferences: native::metric(http, "tern_conferences", ""),
        relay_connections: native::metric(http, "tern_relay_connections", ""),
    }
}

/// Counters of errors that nothing in the churn causes: the harness sends
/// only valid messages with valid tokens, to bridges that trust each other.
/// Each must read 0 on every bridge after the run.
const MUST_STAY_ZERO: [&str; 7] = [
    "tern_joins_refused_total",
    "tern_signalling_errors_total",
    "tern_signal_backlog_drops_total",
    "tern_data_messages_dropped_total",
    "tern_relay_handshakes_failed_total",
    "tern_relay_handshakes_refused_total",
    "tern_relay_control_refused_total",
];

/// Counters that churn does move (packets from a participant who vanished,
/// relay datagrams for a conference just closed): printed, by reason.
fn caused_drops(http: SocketAddr) -> Vec<String> {
    native::http_get(http, "/metrics")
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.starts_with("tern_packets_dropped_total")
                    || l.starts_with("tern_relay_datagrams_dropped_total"))
                && !l.ends_with(" 0")
        })
        .map(str::to_string)
        .collect()
}

/// A new participant in `seat` (its conference is the seat's), sharing
/// its screen instead of a camera if `screen`.
async fn join(api: &mut Api, seat: usize, serial: &mut usize, screen: bool) -> Client {
    *serial += 1;
    let who = format!("p{seat}-{serial}");
    let conference = format!("soak-{}", seat % CONFERENCES);
    let source = if screen { "screen" } else { "camera" };
    join_conference_as(api, &conference, &who, source).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bridges_return_to_baseline_after_churn() {
    let secs: u64 = std::env::var("TERN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::Builder::new()
        .prefix("tern-soak-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let ids = ["a", "b", "c"];
    pki(&dir, &ids);
    let (_focus, grpc) = start_split_focus();
    let bridges: Vec<_> = ids
        .iter()
        .map(|id| start_bridge(id, grpc, &dir, &[]))
        .collect();
    let mut api = api(grpc, API).await;
    wait_online(&mut api, 3).await;
    // Let start-up settle (first scrapes, focus link) before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline: Vec<Sample> = bridges
        .iter()
        .map(|(p, http)| sample(p.pid(), *http))
        .collect();
    println!("baseline {baseline:?}");

    let mut rng = Lcg(7);
    let mut seats: Vec<Option<Client>> = Vec::new();
    let mut serial = 0;
    for seat in 0..PARTICIPANTS {
        seats.push(Some(join(&mut api, seat, &mut serial, false).await));
    }
    let (mut joins, mut leaves, mut vanished, mut mutes, mut layers) = (PARTICIPANTS, 0, 0, 0, 0);
    let mut screens = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next_report = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let seat = rng.below(PARTICIPANTS);
        match rng.below(5) {
            0 => {
                if let Some(c) = seats[seat].take() {
                    c.leave().await.expect("leave");
                    leaves += 1;
                }
                // A third of the rejoins start a screen share (and the next
                // rejoin of that seat most likely stops it).
                let screen = rng.below(3) == 0;
                screens += usize::from(screen);
                seats[seat] = Some(join(&mut api, seat, &mut serial, screen).await);
                joins += 1;
            }
            1 => {
                // Gone without a word: the bridge finds out by itself.
                if let Some(c) = seats[seat].take() {
                    c.abort();
                    vanished += 1;
                }
                seats[seat] = Some(join(&mut api, seat, &mut serial, false).await);
                joins += 1;
            }
            2 => {
                if let Some(c) = &seats[seat] {
                    c.send(ClientMessage::SourceState {
                        name: "mic".into(),
                        muted: rng.below(2) == 0,
                    });
                    mutes += 1;
                }
            }
            _ => {
                if let Some(c) = &seats[seat] {
                    c.set_max_height(None, [0, 180, 360, 720][rng.below(4)]);
                    layers += 1;
                }
            }
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            let now: Vec<Sample> = bridges
                .iter()
                .map(|(p, http)| sample(p.pid(), *http))
                .collect();
            println!("after {joins} joins: {now:?}");
        }
        tokio::time::sleep(STEP).await;
    }
    println!(
        "{secs} s of churn: {joins} joins ({screens} sharing a screen), {leaves} leaves, {vanished} vanished, {mutes} mute changes, {layers} layer changes"
    );
    let during: Vec<Sample> = bridges
        .iter()
        .map(|(p, http)| sample(p.pid(), *http))
        .collect();
    println!("under load {during:?}");
    assert!(
        during.iter().map(|s| s.endpoints).sum::<f64>() >= 1.0,
        "nobody was connected during the churn: nothing was tested"
    );
    for c in seats.into_iter().flatten() {
        c.leave().await.expect("leave");
    }

    for (i, (p, http)) in bridges.iter().enumerate() {
        let base = baseline[i];
        let after = eventually(
            &format!("bridge {} back to its baseline", ids[i]),
            Duration::from_secs(30),
            || {
                // Relay connections go once no conference is shared, and
                // with them their tasks; one task of slack for a timer.
                let s = sample(p.pid(), *http);
                (s.endpoints == 0.0
                    && s.conferences == 0.0
                    && s.relay_connections == 0.0
                    && s.fds <= base.fds
                    && s.tasks <= base.tasks + 1.0)
                    .then_some(s)
            },
        )
        .await;
        println!(
            "bridge {}: before {base:?}, after {after:?} (resident memory {:+} KiB)",
            ids[i],
            after.rss_kib as i64 - base.rss_kib as i64
        );
        let scrape = native::http_get(*http, "/metrics");
        for name in MUST_STAY_ZERO {
            // Registered at zero at start: a name missing from the scrape
            // would make this check read 0 whatever happened.
            assert!(
                scrape.contains(name),
                "bridge {}: no {name} in /metrics",
                ids[i]
            );
            let n = native::metric(*http, name, "");
            assert_eq!(n, 0.0, "bridge {}: {name} is {n} after the churn", ids[i]);
        }
        println!(
            "bridge {} drops with a cause: {:?}",
            ids[i],
            caused_drops(*http)
        );
    }
}
