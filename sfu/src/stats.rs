//! Plain counters kept by the core; the shell exports them as metrics. Keeping
//! them here (not behind the `metrics` facade) keeps the per-packet path free
//! of registry lookups and the core free of global state.

/// Why a datagram or packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not STUN, from an address no endpoint has authenticated.
    UnknownSource,
    /// STUN for a ufrag no endpoint has.
    UnknownUfrag,
    /// Not a datagram str0m can classify, or an unparsable payload.
    Malformed,
    /// The endpoint's Rtc does not accept it (e.g. wrong ICE credentials).
    NotAccepted,
    /// str0m refused it (e.g. SRTP authentication failed).
    RtcError,
    /// RTP for an SSRC/mid that is not a declared source.
    UnknownStream,
    /// The receiver did not negotiate the codec.
    NoCodec,
    /// The receive slot has no send stream (negotiation incomplete).
    NoSlotStream,
    /// An RTP payload larger than any receiver can be sent (`MAX_PAYLOAD`).
    TooLarge,
    /// A packet of the layer a receiver now gets that arrived after the
    /// switch to it but precedes the switch point (reordered, or a late
    /// retransmission, often over the relay): its number has no place in
    /// the receiver's sequence. Counted per receiver.
    BeforeSwitch,
    /// A datagram to an address that has not proven itself (ICE) larger
    /// than what that address sent: the bridge is no amplifier.
    Amplification,
    /// Media for a receiver whose connection (ICE, DTLS) is not up: str0m
    /// would queue it without bound until it is, then send it all at once,
    /// stale. Counted per receiver.
    NotConnected,
    /// A layer a receiver is being switched down from because it costs
    /// more than the receiver's whole bandwidth estimate: not forwarded
    /// while the switch waits for the lower layer's keyframe. Counted per
    /// receiver.
    Draining,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::UnknownSource,
        DropReason::UnknownUfrag,
        DropReason::Malformed,
        DropReason::NotAccepted,
        DropReason::RtcError,
        DropReason::UnknownStream,
        DropReason::NoCodec,
        DropReason::NoSlotStream,
        DropReason::TooLarge,
        DropReason::BeforeSwitch,
        DropReason::Amplification,
        DropReason::NotConnected,
        DropReason::Draining,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::Malformed => "malformed",
            DropReason::NotAccepted => "not_accepted",
            DropReason::RtcError => "rtc_error",
            DropReason::UnknownStream => "unknown_stream",
            DropReason::NoCodec => "no_codec",
            DropReason::NoSlotStream => "no_slot_stream",
            DropReason::TooLarge => "too_large",
            DropReason::BeforeSwitch => "before_switch",
            DropReason::Amplification => "amplification",
            DropReason::NotConnected => "not_connected",
            DropReason::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Room data channel messages taken from senders (and relay peers).
    pub data_in: u64,
    /// Room data channel messages written to receivers.
    pub data_out: u64,
    pub data_dropped: [u64; DataDrop::ALL.len()],
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_forwarded: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    /// Packets receivers NACKed on forwarded video (`core/repair.rs`)...
    pub repairs_asked: u64,
    /// ...resent from the source's copy,
    pub repairs_sent: u64,
    /// ...no longer kept (older than the repair window) or not resendable,
    pub repairs_expired: u64,
    /// ...and refused because resends already took the receiver stream's
    /// share (`RTX_RATIO_CAP`).
    pub repairs_capped: u64,
    /// ...and not resent because the receiver had reported the packet
    /// received (its NACK crossed its own TWCC feedback).
    pub repairs_unneeded: u64,
    /// Forwarded video packets kept for repairs, once each however many
    /// receivers were sent it (a layer nobody is sent is not kept).
    pub repair_copies_kept: u64,
    /// ...whose payload was let go before the repair window ended, because
    /// every receiver it was sent to reported it received (TWCC).
    pub repair_copies_released: u64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_throttled: u64,
    pub layer_switches: u64,
    /// VP9 SVC packets left out above a receiver's spatial layer
    /// (`core/svc.rs`).
    pub svc_skipped: u64,
    /// Silent audio packets not forwarded (`speech/silence.rs`).
    pub silence_suppressed: u64,
    /// RED (RFC 2198) audio packets received from publishers.
    pub red_in: u64,
    /// ...forwarded as RED (the receiver negotiated it), and as their
    /// primary block alone (it did not).
    pub red_out: u64,
    pub red_out_primary: u64,
    /// Audio receive slots given to a different source as speech moved.
    pub audio_slot_switches: u64,
    /// Video receive slots given to a different source (last-N, on stage).
    pub video_slot_switches: u64,
    /// Dominant speaker changes.
    pub dominant_speaker_changes: u64,
    /// Sender constraints sent to publishers (`sender_constraints` messages).
    pub sender_constraints: u64,
    /// Bandwidth estimates taken from receivers' feedback (TWCC, REMB).
    pub bandwidth_estimates: u64,
    /// Times a receiver's BWE was asked to probe above its estimate.
    pub bandwidth_probes: u64,
    /// Video slots whose target layer allocation changed (a layer, a
    /// suspension or a resumption).
    pub allocation_changes: u64,
    /// Video slots suspended because their source did not fit.
    pub suspensions: u64,
    pub joins: u64,
    /// Joins refused because the room reached its size limit here.
    pub joins_refused_room_full: u64,
    /// Joins refused because the shard was behind (`admission.rs`).
    pub joins_refused_overloaded: u64,
    /// Joins refused for their token's video codec (`UnsupportedCodec`).
    pub joins_refused_codec: u64,
    /// Joins whose token asked for the other conference mode (mixed or
    /// forwarding) or another mixing rate than the conference's.
    pub joins_refused_mode: u64,
    /// Audio packets of mixed conferences handed to their mixing worker.
    pub mix_packets_in: u64,
    /// Mixed frames written to receivers.
    pub mix_frames_out: u64,
    /// Mixed frames for receivers gone meanwhile.
    pub mix_frames_stale: u64,
    /// Recordings started and failed (a write the shell could not make).
    pub recordings_started: u64,
    pub recordings_failed: u64,
    /// Sources left out of a recording: their codec is not VP8 or Opus.
    pub recording_unsupported: u64,
    /// Recorded tracks placed by their first frame's arrival: no sender
    /// report from their publisher in time.
    pub recording_tracks_by_arrival: u64,
    /// Packets handed to recorders.
    pub recorded_packets: u64,
    /// Participants the mixer dropped because their audio did not decode.
    pub mix_inputs_dropped: u64,
    /// Publishers' video packets handed to the composite.
    pub composite_packets_in: u64,
    /// Composite packets written to receivers (each copy counted).
    pub composite_packets_out: u64,
    /// Times an endpoint's connection was polled: after its input, when
    /// its timer was due, or after the core changed it (not for forwarded
    /// copies; `core/poll.rs`).
    pub polls: u64,
    /// Of `polls`, those its own timer brought (`Core::handle_timeout`):
    /// str0m's periodic work (the send-side estimator every 25 ms while
    /// media flows, the pacer, reports): a cost per connection beside the
    /// copies it is sent.
    pub timer_polls: u64,
    pub leaves: u64,
    pub connects: u64,
    pub ice_disconnects: u64,
    pub relay: RelayStats,
}

/// Relay traffic of this core (see `core/relay.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// Datagrams sent again in answer to a peer's NACK.
    pub retransmissions: u64,
    /// NACKed packets no longer (or never) in the cache.
    pub nack_misses: u64,
    /// Sequence numbers this bridge asked peers to resend.
    pub nacks_sent: u64,
    /// Holes on incoming relay legs filled after a NACK, and given up on.
    pub repaired: u64,
    pub lost: u64,
    pub control_in: u64,
    /// Datagrams dropped, by reason: malformed, unknown conference, unknown
    /// source or layer, duplicate.
    pub dropped_malformed: u64,
    pub dropped_unknown: u64,
    pub dropped_duplicate: u64,
    /// Control messages naming conferences or sources this bridge does not know.
    pub control_unknown: u64,
    /// Announcements beyond what a peer may announce (participants per
    /// conference, sources per participant, layers per source), ignored.
    pub control_refused: u64,
}

impl CoreStats {
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    pub fn data_drop(&mut self, reason: DataDrop) {
        self.data_dropped[reason as usize] += 1;
    }

    pub fn data_dropped(&self, reason: DataDrop) -> u64 {
        self.data_dropped[reason as usize]
    }
}

/// Why the bridge did not carry a data channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDrop {
    TooLarge,
    NotText,
    RateLimited,
    /// A channel with another label, or before the room channel opened.
    UnknownChannel,
    /// A receiver's channel buffer was full.
    ReceiverFull,
    /// From a relay peer: a conference or size this bridge does not accept.
    Relay,
}

impl DataDrop {
    pub const ALL: [DataDrop; 6] = [
        DataDrop::TooLarge,
        DataDrop::NotText,
        DataDrop::RateLimited,
        DataDrop::UnknownChannel,
        DataDrop::ReceiverFull,
        DataDrop::Relay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataDrop::TooLarge => "too_large",
            DataDrop::NotText => "not_text",
            DataDrop::RateLimited => "rate_limited",
            DataDrop::UnknownChannel => "unknown_channel",
            DataDrop::ReceiverFull => "receiver_full",
            DataDrop::Relay => "relay",
        }
    }
}
