//! The bridge's data model: endpoints, the sources they publish (with their
//! simulcast layers), the receive slots they watch through, conferences, and
//! the packet a source's media travels in. Plain data and the accessors that
//! read it; what happens to it (sessions, allocation, forwarding, the relay)
//! lives in the sibling modules, and nothing here queues output.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, Ssrc};

use super::bandwidth::Bandwidth;
use super::clocks::SenderClock;
use super::data::DataState;
use super::relay::PeerId;
use super::repair::Awaiting;
use super::{Map, sender};
use crate::CodecName;
use crate::allocation::{LayerCost, default_bitrate_bps};
use crate::keyframe::{ReceiverBudget, SourceGate};
use crate::rate::RateMeter;
use crate::rewrite::Rewriter;
use crate::signal::{Kind, ParticipantInfo, SourceInfo};
use crate::speech::silence::SilenceGate;
use crate::speech::{Speech, TalkConfig};

/// Identifies an endpoint (one participant's connection) across the bridge.
/// The shell allocates them; the core never invents one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u64);

impl std::fmt::Display for EndpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ep{}", self.0)
    }
}

/// A layer that sent nothing for this long is not chosen.
const LAYER_IDLE: Duration = Duration::from_millis(1000);

/// One media packet of a source, however it reached this bridge.
pub(super) struct Packet {
    pub(super) source: SourceRef,
    pub(super) layer: usize,
    pub(super) codec: Codec,
    /// The payload is RFC 2198 RED around `codec` (Opus from a browser):
    /// forwarded as is where the receiver negotiated RED, as its primary
    /// block elsewhere.
    pub(super) red: bool,
    /// Extended sequence number of the layer's stream.
    pub(super) seq: u64,
    pub(super) ts: u32,
    pub(super) marker: bool,
    pub(super) ext: ExtensionValues,
    pub(super) payload: Arc<[u8]>,
    pub(super) wallclock: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourceRef {
    pub(super) endpoint: EndpointId,
    pub(super) mid: Mid,
}

#[derive(Debug)]
pub(super) struct Layer {
    pub(super) rid: Option<Rid>,
    pub(super) declared_height: u32,
    pub(super) measured_height: Option<u32>,
    pub(super) last_packet: Option<Instant>,
    pub(super) gate: SourceGate,
    /// For a remote source: whether its origin says the layer is being sent
    /// (only demanded layers reach this bridge, so packets cannot tell).
    pub(super) remote_active: Option<bool>,
    /// For a local source sent over the relay: recent datagrams of this
    /// layer, to answer NACKs from peers.
    pub(super) relay_cache: Option<tern_relay::repair::SendCache>,
    /// Above the sender constraint its publisher was told (`sender.rs`).
    pub(super) paused: bool,
    /// When the constraint last let it flow again.
    pub(super) resumed_at: Option<Instant>,
    /// How fast it arrives here (`bandwidth.rs`).
    pub(super) rate: RateMeter,
    /// For a remote source: the rate its origin measured (relay announce).
    pub(super) announced_bps: Option<u64>,
    /// For a local source: the rate last announced to relay peers (0: none).
    pub(super) relay_bps_sent: u64,
    /// What the publisher's latest sender report says of this layer's
    /// RTP clock (from the origin, for a remote source).
    pub(super) sender_clock: Option<SenderClock>,
    /// For a local source: the clock last sent to relay peers.
    pub(super) clock_relayed: Option<SenderClock>,
}

impl Layer {
    pub(super) fn new(rid: Option<Rid>, declared_height: u32) -> Self {
        Self {
            rid,
            declared_height,
            measured_height: None,
            last_packet: None,
            gate: SourceGate::default(),
            remote_active: None,
            relay_cache: None,
            paused: false,
            resumed_at: None,
            rate: RateMeter::new(),
            announced_bps: None,
            relay_bps_sent: 0,
            sender_clock: None,
            clock_relayed: None,
        }
    }

    pub(super) fn is_active(&self, now: Instant) -> bool {
        self.remote_active.unwrap_or_else(|| {
            self.last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
        })
    }

    pub(super) fn height(&self) -> u32 {
        self.measured_height.unwrap_or(self.declared_height)
    }

    /// What forwarding this layer costs a receiver: its rate here while it
    /// flows, else what its origin announced, else its last rate, else a
    /// default for its height. A layer measured well above `cap` is not
    /// offered (unless `lowest`: a receiver always gets something).
    pub(super) fn cost(&self, now: Instant, cap: u64, lowest: bool) -> LayerCost {
        let bitrate_bps = self
            .rate
            .current_bps()
            .or(self.announced_bps)
            .or(self.rate.last_bps())
            .unwrap_or_else(|| default_bitrate_bps(self.height()));
        let over_cap = bitrate_bps as f64 > cap as f64 * CAP_TOLERANCE;
        LayerCost {
            height: self.height(),
            active: self.available(now) && (lowest || !over_cap),
            bitrate_bps,
        }
    }
}

/// A layer measured this far above its cap is not forwarded: the publisher
/// was told the cap, and a little over covers keyframes and rate control.
const CAP_TOLERANCE: f64 = 1.25;

#[derive(Debug)]
pub(super) struct PubSource {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) mid: Mid,
    pub(super) muted: bool,
    pub(super) layers: Vec<Layer>,
    /// One VP9 stream carrying every spatial layer (SVC): `layers` are its
    /// spatial layers, lowest first, all arriving on the stream of
    /// `layers[0]`, and a receiver's layer is chosen by leaving out the
    /// packets above it (`svc.rs`). Found from the stream itself.
    pub(super) svc: bool,
    /// Receive slots this source is mapped to: (receiver, slot index).
    pub(super) subscribers: Vec<(EndpointId, usize)>,
    /// Number on relay links (see `docs/relay-protocol.md`): chosen by this
    /// bridge for its local sources, by the origin for remote ones.
    pub(super) relay_number: u16,
    /// Local source: relay peers that want it, with the layers they want.
    pub(super) relay_demand: Vec<(PeerId, u32)>,
    /// Local source: layer activity last told to relay peers (bit per layer).
    pub(super) relay_active_sent: u32,
    /// Local source: when its layers were last announced to relay peers
    /// (bitrate changes are re-announced at most once per `RATE_ANNOUNCE`).
    pub(super) relay_sent_at: Option<Instant>,
    /// Local video source: what its publisher was told to send.
    pub(super) constraint: sender::SendConstraint,
    /// Local audio source: silence suppression.
    pub(super) silence: SilenceGate,
    /// Whether its conference is recorded here, and the layer wanted.
    pub(super) record: RecordMark,
    /// Video: one copy of each packet forwarded, for receivers' NACKs.
    pub(super) repair: super::repair::SourceCache,
}

impl PubSource {
    pub(super) fn info(&self, participant: &str) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            participant: participant.to_owned(),
            name: self.name.clone(),
            kind: self.kind,
            muted: self.muted,
        }
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) mid: Mid,
    pub(super) kind: Kind,
    pub(super) source: Option<SourceRef>,
    /// Layer being forwarded now.
    pub(super) current: Option<usize>,
    /// Layer wanted; forwarding switches to it at its next keyframe.
    pub(super) target: Option<usize>,
    pub(super) switch_requested: Option<Instant>,
    pub(super) rewriter: Rewriter,
    /// SSRC of the slot's str0m send stream, once looked up: str0m finds a
    /// stream by mid with a scan of every stream, by SSRC with a hash.
    pub(super) tx_ssrc: Option<Ssrc>,
    /// Its source is wanted but does not fit the receiver's bandwidth.
    pub(super) suspended: bool,
    /// After a switch down: when to ask for one more keyframe (see
    /// `allocate.rs`).
    pub(super) confirm_keyframe_at: Option<Instant>,
    /// The last switch up: when, to which layer, and what that layer cost
    /// then (see `UP_SETTLE` in `allocate.rs`).
    pub(super) raised: Option<(Instant, usize, u64)>,
    /// Switching down from a layer the receiver's link cannot carry at all:
    /// that layer is no longer forwarded while the switch waits for the
    /// target's keyframe (see `allocate.rs`).
    pub(super) draining: bool,
    /// Video: what went out under each sequence number, for NACKs.
    pub(super) sent: super::sent_map::SentMap<SourceRef>,
}

impl Slot {
    pub(super) fn new(mid: Mid, kind: Kind) -> Self {
        Self {
            mid,
            kind,
            source: None,
            current: None,
            target: None,
            switch_requested: None,
            tx_ssrc: None,
            suspended: false,
            confirm_keyframe_at: None,
            raised: None,
            draining: false,
            sent: Default::default(),
            rewriter: match kind {
                Kind::Audio => Rewriter::audio(),
                Kind::Video => Rewriter::video(),
            },
        }
    }

    pub(super) fn detach(&mut self) {
        self.source = None;
        self.current = None;
        self.target = None;
        self.switch_requested = None;
        self.suspended = false;
        self.confirm_keyframe_at = None;
        self.raised = None;
        self.draining = false;
        self.rewriter.unmap();
    }
}

pub(super) struct Endpoint {
    pub(super) id: EndpointId,
    pub(super) room: Arc<str>,
    pub(super) participant: String,
    pub(super) name: String,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) next_timeout: Instant,
    pub(super) joined_at: Instant,
    /// False for a viewer (its token's `publish` claim).
    pub(super) may_publish: bool,
    /// Its conference is mixed (at this rate): its audio goes to the
    /// mixer, and its first audio slot carries its mix (`mixing.rs`).
    pub(super) mixed: Option<u32>,
    /// The next sequence number of the mix it receives.
    pub(super) mix_seq: u64,
    /// ... and of the composite video.
    pub(super) composite_seq: u64,
    pub(super) sources: Vec<PubSource>,
    /// Incoming SSRC → (source mid, layer index), filled on first sight.
    pub(super) ssrc_map: Map<Ssrc, (Mid, usize)>,
    pub(super) slots: Vec<Slot>,
    pub(super) default_max_height: u32,
    pub(super) max_height: Map<String, u32>,
    /// What the receiver asked to see (`lastn.rs`).
    pub(super) view: View,
    pub(super) budget: ReceiverBudget,
    /// Its estimated bandwidth and what was allocated within it.
    pub(super) bw: Bandwidth,
    /// Its room data channel (`data.rs`).
    pub(super) data: DataState,
    pub(super) slots_dirty: bool,
    /// Written to since last polled (see `Core::settle`).
    pub(super) needs_drive: bool,
    pub(super) closing: bool,
    /// Video copies sent to it that its TWCC feedback has not covered yet,
    /// oldest first (`repair.rs`, `Core::confirm_delivered`).
    pub(super) awaiting: VecDeque<Awaiting>,
    /// Its TWCC feedback has reported on a copy (it may await more).
    pub(super) confirms: bool,
}

impl Endpoint {
    pub(super) fn participant_info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.participant.clone(),
            name: self.name.clone(),
            sources: self
                .sources
                .iter()
                .map(|s| s.info(&self.participant))
                .collect(),
        }
    }

    pub(super) fn source_mut(&mut self, mid: Mid) -> Option<&mut PubSource> {
        self.sources.iter_mut().find(|s| s.mid == mid)
    }

    pub(super) fn source(&self, mid: Mid) -> Option<&PubSource> {
        self.sources.iter().find(|s| s.mid == mid)
    }

    /// An explicit height for the source, else the on-stage height if it
    /// is on stage, else the default.
    pub(super) fn max_height_for(&self, source_id: &str) -> u32 {
        if let Some(h) = self.max_height.get(source_id) {
            return *h;
        }
        if self.view.on_stage.iter().any(|s| s == source_id) {
            return self.view.on_stage_max_height;
        }
        self.default_max_height
    }

    pub(super) fn pt_for(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// The RED payload type this endpoint negotiated for `codec` (None:
    /// it did not offer RED, or not for this codec).
    pub(super) fn red_pt_for(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .and_then(|p| p.red())
    }

    /// The codec `pt` carries inside RED, if `pt` is a RED payload type.
    pub(super) fn red_codec_of(&self, pt: Pt) -> Option<Codec> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.red() == Some(pt))
            .map(|p| p.spec().codec)
    }

    pub(super) fn codec_of(&self, pt: Pt) -> Option<Codec> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == pt)
            .map(|p| p.spec().codec)
    }
}

/// A receiver's choices of what to see (JVB's receiver constraints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct View {
    /// Show at most this many video sources (`None`: as many as slots).
    pub(super) last_n: Option<usize>,
    /// Source ids always shown.
    pub(super) selected: Vec<String>,
    /// Source ids always shown, at `on_stage_max_height`.
    pub(super) on_stage: Vec<String>,
    pub(super) on_stage_max_height: u32,
}

impl Default for View {
    fn default() -> Self {
        Self {
            last_n: None,
            selected: Vec::new(),
            on_stage: Vec::new(),
            on_stage_max_height: 720,
        }
    }
}

#[derive(Debug)]
pub(super) struct Conference {
    /// Endpoints in join order.
    pub(super) endpoints: Vec<EndpointId>,
    /// Who speaks, local and remote participants alike.
    pub(super) speech: Speech<EndpointId>,
    /// The dominant speaker and recent list last told (`speakers.rs`).
    pub(super) told: (Option<EndpointId>, Vec<EndpointId>),
    /// Participants told as speaking last, with their level.
    pub(super) levels_told: Vec<(EndpointId, u8)>,
    /// The one video codec this conference negotiates, as its first
    /// joiner's token asked; `None`: every video codec the bridge offers.
    pub(super) video_codec: Option<CodecName>,
    /// A mixed conference's sample rate, as its first joiner's token asked;
    /// `None`: a forwarding conference. Fixed for the conference's life.
    pub(super) mixed: Option<u32>,
    /// Its composite, as its first joiner's token asked.
    pub(super) composite: tern_mixer::video::CompositeSpec,
}

impl Conference {
    pub(super) fn new(
        talk: TalkConfig,
        video_codec: Option<CodecName>,
        mixed: Option<u32>,
        composite: tern_mixer::video::CompositeSpec,
    ) -> Self {
        Self {
            video_codec,
            mixed,
            composite,
            endpoints: Vec::new(),
            speech: Speech::new(talk),
            // Nobody dominant and nobody recent is what clients assume:
            // the first message goes out when someone speaks.
            told: (None, Vec::new()),
            levels_told: Vec::new(),
        }
    }
}

/// What a source carries for the recording (kept on the source so the
/// per-packet check is one field).
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::core) struct RecordMark {
    /// Its conference is being recorded here.
    pub(in crate::core) on: bool,
    /// Video: the layers the recording wants (one bit), for sender
    /// constraints and relay demand.
    pub(in crate::core) layers: u32,
}
