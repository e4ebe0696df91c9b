//! The result of a run ([`Summary`]): what was measured per room, per
//! bridge and per server process, and its rendering as the text table
//! `tern loadtest` prints (the JSON is its `Serialize`). It only presents
//! figures; collecting them is the `run` module's job.

use std::net::SocketAddr;

use serde::Serialize;
use tern_peer::synth::LayerSpec;

use crate::args::Target;
use crate::stats::{self, GroupSummary};
use crate::{histogram, http};

/// The whole result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub label: String,
    pub target: Target,
    pub server: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub rooms: usize,
    /// Publishers paced their video (`--burst` turns it off).
    pub paced: bool,
    /// The measured steady-state window (seconds).
    pub window_secs: f64,
    pub overall: GroupSummary,
    pub per_room: std::collections::BTreeMap<String, GroupSummary>,
    /// The first `--server-pid` (kept for scripts that read one server).
    pub server_process: Option<ProcessUsage>,
    /// Every `--server-pid`.
    pub server_processes: Vec<ProcessUsage>,
    /// Bridges the focus placed participants on (joins through a focus).
    pub bridges: std::collections::BTreeMap<String, BridgeUsage>,
    /// Participants placed outside the region they asked for (the focus
    /// does that when the region's bridges are overloaded or missing).
    pub placed_elsewhere: usize,
    /// The simulcast layer (0 = lowest) receivers ask for: the highest one
    /// not above `--max-height` (Tern: a constraint; Janus: `substream`).
    /// What was really forwarded is `overall.video_layer_packets`.
    pub video_layer_requested: u8,
    /// Packets the server said it forwarded in the window (Tern `/metrics`).
    pub server_forwarded_packets: Option<f64>,
    /// Packets the server said it sent in the window (all datagrams).
    pub server_sent_packets: Option<f64>,
    /// Of the media socket's datagrams in the window, those that left in UDP
    /// GSO messages (`tern_udp_datagrams_sent_total{path}`): gso, plain.
    pub server_gso_datagrams: Option<(f64, f64)>,
    /// Times the server polled participants' connections in the window
    /// (`tern_connection_polls_total{cause}`): on their own timers, other.
    pub server_polls: Option<(f64, f64)>,
    /// The server's own forwarding delay over the window (Tern `/metrics`,
    /// `tern_forward_latency_seconds`: kernel receive to `sendmmsg`).
    pub server_forward_latency: Option<ForwardLatencySummary>,
    /// The load tool's own CPU seconds over the window.
    pub loadtool_cpu_secs: f64,
}

/// Quantiles of the bridge's forwarding delay, from its histogram's change
/// over the window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ForwardLatencySummary {
    pub packets: f64,
    pub p50_secs: f64,
    pub p99_secs: f64,
    pub mean_secs: f64,
}

impl ForwardLatencySummary {
    /// From two `/metrics` pages (start and end of the window).
    pub fn between(start: &str, end: &str) -> Option<Self> {
        const NAME: &str = "tern_forward_latency_seconds";
        let buckets = histogram::buckets_between(start, end, NAME);
        let packets = buckets.last()?.1;
        let sum = http::metric_sum(end, &format!("{NAME}_sum"))
            - http::metric_sum(start, &format!("{NAME}_sum"));
        Some(Self {
            packets,
            p50_secs: histogram::quantile(&buckets, 0.5)?,
            p99_secs: histogram::quantile(&buckets, 0.99)?,
            mean_secs: sum / packets,
        })
    }
}

/// One bridge of a run through a focus: who was placed on it and what its
/// `/metrics` counted over the window. The bridge exports its counters once
/// a second, so each edge of the window is exact to about a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BridgeUsage {
    pub region: String,
    /// Its HTTP address, from the signalling URL the focus returned.
    pub http: Option<SocketAddr>,
    pub publishers: usize,
    pub subscribers: usize,
    pub rtp_forwarded: Option<f64>,
    pub relay_datagrams_out: Option<f64>,
    pub relay_datagrams_in: Option<f64>,
    pub relay_datagrams_dropped: Option<f64>,
    /// Its process, when a `--server-pid NAME=PID` names this bridge.
    pub process: Option<ProcessUsage>,
    /// Relay datagrams sent plus received per CPU-second of the process.
    pub relay_datagrams_per_cpu_sec: Option<f64>,
    /// Its own forwarding delay over the window.
    pub forward_latency: Option<ForwardLatencySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub pid: u32,
    /// The NAME of `--server-pid NAME=PID` (empty without one).
    pub name: String,
    pub cpu_secs: f64,
    /// CPU seconds per wall second (1.0 = one busy core).
    pub busy_cores: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (RSS with everyone connected − RSS before anyone joined) / participants
    /// (those placed on it, for a process named after a bridge).
    pub rss_per_endpoint_kib: f64,
    /// Server CPU seconds per million packets delivered to participants.
    pub cpu_secs_per_million_delivered: f64,
    /// Of `cpu_secs`, what the process spent in user space (not in the
    /// kernel): CPU-s per million delivered is µs per delivered packet.
    pub user_cpu_secs: f64,
    pub user_cpu_secs_per_million_delivered: f64,
}

impl Summary {
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== tern loadtest {}: {} publishers{}, {} subscribers, {} rooms against {} {} ({:.1} s measured)",
            self.label,
            self.publishers,
            if self.paced { " (paced)" } else { " (bursts)" },
            self.subscribers,
            self.rooms,
            serde_json::to_string(&self.target).unwrap_or_default(),
            self.server,
            self.window_secs
        );
        let _ = writeln!(
            s,
            "{:<10} {:>5} {:>6} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7} {:>5} {:>8} {:>8} {:>8}",
            "room",
            "peers",
            "failed",
            "media ok",
            "join p50",
            "rx pkt/s",
            "kbps/rx",
            "loss %",
            "frz c/s",
            "PLIs",
            "delay50",
            "delay99",
            "delaymax"
        );
        let row = |s: &mut String, name: &str, g: &GroupSummary| {
            let ms = |p: &Option<stats::Percentiles>, f: fn(&stats::Percentiles) -> f64| {
                p.as_ref().map_or("-".into(), |p| format!("{:.1}ms", f(p)))
            };
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:>6} {:>9} {:>9} {:>10.0} {:>9.0} {:>7.3} {:>7} {:>5} {:>8} {:>8} {:>8}",
                name,
                g.participants,
                g.failed,
                format!("{}/{}", g.receivers_with_media, g.expected_receivers),
                ms(&g.join_ms, |p| p.p50),
                g.received_packets_per_sec,
                g.received_kbps_per_receiver,
                g.loss_percent,
                format!("{}/{}", g.freezes, g.shown_freezes),
                g.plis_sent,
                ms(&g.delay_ms, |p| p.p50),
                ms(&g.delay_ms, |p| p.p99),
                ms(&g.delay_ms, |p| p.max),
            );
        };
        for (room, g) in &self.per_room {
            row(&mut s, room, g);
        }
        row(&mut s, "overall", &self.overall);
        let ladder = LayerSpec::ladder();
        let layer_name = |l: u8| {
            ladder
                .get(usize::from(l))
                .map_or(format!("layer {l}"), |s| {
                    format!("{}p ({})", s.height, s.rid)
                })
        };
        let video: u64 = self.overall.video_layer_packets.values().sum();
        if video > 0 {
            let shares: Vec<String> = self
                .overall
                .video_layer_packets
                .iter()
                .map(|(&l, &n)| {
                    format!("{} {:.1} %", layer_name(l), n as f64 * 100.0 / video as f64)
                })
                .collect();
            let _ = writeln!(
                s,
                "video layers forwarded: {} (asked for {}{})",
                shares.join(", "),
                layer_name(self.video_layer_requested),
                match self.target {
                    Target::Janus => format!(", Janus substream {}", self.video_layer_requested),
                    Target::Tern => String::new(),
                }
            );
        }
        for p in &self.server_processes {
            let name = if p.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.name)
            };
            let per_endpoint = if p.rss_per_endpoint_kib.is_finite() {
                format!(" ({:.0} KiB per endpoint)", p.rss_per_endpoint_kib)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "server pid {}{name}: {:.2} CPU-s ({:.2} busy cores), {:.1} CPU-s per million delivered packets ({:.1} in user space), RSS {} → {} KiB{per_endpoint}",
                p.pid,
                p.cpu_secs,
                p.busy_cores,
                p.cpu_secs_per_million_delivered,
                p.user_cpu_secs_per_million_delivered,
                p.rss_before_kib,
                p.rss_after_kib,
            );
        }
        let per_s =
            |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}", v / self.window_secs));
        for (id, b) in &self.bridges {
            let cpu = match (&b.process, b.relay_datagrams_per_cpu_sec) {
                (Some(p), Some(r)) => format!(
                    ", {:.2} busy cores, {r:.0} relay datagrams per CPU-s",
                    p.busy_cores
                ),
                (Some(p), None) => format!(", {:.2} busy cores", p.busy_cores),
                _ => String::new(),
            };
            let delay = b.forward_latency.map_or(String::new(), |l| {
                format!(
                    "; forwarding delay p50 {:.0} µs, p99 {:.0} µs",
                    l.p50_secs * 1e6,
                    l.p99_secs * 1e6
                )
            });
            let _ = writeln!(
                s,
                "bridge {id} ({}): {} publishers, {} subscribers; per s: {} RTP forwarded, relay datagrams {} out / {} in / {} dropped{cpu}{delay}",
                b.region,
                b.publishers,
                b.subscribers,
                per_s(b.rtp_forwarded),
                per_s(b.relay_datagrams_out),
                per_s(b.relay_datagrams_in),
                per_s(b.relay_datagrams_dropped),
            );
        }
        if self.placed_elsewhere > 0 {
            let _ = writeln!(
                s,
                "warning: the focus placed {} participants outside the region they asked for",
                self.placed_elsewhere
            );
        }
        if let (Some(f), Some(sent)) = (self.server_forwarded_packets, self.server_sent_packets) {
            let _ = writeln!(
                s,
                "server metrics: {:.0} RTP forwarded/s, {:.0} datagrams sent/s{}",
                f / self.window_secs,
                sent / self.window_secs,
                match self.server_gso_datagrams {
                    Some((gso, plain)) if gso + plain > 0.0 => {
                        format!(
                            " ({:.0} % in UDP GSO messages)",
                            100.0 * gso / (gso + plain)
                        )
                    }
                    _ => String::new(),
                }
            );
        }
        if let Some((timer, other)) = self.server_polls {
            let endpoints = (self.publishers + self.subscribers).max(1) as f64;
            let per = |n: f64| n / self.window_secs / endpoints;
            let _ = writeln!(
                s,
                "server connection polls: {:.1} per endpoint-second ({:.1} on their own timers)",
                per(timer + other),
                per(timer),
            );
        }
        if let Some(l) = &self.server_forward_latency {
            let _ = writeln!(
                s,
                "bridge forwarding delay (kernel receive → sendmmsg return): p50 {:.0} µs, p99 {:.0} µs, mean {:.0} µs over {:.0} packets",
                l.p50_secs * 1e6,
                l.p99_secs * 1e6,
                l.mean_secs * 1e6,
                l.packets,
            );
        }
        let _ = writeln!(
            s,
            "load tool: {:.2} CPU-s ({:.2} busy cores)",
            self.loadtool_cpu_secs,
            self.loadtool_cpu_secs / self.window_secs
        );
        for e in self.overall.errors.iter().take(10) {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }
}
