//! The command line of `tern loadtest` ([`Args`]) and the checks that
//! refuse impossible parameters before anything connects. Parsing only: it
//! must not reach the network or start a run.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tern_peer::synth::LayerSpec;

use crate::error::{Error, Result};

/// Longest run accepted: the tool must stop by itself in bounded time.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Janus room ids of a run are `run base + room index`, the base a multiple
/// of this.
pub(crate) const MAX_JANUS_ROOMS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A Tern bridge (`tern bridge` or `tern dev`).
    Tern,
    /// A Janus 1.1 VideoRoom, through its HTTP API.
    Janus,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What kind of server to load.
    #[arg(long, value_enum, default_value = "tern")]
    pub target: Target,
    /// The server's HTTP address: a Tern bridge's (signalling, /dev/token,
    /// /metrics) or Janus's HTTP API (e.g. http://198.18.0.1:8088/janus).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Mint tokens with this secret (`tern bridge`); without it tokens come
    /// from `/dev/token` (`tern dev`).
    #[arg(long, env = "TERN_AUTH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Publishers in total (spread round-robin over the rooms).
    #[arg(long, short = 'n', default_value_t = 2)]
    pub publishers: usize,
    /// Receive-only participants in total (spread over the rooms).
    #[arg(long, short = 'm', default_value_t = 4)]
    pub subscribers: usize,
    #[arg(long, short = 'r', default_value_t = 1)]
    pub rooms: usize,
    /// Seconds of measured media after everyone joined (plus a join ramp
    /// and a 2 s warm-up before it).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Milliseconds between two participants starting to join.
    #[arg(long, default_value_t = 20)]
    pub join_interval_ms: u64,
    /// Video receive slots per participant.
    #[arg(long, default_value_t = 4)]
    pub video_slots: usize,
    /// Audio receive slots per participant.
    #[arg(long, default_value_t = 4)]
    pub audio_slots: usize,
    /// Largest video height each receiver asks for (180, 360, 720).
    #[arg(long, default_value_t = 720)]
    pub max_height: u32,
    /// Publishers send only this many simulcast layers (1..=3, lowest first).
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Publishers write each video frame at once instead of pacing it as a
    /// browser does (libwebrtc's pacer: 2.5x the encoders' bitrate, served
    /// every 5 ms): the burst a frame makes at the server then grows with
    /// its size.
    #[arg(long)]
    pub burst: bool,
    /// Publishers receive too (an all-to-all meeting); otherwise they only send.
    #[arg(long)]
    pub publishers_receive: bool,
    /// This many of the subscribers (the last ones) count the media
    /// datagrams they get without decrypting or checking them: cheap enough
    /// that one load-tool core can keep a bridge busy. They count towards
    /// received packets and "media ok", not towards loss, delay or freezes,
    /// which come from the others.
    #[arg(long, default_value_t = 0)]
    pub count_only: usize,
    /// Worker threads of the load tool's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// PID of a server process: its CPU time and memory are then measured
    /// over the window (from /proc). Repeatable (e.g. both bridges of
    /// `tern dev`); `NAME=PID` names it, and a NAME that is the id of a
    /// bridge participants were placed on pairs that process's CPU with the
    /// bridge's relay counters.
    #[arg(long = "server-pid", value_name = "[NAME=]PID", value_parser = parse_server_pid)]
    pub server_pids: Vec<ServerPid>,
    /// Region publishers ask the focus for (`/join?region=`). Only through a
    /// focus; with `--subscriber-region` set to another region, every
    /// packet crosses the relay between two bridges.
    #[arg(long, value_name = "REGION")]
    pub publisher_region: Option<String>,
    /// Region receive-only participants ask the focus for.
    #[arg(long, value_name = "REGION")]
    pub subscriber_region: Option<String>,
    /// Also write the summary as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Local IP for media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
    /// Label for this run in the summary (e.g. "tern" / "janus").
    #[arg(long, default_value = "")]
    pub label: String,
    /// Instead of a load: measure the per-core ceiling (SRTP AES-256-GCM seal
    /// plus UDP send of 1,200-byte packets on this thread) for SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub ceiling: Option<f64>,
    /// With --ceiling: also send the batches round robin into 64 sockets a
    /// reader pinned to this core drains (what the bridge pays on loopback:
    /// delivery into read sockets and the reader's wakeups).
    #[arg(long, value_name = "CORE", requires = "ceiling")]
    pub ceiling_reader_core: Option<usize>,
}

/// A server process to measure: `PID` or `NAME=PID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPid {
    pub name: String,
    pub pid: u32,
}

pub fn parse_server_pid(s: &str) -> Result<ServerPid> {
    let (name, pid) = match s.split_once('=') {
        Some((n, _)) if n.trim().is_empty() => {
            return Err(bad(
                "--server-pid",
                format!("{s:?}: the name before '=' is empty (expected NAME=PID)"),
            ));
        }
        Some((n, p)) => (n.trim().to_string(), p),
        None => (String::new(), s),
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(ServerPid { name, pid }),
        _ => Err(bad(
            "--server-pid",
            format!("{s:?}: expected a process id (PID or NAME=PID)"),
        )),
    }
}

/// Parse `http://IP:PORT[/path]` (or `IP:PORT`) into an address and a base path.
pub fn parse_server(s: &str) -> Result<(SocketAddr, String)> {
    let rest = s.strip_prefix("http://").unwrap_or(s);
    if rest.contains("://") {
        return Err(Error::BadServer {
            server: s.to_string(),
            why: "only plain http:// is supported",
            source: None,
        });
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
        None => (rest, String::new()),
    };
    let addr = host.parse::<SocketAddr>().map_err(|e| Error::BadServer {
        server: s.to_string(),
        why: "expected http://IP:PORT (an IP address, not a host name)",
        source: Some(e),
    })?;
    Ok((addr, path))
}

impl Args {
    /// The simulcast layer receivers want: the highest of the published
    /// layers whose height is within `--max-height` (the lowest if none is).
    pub fn wanted_layer(&self) -> u8 {
        LayerSpec::ladder()
            .iter()
            .take(self.layers)
            .rposition(|l| u32::from(l.height) <= self.max_height)
            .unwrap_or(0) as u8
    }

    /// Refuse impossible parameters before anything connects.
    pub fn validate(&self) -> Result<()> {
        if self.publishers == 0 {
            return Err(bad(
                "--publishers",
                "must be at least 1: nobody would send media",
            ));
        }
        if self.rooms == 0 {
            return Err(bad("--rooms", "must be at least 1"));
        }
        if self.rooms > self.publishers {
            return Err(bad(
                "--rooms",
                format!(
                    "{} exceeds --publishers {}: every room needs a publisher",
                    self.rooms, self.publishers
                ),
            ));
        }
        if self.duration.is_nan()
            || self.duration <= 0.0
            || self.duration > MAX_DURATION.as_secs_f64()
        {
            return Err(bad(
                "--duration",
                format!("must be between 0 and {} seconds", MAX_DURATION.as_secs()),
            ));
        }
        if !(1..=3).contains(&self.layers) {
            return Err(bad("--layers", "must be 1, 2 or 3"));
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(bad("--threads", "must be between 1 and 64"));
        }
        if self.count_only > self.subscribers {
            return Err(bad(
                "--count-only",
                format!(
                    "{} exceeds --subscribers {}",
                    self.count_only, self.subscribers
                ),
            ));
        }
        if self.subscribers > 0 && self.video_slots + self.audio_slots == 0 {
            return Err(bad(
                "--video-slots/--audio-slots",
                "are both 0, but subscribers need receive slots",
            ));
        }
        if self.target == Target::Janus && self.publishers_receive {
            // A Janus publisher receives through a second PeerConnection (a
            // subscriber handle); a participant here is one Peer.
            return Err(bad(
                "--publishers-receive",
                "is not supported with --target janus: use separate subscribers (-m)",
            ));
        }
        if self.target == Target::Janus && self.rooms > MAX_JANUS_ROOMS {
            return Err(bad(
                "--rooms",
                format!(
                    "{}: at most {MAX_JANUS_ROOMS} with --target janus",
                    self.rooms
                ),
            ));
        }
        for (flag, region) in [
            ("--publisher-region", &self.publisher_region),
            ("--subscriber-region", &self.subscriber_region),
        ] {
            let Some(r) = region else {
                continue;
            };
            if r.trim().is_empty() {
                return Err(bad(
                    flag,
                    "is empty: name a region the focus has bridges in (its /api/bridges lists them)",
                ));
            }
            if self.target == Target::Janus {
                return Err(bad(
                    flag,
                    "needs a Tern focus as --server: Janus has no regions",
                ));
            }
            if self.secret.is_some() {
                return Err(bad(
                    flag,
                    "only means something through a focus, but --secret (or TERN_AUTH_SECRET) mints tokens for the one bridge at --server: drop the secret and point --server at the focus",
                ));
            }
        }
        let mut pids: Vec<u32> = self.server_pids.iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        if let Some(w) = pids.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(
                "--server-pid",
                format!("{}: the same process is given twice", w[0]),
            ));
        }
        parse_server(&self.server)?;
        Ok(())
    }

    /// The region a participant asks the focus for, if any.
    pub(crate) fn region_for(&self, publish: bool) -> Option<&str> {
        if publish {
            self.publisher_region.as_deref()
        } else {
            self.subscriber_region.as_deref()
        }
    }
}

/// A refused parameter: the flag, and why (which follows it in the message).
fn bad(flag: &'static str, why: impl Into<String>) -> Error {
    Error::BadArgument {
        flag,
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["t"];
        v.extend_from_slice(extra);
        T::parse_from(v).a
    }

    #[test]
    fn impossible_parameters_are_refused_with_a_reason() {
        let e = args(&["--publishers", "0"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("publishers"), "{e}");
        let e = args(&["-n", "1", "--rooms", "2"])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string().contains("every room needs a publisher"),
            "{e}"
        );
        let e = args(&["--duration", "0"]).validate().expect_err("refused");
        assert!(e.to_string().contains("duration"), "{e}");
        let e = args(&["--server", "http://example.org:80"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("IP address"), "{e}");
        assert!(args(&[]).validate().is_ok());
    }

    #[test]
    fn receivers_ask_for_the_highest_published_layer_within_max_height() {
        assert_eq!(args(&[]).wanted_layer(), 2);
        assert_eq!(args(&["--max-height", "360"]).wanted_layer(), 1);
        assert_eq!(args(&["--max-height", "500"]).wanted_layer(), 1);
        assert_eq!(args(&["--max-height", "100"]).wanted_layer(), 0);
        assert_eq!(args(&["--layers", "2"]).wanted_layer(), 1);
        let e = args(&["--target", "janus", "--publishers-receive"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("--target janus"), "{e}");
    }

    #[test]
    fn regions_need_a_name_and_a_focus_and_server_pids_a_process_id() {
        let e = args(&["--subscriber-region", " "])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string().contains("--subscriber-region is empty"),
            "{e}"
        );
        let e = args(&["--target", "janus", "--publisher-region", "eu"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("needs a Tern focus"), "{e}");
        let e = args(&["--secret", "s", "--publisher-region", "eu"])
            .validate()
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("only means something through a focus"),
            "{e}"
        );
        let ok = args(&["--publisher-region", "eu", "--subscriber-region", "us"]);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.region_for(true), Some("eu"));
        assert_eq!(ok.region_for(false), Some("us"));

        let both = args(&["--server-pid", "12", "--server-pid", "local-b=13"]);
        assert_eq!(
            both.server_pids,
            vec![
                ServerPid {
                    name: String::new(),
                    pid: 12
                },
                ServerPid {
                    name: "local-b".into(),
                    pid: 13
                }
            ]
        );
        assert!(both.validate().is_ok());
        let e = args(&["--server-pid", "12", "--server-pid", "a=12"])
            .validate()
            .expect_err("refused");
        assert!(e.to_string().contains("given twice"), "{e}");
        for bad in ["=12", "x", "0", "a=", "a=-1"] {
            let e = parse_server_pid(bad).expect_err(bad);
            assert!(e.to_string().contains("--server-pid"), "{bad}: {e}");
        }
    }

    #[test]
    fn server_addresses_parse_with_and_without_a_path() {
        let (a, p) = parse_server("http://127.0.0.1:8088/janus/").expect("ok");
        assert_eq!((a.port(), p.as_str()), (8088, "/janus"));
        let (a, p) = parse_server("127.0.0.1:80").expect("ok");
        assert_eq!((a.port(), p.as_str()), (80, ""));
    }
}
