//! The bridge core for one worker shard: every conference pinned to the shard,
//! its endpoints (one str0m `Rtc` each, RTP mode), and the forwarding between
//! them.
//!
//! Sans-IO: inputs are `handle_*` calls with the current `Instant`, outputs are
//! drained with [`Core::poll_output`] and [`Core::poll_timeout`]. No sockets,
//! no clocks, no tasks — the same core runs under the tokio shell and in the
//! deterministic simulation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Event;
use str0m::config::DtlsCert;
use str0m::ice::StunMessage;
use str0m::net::Protocol;
use str0m::rtp::SendNowTo;

use crate::CodecName;
use crate::admission::Admission;
use crate::signal::ServerMessage;
use crate::speech::TalkConfig;
use crate::stats::{CoreStats, DropReason};

pub use data::{DATA_BURST, DATA_LABEL, DATA_RATE, MAX_DATA_MESSAGE};

mod allocate;
mod bandwidth;
mod clocks;
pub(super) mod data;
mod forward;
mod lastn;
mod loss;
mod mixing;
mod model;
mod poll;
mod recording;
mod relay;
mod repair;
mod sender;
mod sent_map;
mod session;
mod slots;
mod speakers;
mod svc;
mod terms;
pub use bandwidth::{BandwidthConfig, MIN_SEND_CAP_BPS};
pub use loss::LossDirection;
pub use model::EndpointId;
use model::{Conference, Endpoint, Layer, Packet, PubSource, RecordMark, Slot, SourceRef};
pub use recording::{METADATA_FILE, RecordOutput, RecordingReport};
use relay::Relay;
pub use relay::{PeerId, RelaySource, shard_of_conference_number};
pub use sender::PAUSE_DELAY;

/// Maps whose iteration order is the same on every run (fixed hash keys):
/// the simulation replays a seed exactly only if the core iterates
/// deterministically. Keys are not attacker-chosen (ids, SSRCs behind an
/// authenticated endpoint, addresses after authentication).
type Map<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<std::hash::DefaultHasher>>;

/// How often the core revisits layer choices and pending switches.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// The largest RTP payload forwarded, from a local publisher or a relay
/// peer. str0m assembles each outgoing packet (header, extensions, RTX's
/// original sequence number, payload) in a 2,000-byte buffer and panics on a
/// payload that does not fit; real payloads are under ~1,200 bytes
/// (browsers) or ~1,400 (a relay datagram), and nothing larger than the
/// largest MTU str0m targets (1,500) reaches a receiver in one datagram.
pub const MAX_PAYLOAD: usize = 1500;

#[derive(Clone)]
pub struct CoreConfig {
    /// Index of this shard; prefixes ICE ufrags so the shell can route STUN.
    pub shard: u8,
    /// The local address of the media socket (destination of received datagrams).
    pub local_addr: SocketAddr,
    /// The address advertised to clients as the ICE host candidate.
    pub candidate_addr: SocketAddr,
    /// ICE-TCP (RFC 6544): a passive TCP host candidate at this address,
    /// for clients that cannot use UDP; the shell frames datagrams on its
    /// connections (RFC 4571). None: UDP only.
    pub tcp_candidate_addr: Option<SocketAddr>,
    /// One certificate for every endpoint: generating one per join costs ms.
    pub dtls_cert: DtlsCert,
    pub codecs: Vec<CodecName>,
    pub max_participants_per_conference: usize,
    pub default_max_height: u32,
    /// Outgoing video packets remembered per receive slot to answer NACKs
    /// with RTX (`repair.rs`); a source's one copy of each packet holds up
    /// to four times this.
    pub rtx_cache_packets: usize,
    /// How long a forwarded video packet can still be resent.
    pub rtx_cache_age: Duration,
    /// Talk detection for dominant speaker and speech-following slots.
    pub talk: TalkConfig,
    /// Bandwidth estimation, allocation and publishers' bitrate caps.
    pub bandwidth: BandwidthConfig,
    /// Mixed conferences get a composite video (their mixing workers
    /// compose one): their video is H.264, goes to the mixer and comes
    /// back as one stream on each receiver's first video slot. Off: video
    /// of mixed conferences is forwarded.
    pub composite: bool,
}

impl std::fmt::Debug for CoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreConfig")
            .field("shard", &self.shard)
            .field("local_addr", &self.local_addr)
            .field("candidate_addr", &self.candidate_addr)
            .field("codecs", &self.codecs)
            .finish_non_exhaustive()
    }
}

/// A participant the shell has authenticated.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub id: EndpointId,
    pub room: String,
    pub participant: String,
    pub name: String,
    /// ICE password for the endpoint. Randomness comes from the shell (a
    /// CSPRNG) or the simulation (a seed), never from the core.
    pub ice_password: String,
    /// The video codec the participant's token names for its conference
    /// (`None`: whatever the conference uses). The first joiner of a
    /// conference on this bridge decides it; a later join naming another is
    /// refused.
    pub video_codec: Option<CodecName>,
    /// Whether the participant may publish. A viewer's token says no: its
    /// offers may receive but not declare sources (`publish_not_allowed`).
    pub may_publish: bool,
    /// The participant's token names a mixed conference at this sample
    /// rate (`None`: a forwarding one). Like the codec, the first joiner
    /// decides the conference's mode; a join asking for the other mode or
    /// another rate is refused (`conference_mode`).
    pub mix_rate: Option<u32>,
    /// A mixed conference's composite (layout, size), as the token asks;
    /// decided by the first joiner like the mode.
    pub composite: tern_mixer::video::CompositeSpec,
}

/// Most datagram buffers a core keeps for reuse (`Core::recycle`): the
/// shell sends up to a few thousand datagrams per flush under load.
const EGRESS_POOL: usize = 512;

/// The capacity of a forwarded copy's buffer: any datagram str0m sends
/// fits. Smaller buffers given back (STUN answers, RTCP, sized to what they
/// hold) are not kept: a copy would grow them.
pub(super) const EGRESS_BUF: usize = 1500;

/// Hand the shell a datagram str0m sealed for a receiver, or take its
/// buffer back when str0m's pair is not an address the receiver proved.
/// str0m sends on the nominated pair, whose address answered a check and
/// was sent to first by `drive`; anything else would be a datagram to an
/// address that never proved itself.
fn transmit_sealed(
    out: &mut VecDeque<Output>,
    stats: &mut CoreStats,
    pool: &mut Vec<Vec<u8>>,
    proven: &[SocketAddr],
    to: &SendNowTo,
    buf: Vec<u8>,
) -> bool {
    if !proven.contains(&to.destination) {
        pool.push(buf);
        stats.drop(DropReason::Amplification);
        return false;
    }
    stats.packets_out += 1;
    stats.bytes_out += buf.len() as u64;
    out.push_back(Output::Transmit {
        destination: to.destination,
        contents: buf,
        tcp: to.proto == Protocol::Tcp,
    });
    true
}

/// What the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram from the media socket, or (`tcp`) as one frame on
    /// the ICE-TCP connection from `destination`.
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
        tcp: bool,
    },
    /// Send a signalling message to an endpoint's WebSocket.
    Signal {
        endpoint: EndpointId,
        /// Boxed: a message is ~136 bytes and rare, and an `Output` is as
        /// large as its largest variant, moved once per forwarded copy.
        message: Box<ServerMessage>,
    },
    /// Non-STUN datagrams from `addr` belong to this shard from now on.
    Bind { addr: SocketAddr },
    /// ...and no longer do.
    Unbind { addr: SocketAddr },
    /// The endpoint is gone; close its WebSocket after delivering what is queued.
    Closed { endpoint: EndpointId },
    /// Send a control message to a relay peer (reliable, in order).
    RelayControl {
        peer: PeerId,
        msg: tern_relay::msg::relay_control::Msg,
    },
    /// Send a media datagram to a relay peer (unreliable). The same bytes
    /// often go to several peers, hence shared.
    RelayDatagram { peer: PeerId, datagram: Arc<[u8]> },
    /// For the mixing worker of a mixed conference (`mixing.rs`): who is in
    /// its mix, and the audio to mix.
    Mix(tern_mixer::host::MixCommand),
    /// For the recordings directory (`recording.rs`): files to append to,
    /// close, and metadata to replace.
    Record(RecordOutput),
}

/// One shard's bridge state machine.
pub struct Core {
    cfg: CoreConfig,
    /// Boxed: an endpoint is ~11 KB (most of it str0m's `Rtc`), and a map
    /// holding them by value keeps up to twice its length in capacity and
    /// moves every endpoint when it grows.
    endpoints: Map<EndpointId, Box<Endpoint>>,
    conferences: Map<Arc<str>, Conference>,
    by_addr: Map<SocketAddr, EndpointId>,
    by_ufrag: Map<String, EndpointId>,
    /// What addresses not yet authenticated by ICE sent: the most they may
    /// be sent (`crate::limits::SendCredit`).
    unverified: crate::limits::SendCredit<SocketAddr>,
    out: VecDeque<Output>,
    /// Datagram buffers the shell gave back (`recycle`), for forwarded
    /// copies: a flush's worth, not one allocation per copy.
    egress_pool: Vec<Vec<u8>>,
    /// Scratch for `Core::confirm_delivered`: the packets one receiver's
    /// feedback confirmed.
    confirmed: Vec<(SourceRef, u32)>,
    events: VecDeque<(EndpointId, Event)>,
    /// Endpoint deadlines. An entry is stale when the endpoint's
    /// `next_timeout` has moved since; stale entries only cause a spurious
    /// wakeup and are skipped.
    timers: BinaryHeap<Reverse<(Instant, EndpointId)>>,
    due: Vec<EndpointId>,
    /// Receivers whose slot map changed and must be told.
    dirty_slots: Vec<EndpointId>,
    /// Endpoints written to and not yet polled.
    to_drive: Vec<EndpointId>,
    next_housekeeping: Instant,
    ufrag_counter: u64,
    stats: CoreStats,
    /// The relay to other bridges, and the participants it brings.
    relay: Relay,
    admission: Admission,
    loss: loss::LossSamples,
    /// Conferences recorded here (`recording.rs`), by room.
    recordings: Map<Arc<str>, Box<recording::ConfRecording>>,
    /// Recordings that ended lately, still reported (`recording.rs`).
    recordings_ended: VecDeque<(Instant, RecordingReport)>,
    /// Rooms recorded anywhere (the focus's notices), by room: the
    /// recording's id, told to participants here (`recording.rs`).
    recorded_rooms: Map<Arc<str>, Arc<str>>,
}

impl Core {
    pub fn new(cfg: CoreConfig, now: Instant) -> Self {
        let cfg_shard_prefix = cfg.shard;
        Self {
            cfg,
            endpoints: Map::default(),
            conferences: Map::default(),
            by_addr: Map::default(),
            by_ufrag: Map::default(),
            unverified: Default::default(),
            out: VecDeque::new(),
            egress_pool: Vec::new(),
            confirmed: Vec::new(),
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            dirty_slots: Vec::new(),
            to_drive: Vec::new(),
            next_housekeeping: now + HOUSEKEEPING,
            ufrag_counter: 0,
            stats: CoreStats::default(),
            relay: Relay::new(cfg_shard_prefix),
            admission: Admission::default(),
            loss: loss::LossSamples::default(),
            recordings: Map::default(),
            recordings_ended: VecDeque::new(),
            recorded_rooms: Map::default(),
        }
    }

    /// How far behind the shard is: the shell handled input the kernel
    /// received `lag` ago. Sustained lag refuses joins (`admission.rs`).
    pub fn handle_ingress_lag(&mut self, now: Instant, lag: Duration) {
        self.admission.handle_lag(now, lag);
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    /// Payload bytes the sources' repair caches hold (`repair.rs`).
    pub fn repair_payload_bytes(&self) -> usize {
        self.all_sources().map(|s| s.repair.payload_bytes()).sum()
    }

    /// The packets in the sources' repair windows, and how many of them
    /// still hold their payload (diagnostics; walks every cache).
    pub fn repair_window_counts(&self) -> (usize, usize) {
        self.all_sources()
            .map(|s| s.repair.counts())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// Copies sent that receivers' TWCC feedback has not covered yet
    /// (diagnostics, `repair.rs`).
    pub fn awaiting_feedback(&self) -> usize {
        self.endpoints.values().map(|e| e.awaiting.len()).sum()
    }

    fn all_sources(&self) -> impl Iterator<Item = &PubSource> {
        self.endpoints
            .values()
            .flat_map(|e| &e.sources)
            .chain(self.relay.remotes.values().flat_map(|r| &r.sources))
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    pub fn conference_count(&self) -> usize {
        self.conferences.len()
    }

    /// The shard an ICE ufrag belongs to (its first two hex digits).
    pub fn shard_of_ufrag(ufrag: &str) -> Option<u8> {
        ufrag.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok())
    }

    /// The local ufrag a STUN request is addressed to (`USERNAME` is
    /// `local:remote` from the receiver's point of view).
    pub fn stun_target_ufrag(datagram: &[u8]) -> Option<&str> {
        if !is_stun(datagram) {
            return None;
        }
        let msg = StunMessage::parse(datagram).ok()?;
        msg.username()
            .and_then(|u| u.split_once(':'))
            .map(|(local, _)| local)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Give back the buffer of a datagram the shell has sent, for the next
    /// forwarded copy. Kept up to `EGRESS_POOL` buffers: about what one
    /// flush sends, so an idle shard holds little.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.egress_pool.len() < EGRESS_POOL && buf.capacity() >= EGRESS_BUF {
            buf.clear();
            self.egress_pool.push(buf);
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        match self.timers.peek() {
            Some(Reverse((t, _))) => (*t).min(self.next_housekeeping),
            None => self.next_housekeeping,
        }
    }

    /// A source of a local endpoint or of a remote participant.
    fn source_of(&self, r: SourceRef) -> Option<&PubSource> {
        match self.endpoints.get(&r.endpoint) {
            Some(ep) => ep.source(r.mid),
            None => self.relay.remotes.get(&r.endpoint)?.source(r.mid),
        }
    }

    fn source_of_mut(&mut self, r: SourceRef) -> Option<&mut PubSource> {
        match self.endpoints.get_mut(&r.endpoint) {
            Some(ep) => ep.source_mut(r.mid),
            None => self.relay.remotes.get_mut(&r.endpoint)?.source_mut(r.mid),
        }
    }

    fn signal(&mut self, endpoint: EndpointId, message: ServerMessage) {
        self.out.push_back(Output::Signal {
            endpoint,
            message: Box::new(message),
        });
    }
}

/// STUN messages start with two zero bits and carry the magic cookie.
fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 2 && data[4..8] == [0x21, 0x12, 0xa4, 0x42]
}
