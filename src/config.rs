//! Configuration: a TOML file, then `TERN_<SECTION>_<KEY>` environment
//! overrides, then defaults. Unknown keys are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tern_sfu::CodecName;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub bridge: BridgeConfig,
    pub auth: AuthConfig,
    pub media: MediaConfig,
    pub focus: FocusSection,
    pub relay: RelayConfig,
    pub turn: TurnConfig,
}

/// TURN servers handed to clients with time-limited credentials: the TURN
/// REST scheme coturn implements with `use-auth-secret` (username
/// `<expiry unix time>:<participant id>`, password the base64 HMAC-SHA1 of
/// the username under the shared secret). See `crate::auth::turn_credentials`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs (RFC 7065), e.g.
    /// `"turn:turn.example.com:3478?transport=udp"`. Empty: no TURN.
    pub urls: Vec<String>,
    /// The TURN server's shared secret (coturn's `static-auth-secret`).
    pub secret: String,
    /// How long a participant's credentials stay valid.
    pub ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: String::new(),
            ttl_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// HTTP: signalling WebSocket, browser client, /metrics, /health.
    pub http_listen: SocketAddr,
    /// The one UDP port all media uses.
    pub media_listen: SocketAddr,
    /// Address put in ICE candidates; defaults to `media_listen`. Required
    /// when `media_listen` is a wildcard address.
    pub advertise_addr: Option<SocketAddr>,
    /// Worker shards; conferences are pinned to one. 0 = one per core.
    pub shards: usize,
    pub region: String,
    pub max_participants_per_conference: usize,
    /// Id the bridge registers with at the focus; default `<region>-<media port>`.
    pub id: String,
    /// Signalling URL clients are sent to; default `ws://<http_listen>/signal`.
    pub signal_url: String,
    /// RTP packets in + out per second that count as stress 1.0.
    pub max_packet_rate: u64,
    /// The focus to register with (`http://host:port` of its gRPC listener);
    /// empty = standalone bridge.
    pub focus_url: String,
    /// Secret the bridge presents to the focus.
    pub focus_secret: String,
    /// After SIGTERM with a focus: how long to wait for participants to be
    /// moved away before exiting anyway.
    pub drain_timeout_secs: u64,
    /// ICE-TCP (RFC 6544): also listen for TCP on the media address (same
    /// port number) and offer it as a passive candidate, for clients whose
    /// network blocks UDP.
    pub ice_tcp: bool,
    /// Signalling WebSockets one client address may hold at once (0: no
    /// limit). Behind a reverse proxy every client has the proxy's address:
    /// raise it or set 0.
    pub max_signal_connections_per_ip: usize,
    /// Where recordings are written, one directory per recording (created
    /// when missing). Empty: this bridge does not record; a recording
    /// asked of it fails with that reason.
    pub recordings_dir: String,
    /// Send the datagrams one receiver gets in a flush as one UDP GSO
    /// message where the kernel offers it (Linux 4.18+); a kernel or device
    /// that refuses it is detected and sent to without. Off: one datagram
    /// per message.
    pub udp_gso: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret for participant tokens. Empty: `tern bridge` refuses to
    /// start; `tern dev` generates one.
    pub secret: String,
    /// Lifetime of tokens minted by `tern dev` and `tern token`.
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Codecs offered in SDP, in preference order.
    pub codecs: Vec<CodecName>,
    /// Video height a receiver gets when it states no constraint.
    pub default_max_height: u32,
    /// Video packets per receive slot remembered to answer NACKs (what was
    /// sent under each sequence number, 24 bytes each); a source keeps one
    /// copy of each packet for all its receivers, up to four times this.
    /// 512 is ~2 s of 720p.
    pub rtx_cache_packets: usize,
    /// How long a sent video packet is kept for NACKs. 1 s is libwebrtc's
    /// own floor for its send history; a resend later than that arrives
    /// after the receiver has given up on the frame.
    pub rtx_cache_ms: u64,
    /// Talk detection sensitivity, 0..=100: higher hears quieter speech
    /// (55, the default, is Jitsi Videobridge's threshold, about -47 dBov).
    pub talk_sensitivity: u8,
    /// How long a participant counts as speaking after their speech stops
    /// (the speaking indicator; how long their audio slot is kept for them).
    pub talk_interval_ms: u64,
    /// Estimate each receiver's bandwidth from its congestion feedback and
    /// fit its video layers to it (off: constraints alone decide).
    pub bandwidth_estimation: bool,
    /// The estimate a receiver starts with, in kbps.
    pub initial_estimate_kbps: u64,
    /// Probing for more bandwidth stops at this, per receiver, in kbps.
    pub max_probe_kbps: u64,
    /// Most a camera layer may send, in kbps (at least 100): told to
    /// publishers, and a layer well above it is not forwarded.
    pub camera_max_kbps: u64,
    /// The same for screen shares.
    pub screen_max_kbps: u64,
    /// Threads that mix the audio of mixed conferences (at least 1), off
    /// the forwarding shards. A conference is mixed by one of them.
    pub mixing_workers: usize,
    /// The bitrate of each participant's Opus mix, in kbps (6-510).
    pub mix_bitrate_kbps: u32,
    /// Mixed conferences get a composite video (H.264, a grid of everyone,
    /// one stream for all); off: their video is forwarded.
    pub mix_video: bool,
    /// The composite's size and frame rate.
    pub mix_video_width: u32,
    pub mix_video_height: u32,
    pub mix_video_fps: u32,
    /// Its bitrate, in kbps.
    pub mix_video_kbps: u32,
}

/// The relay mesh: bridges connect to each other over QUIC, mutually
/// authenticated with certificates from the cluster CA (`tern ca`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// UDP address of the relay endpoint. Absent: relaying is disabled.
    pub listen: Option<SocketAddr>,
    /// Address the focus gives peer bridges to dial; defaults to `listen`.
    /// Required when `listen` is a wildcard address.
    pub advertise: Option<SocketAddr>,
    /// PEM files: the cluster CA certificate, this bridge's certificate, and
    /// its private key. Relative paths are relative to the working directory.
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bridge ids refused on the relay whatever their certificates say, one
    /// per line (`#` starts a comment). Re-read while the bridge runs.
    pub revoked_file: Option<PathBuf>,
    /// How often the bridge looks at the credential files and the revoked
    /// list for changes (0: never, after startup).
    pub reload_interval_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: None,
            advertise: None,
            ca_cert: None,
            cert: None,
            key: None,
            revoked_file: None,
            // A rotated certificate or a revocation takes effect within
            // this; reading four small files this often costs nothing.
            reload_interval_ms: 10_000,
        }
    }
}

impl RelayConfig {
    /// Whether any relay setting asks for relaying or names credentials,
    /// i.e. whether the credential files deserve checking.
    pub fn is_configured(&self) -> bool {
        self.listen.is_some() || self.ca_cert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The address peers should dial.
    pub fn advertise_addr(&self) -> Option<SocketAddr> {
        self.advertise.or(self.listen)
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            media_listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
            advertise_addr: None,
            shards: 0,
            region: "local".into(),
            max_participants_per_conference: 80,
            id: String::new(),
            signal_url: String::new(),
            max_packet_rate: 50_000,
            focus_url: String::new(),
            focus_secret: String::new(),
            drain_timeout_secs: 30,
            ice_tcp: true,
            max_signal_connections_per_ip: 1000,
            recordings_dir: String::new(),
            udp_gso: true,
        }
    }
}

/// `tern focus`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FocusSection {
    /// gRPC: the allocation API and the bridges' control streams.
    pub grpc_listen: SocketAddr,
    /// HTTP: the browser client, `/join`, `/api/bridges`, `/health`.
    pub http_listen: SocketAddr,
    pub region: String,
    /// Regions close to each other, e.g. `[["eu-west", "eu-central"]]`.
    pub region_groups: Vec<Vec<String>>,
    /// `region` (Jicofo's order), `single` (one bridge per conference) or
    /// `split` (every participant on another bridge).
    pub strategy: String,
    /// Bearer token API clients must present.
    pub api_secret: String,
    /// Secret bridges must present.
    pub bridge_secret: String,
    pub participant_cap: usize,
    pub overload_stress: f64,
    pub max_joins_per_minute: Option<usize>,
    pub heartbeat_timeout_ms: u64,
    /// gRPC calls a second per peer address, sustained (0: no limit).
    pub grpc_rate_limit: u32,
    /// gRPC calls per peer address at once, on top of the sustained rate.
    pub grpc_rate_burst: u32,
}

impl Default for FocusSection {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            region: "local".into(),
            region_groups: Vec::new(),
            strategy: "region".into(),
            api_secret: String::new(),
            bridge_secret: String::new(),
            participant_cap: 80,
            overload_stress: 0.8,
            max_joins_per_minute: None,
            heartbeat_timeout_ms: 3000,
            // The caller is an application server placing many users (or
            // several behind one NAT address): a 2,000-person event
            // starting at once passes in the burst, and the sustained rate
            // is near what the focus serves with 1,000 bridges (~1,100
            // allocations a second, BENCHMARKS.md), so the limit is not
            // what slows a legitimate storm; it stops one address looping
            // (or hammering the secret check) without end. The benchmark
            // (examples/focus_bench.rs) turns it off.
            grpc_rate_limit: 1000,
            grpc_rate_burst: 2000,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            token_ttl_secs: 24 * 3600,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            codecs: vec![CodecName::Opus, CodecName::Vp8],
            default_max_height: 720,
            rtx_cache_packets: 512,
            rtx_cache_ms: 1000,
            talk_sensitivity: 55,
            talk_interval_ms: 2000,
            bandwidth_estimation: true,
            initial_estimate_kbps: 1000,
            max_probe_kbps: 10_000,
            camera_max_kbps: 2500,
            screen_max_kbps: 2500,
            mixing_workers: 1,
            mix_bitrate_kbps: 32,
            mix_video: true,
            mix_video_width: 640,
            mix_video_height: 360,
            mix_video_fps: 15,
            mix_video_kbps: 800,
        }
    }
}

impl Config {
    /// Load from an optional file plus the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
            ),
            None => ("defaults".to_string(), String::new()),
        };
        Self::from_parts(&origin, &text, std::env::vars())
    }

    /// Parse `text`, apply `TERN_*` overrides from `env`, validate.
    pub fn from_parts(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |origin: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        // Deserialize the file alone first: its errors carry line and column.
        toml::from_str::<Config>(text).map_err(|e| invalid(origin, e.to_string()))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(origin, e.to_string()))?;
        let mut overridden = false;
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("TERN_") else {
                continue;
            };
            if rest == "LOG" {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            let Some((section, field)) = lower.split_once('_') else {
                return Err(invalid(
                    "environment",
                    format!("{key}: expected TERN_<SECTION>_<KEY>"),
                ));
            };
            // Other TERN_* variables (test harness settings, say) are not
            // ours to judge; within a known section every key is checked.
            if !["bridge", "auth", "media", "focus", "relay", "turn"].contains(&section) {
                continue;
            }
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                return Err(invalid(origin, format!("`{section}` must be a table")));
            };
            // Numbers, booleans and arrays parse as TOML; anything else is a string.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            t.insert(field.to_string(), parsed);
            overridden = true;
        }
        let origin = if overridden {
            format!("{origin} with TERN_* environment overrides")
        } else {
            origin.to_string()
        };
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&origin, e.to_string()))?;
        cfg.validate().map_err(|m| invalid(&origin, m))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let t = &self.turn;
        if let Some(u) = t
            .urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return Err(format!(
                "turn.urls: {u:?} is not a turn: or turns: URL (RFC 7065)"
            ));
        }
        if !t.urls.is_empty() && t.secret.is_empty() {
            return Err(
                "turn.secret is empty but turn.urls is set (the TURN server's static-auth-secret)"
                    .into(),
            );
        }
        if !(60..=7 * 24 * 3600).contains(&t.ttl_secs) {
            return Err("turn.ttl_secs must be between 60 and 604800".into());
        }
        let b = &self.bridge;
        if b.media_listen.ip().is_unspecified() && b.advertise_addr.is_none() {
            return Err(
                "bridge.advertise_addr is required when bridge.media_listen is a wildcard address"
                    .into(),
            );
        }
        if b.max_participants_per_conference == 0 {
            return Err("bridge.max_participants_per_conference must be at least 1".into());
        }
        if b.shards > 64 {
            return Err("bridge.shards must be at most 64".into());
        }
        let m = &self.media;
        if !m.codecs.contains(&CodecName::Opus) {
            return Err("media.codecs must include \"opus\"".into());
        }
        if !m.codecs.iter().any(|c| *c != CodecName::Opus) {
            return Err(
                "media.codecs must include a video codec (\"vp8\", \"vp9\", \"h264\" or \"av1\")"
                    .into(),
            );
        }
        if !(64..=8192).contains(&m.rtx_cache_packets) {
            return Err("media.rtx_cache_packets must be between 64 and 8192".into());
        }
        if !(100..=10_000).contains(&m.rtx_cache_ms) {
            return Err("media.rtx_cache_ms must be between 100 and 10000".into());
        }
        if m.talk_sensitivity > 100 {
            return Err("media.talk_sensitivity must be between 0 and 100".into());
        }
        if !(300..=30_000).contains(&m.talk_interval_ms) {
            return Err("media.talk_interval_ms must be between 300 and 30000".into());
        }
        if !(100..=100_000).contains(&m.initial_estimate_kbps) {
            return Err("media.initial_estimate_kbps must be between 100 and 100000".into());
        }
        if !(m.initial_estimate_kbps..=1_000_000).contains(&m.max_probe_kbps) {
            return Err(
                "media.max_probe_kbps must be between media.initial_estimate_kbps and 1000000"
                    .into(),
            );
        }
        for (name, v) in [
            ("camera_max_kbps", m.camera_max_kbps),
            ("screen_max_kbps", m.screen_max_kbps),
        ] {
            let min = tern_sfu::core::MIN_SEND_CAP_BPS / 1000;
            if !(min..=100_000).contains(&v) {
                return Err(format!(
                    "media.{name} must be between {min} and 100000, not {v}"
                ));
            }
        }
        if !(1..=64).contains(&m.mixing_workers) {
            return Err(format!(
                "media.mixing_workers must be between 1 and 64, not {}",
                m.mixing_workers
            ));
        }
        if !(6..=510).contains(&m.mix_bitrate_kbps) {
            return Err(format!(
                "media.mix_bitrate_kbps must be between 6 and 510 (Opus's range), not {}",
                m.mix_bitrate_kbps
            ));
        }
        if !(16..=1920).contains(&m.mix_video_width)
            || !(16..=1080).contains(&m.mix_video_height)
            || !m.mix_video_width.is_multiple_of(2)
            || !m.mix_video_height.is_multiple_of(2)
        {
            return Err(format!(
                "media.mix_video_width x mix_video_height must be even, 16x16 to 1920x1080, not {}x{}",
                m.mix_video_width, m.mix_video_height
            ));
        }
        if !(1..=30).contains(&m.mix_video_fps) {
            return Err("media.mix_video_fps must be between 1 and 30".into());
        }
        if !(50..=10_000).contains(&m.mix_video_kbps) {
            return Err("media.mix_video_kbps must be between 50 and 10000".into());
        }
        if !["region", "single", "split"].contains(&self.focus.strategy.as_str()) {
            return Err(format!(
                "focus.strategy must be \"region\", \"single\" or \"split\", not {:?}",
                self.focus.strategy
            ));
        }
        if !(0.0..=10.0).contains(&self.focus.overload_stress) {
            return Err("focus.overload_stress must be between 0 and 10".into());
        }
        if self.focus.heartbeat_timeout_ms < 500 {
            return Err("focus.heartbeat_timeout_ms must be at least 500".into());
        }
        if self.focus.grpc_rate_limit > 0 && self.focus.grpc_rate_burst == 0 {
            return Err(
                "focus.grpc_rate_burst must be at least 1 while focus.grpc_rate_limit is set (0 turns the limit off)"
                    .into(),
            );
        }
        if self.bridge.max_packet_rate == 0 {
            return Err("bridge.max_packet_rate must be at least 1".into());
        }
        let url = &self.bridge.focus_url;
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !scheme_ok {
            return Err(format!(
                "bridge.focus_url must start with http:// or https://, not {:?}",
                self.bridge.focus_url
            ));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err("auth.token_ttl_secs must be at least 1".into());
        }
        let r = &self.relay;
        if let Some(listen) = r.listen {
            for (key, value) in [("ca_cert", &r.ca_cert), ("cert", &r.cert), ("key", &r.key)] {
                if value.is_none() {
                    return Err(format!("relay.{key} is required when relay.listen is set"));
                }
            }
            if listen.ip().is_unspecified() && r.advertise.is_none() {
                return Err(
                    "relay.advertise is required when relay.listen is a wildcard address".into(),
                );
            }
        } else if r.advertise.is_some() {
            return Err("relay.advertise is set but relay.listen is not".into());
        }
        if r.advertise
            .is_some_and(|a| a.ip().is_unspecified() || a.port() == 0)
        {
            return Err("relay.advertise must be a concrete address and port".into());
        }
        Ok(())
    }

    pub fn shard_count(&self) -> usize {
        match self.bridge.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests;
