//! What a simulated cluster is made of: [`SimConfig`].

use std::time::Duration;

use tern_focus::FocusConfig;
use tern_sfu::CoreConfig;

use crate::LinkConfig;

/// Simulation parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub room: String,
    pub bridge_config: fn(CoreConfig) -> CoreConfig,
    /// Bandwidth estimation on the bridges (off unless a scenario is about
    /// it). Reproduced by its seed like everything else since str0m's
    /// stream maps hash with fixed keys (patches/README.md): which stream a
    /// probe pads on used to follow a per-process random order.
    pub bandwidth_estimation: bool,
    /// Bridges in the cluster, joined in a full relay mesh that shares `room`.
    pub bridges: usize,
    /// Each direction of every relay connection.
    pub relay_link: LinkConfig,
    /// Place participants with a focus (else everyone joins the bridge the
    /// scenario names, and every bridge is told the others share the room).
    pub focus: Option<FocusConfig>,
    /// Region of bridge `b` (`"local"` beyond the list).
    pub regions: Vec<String>,
    /// One-way delay of the bridge ↔ focus control streams.
    pub focus_latency: Duration,
    /// Worker shards per bridge.
    pub shards: usize,
    /// Without a focus: rooms besides `room` that every bridge is told the
    /// others host too (join them with [`Sim::add_peer_to_room`]).
    pub other_rooms: Vec<String>,
    /// The largest datagram a relay connection takes (told to the nodes
    /// as quinn's `max_datagram_size` would be); `None`: any.
    pub relay_max_datagram: Option<usize>,
    /// Participants' tokens name a mixed conference at this rate (`None`:
    /// forwarding).
    pub mix_rate: Option<u32>,
    /// Mixed conferences get a composite video of this size and rate
    /// (OpenH264, run inline like the audio mixer); `None`: their video is
    /// forwarded.
    pub composite: Option<tern_mixer::video::VideoConfig>,
    /// What the tokens ask of the composite (layout, size).
    pub mix_video: tern_mixer::video::CompositeSpec,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            room: "sim".into(),
            bridge_config: |c| c,
            bandwidth_estimation: false,
            bridges: 1,
            relay_link: LinkConfig::latency(5),
            focus: None,
            regions: Vec::new(),
            focus_latency: Duration::from_millis(2),
            shards: 1,
            other_rooms: Vec::new(),
            relay_max_datagram: None,
            mix_rate: None,
            composite: None,
            mix_video: Default::default(),
        }
    }

    /// A cluster of `bridges` in `regions` placed by a focus with `focus`.
    pub fn with_focus(mut self, bridges: usize, regions: &[&str], focus: FocusConfig) -> Self {
        self.bridges = bridges;
        self.regions = regions.iter().map(|r| r.to_string()).collect();
        self.focus = Some(focus);
        self
    }
}
