//! What a simulated participant has observed: every packet per receive slot,
//! the participants and sources it was told about, the RTCP it sent and
//! what its decoders showed. Written by [`crate::Peer`]; read by tests, the
//! simulator and the load tool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// One RTP packet as received on a slot.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub seq: u64,
    pub ts: u32,
    pub pid: Option<u16>,
    pub keyframe: bool,
    /// Height from a keyframe header.
    pub height: Option<u16>,
    pub layer: Option<u8>,
    pub frame: Option<u32>,
    pub index: u16,
    pub count: u16,
    pub at: Instant,
    /// When the publisher generated it, as offset from its generator start.
    pub sent_us: Option<u64>,
    pub audio_level: Option<i8>,
    /// Which publisher sent it ([`crate::synth::audio_tag`]).
    pub tag: Option<u32>,
}

/// Everything the peer has observed.
/// One video packet as received (`PeerConfig::record_video`).
#[derive(Debug, Clone)]
pub struct HeardVideo {
    pub at: Instant,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// One Opus packet as received (`PeerConfig::record_audio`).
#[derive(Debug, Clone)]
pub struct HeardAudio {
    pub at: Instant,
    pub ts: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct PeerState {
    pub participant_id: Option<String>,
    /// The room's recording as the bridge last told (its id), if any.
    pub recording: Option<String>,
    pub joined: bool,
    pub connected: bool,
    /// Remote participants by id → their source ids.
    pub participants: BTreeMap<String, Vec<String>>,
    /// Slot mid → source id.
    pub slots: HashMap<String, Option<String>>,
    pub received: HashMap<String, Vec<Received>>,
    /// Packets received in earlier sessions (before [`Peer::reconnect`]),
    /// by source id: slots and their mids start afresh on every session.
    pub history: HashMap<String, Vec<Received>>,
    /// Sessions started after the first one.
    pub reconnects: u32,
    /// Slots (by mid) the bridge says are paused for lack of bandwidth.
    pub suspended: HashSet<String>,
    /// The (camera, screen) bitrate caps the bridge told this publisher.
    pub send_limits: Option<(u64, u64)>,
    /// The camera's sender constraint from the bridge (`None`: all layers).
    pub sender_max_height: Option<u32>,
    /// Video packets sent per simulcast layer.
    pub video_sent_by_layer: Vec<u64>,
    /// Keyframe requests the bridge sent this publisher, per layer rid.
    pub keyframe_requests: HashMap<String, u64>,
    /// NACKs the bridge sent this publisher per (mid, rid) (cumulative).
    pub nacks_by_stream: HashMap<String, u64>,
    /// When each video slot (by mid) could show a frame: complete, and
    /// every frame before it shown (see [`crate::decoder`]).
    pub decoded: HashMap<String, Vec<Instant>>,
    /// [`PeerState::decoded`] of earlier sessions, by source id.
    pub decoded_history: HashMap<String, Vec<Instant>>,
    /// Keyframe requests (PLIs) this peer sent as a receiver, per slot mid.
    pub plis_sent: HashMap<String, u64>,
    /// RTCP sent, by kind ("rr", "twcc", "nack", "pli", ...), when
    /// [`PeerConfig::record_rtcp`] is on.
    pub rtcp_sent: BTreeMap<&'static str, u64>,
    /// Sender reports received, by slot mid: when, and what they said.
    pub sender_reports: HashMap<String, Vec<(Instant, str0m::rtp::rtcp::SenderInfo)>>,
    /// Every `dominant_speaker` told, with when.
    pub dominant: Vec<(Instant, Option<String>)>,
    /// The last `recent` list told.
    pub recent_speakers: Vec<String>,
    /// Who the bridge last said is speaking, with their level.
    pub speaking: Vec<(String, u8)>,
    pub errors: Vec<(String, String)>,
    pub packets_sent: u64,
    /// With `record_audio`: every Opus packet received, by slot mid.
    pub audio_payloads: HashMap<String, Vec<HeardAudio>>,
    /// With `record_video`: every video packet received, by slot mid.
    pub video_packets: HashMap<String, Vec<HeardVideo>>,
    /// A mixed conference's composite: its size and tiles, as last told.
    pub composite: Option<(u32, u32, Vec<tern_sfu::signal::CompositeTile>)>,
    pub answered: bool,
    pub closed: bool,
}

impl PeerState {
    /// Packets received for a source, on whichever slot carries it now.
    pub fn received_for(&self, source: &str) -> &[Received] {
        self.slot_of(source)
            .and_then(|mid| self.received.get(&mid))
            .map_or(&[], Vec::as_slice)
    }

    /// Everything received for a source over every session, in arrival order.
    pub fn received_all(&self, source: &str) -> Vec<Received> {
        let mut all = self.history.get(source).cloned().unwrap_or_default();
        all.extend_from_slice(self.received_for(source));
        all
    }

    pub fn slot_of(&self, source: &str) -> Option<String> {
        self.slots
            .iter()
            .find(|(_, s)| s.as_deref() == Some(source))
            .map(|(m, _)| m.clone())
    }

    /// When frames of a source could be shown, over every session.
    pub fn decoded_all(&self, source: &str) -> Vec<Instant> {
        let mut all = self
            .decoded_history
            .get(source)
            .cloned()
            .unwrap_or_default();
        if let Some(d) = self.slot_of(source).and_then(|m| self.decoded.get(&m)) {
            all.extend_from_slice(d);
        }
        all
    }

    pub fn plis_sent_total(&self) -> u64 {
        self.plis_sent.values().sum()
    }

    pub fn nacks_received(&self) -> u64 {
        self.nacks_by_stream.values().sum()
    }
}
