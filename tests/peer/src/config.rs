//! How a simulated participant is set up: its address, what it publishes,
//! how it paces video and what it records. Plain data; the [`crate::Peer`]
//! reads it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::synth::LayerSpec;

#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub audio: bool,
    /// Simulcast layers of the video source; empty = no video.
    pub video: Vec<LayerSpec>,
    /// The video source's name: "camera", or "screen" for a screen share
    /// (the bridge ranks and caps those apart).
    pub video_source: String,
    pub audio_slots: usize,
    pub video_slots: usize,
    /// The peer's own media address (its ICE host candidate).
    pub local_addr: SocketAddr,
    /// How long the publisher takes to answer a keyframe request (encoder
    /// plus a network round trip).
    pub keyframe_response_delay: Duration,
    /// Periodic keyframes, as encoders send them.
    pub keyframe_interval: Duration,
    pub seed: u64,
    /// Spread video over time as a browser's pacer does; `None` writes each
    /// frame at once (the simulator's default: fewer wakeups, and its links
    /// model queues themselves).
    pub pacing: Option<Pacing>,
    /// Count the RTCP this peer sends, by kind ([`PeerState::rtcp_sent`]).
    /// str0m then copies every packet it sends and receives: tests only.
    pub record_rtcp: bool,
    /// When the participant speaks (`None`: its audio is one steady level,
    /// always speaking).
    pub talk: Option<crate::synth::Talk>,
    /// Publish real Opus carrying a sine at this frequency (Hz) instead of
    /// Opus-sized synthetic payloads (which no decoder takes): for mixing.
    pub tone_hz: Option<f32>,
    /// Keep every received Opus payload ([`PeerState::audio_payloads`]) so
    /// a test can decode what it heard.
    pub record_audio: bool,
    /// Publish audio no Opus decoder takes (a code-3 packet declaring zero
    /// frames, RFC 6716 3.2.5): a broken or hostile client.
    pub corrupt_audio: bool,
    /// Publish real H.264 of one colour (Y, U, V) instead of synthetic VP8
    /// (its first layer only): for composite tests. The peer then offers
    /// H.264 as well as VP8.
    pub h264_pattern: Option<(u8, u8, u8)>,
    /// With `h264_pattern`: switch to this colour and back every period
    /// (`PeerState::pattern_switches` records when).
    pub h264_alternate: Option<((u8, u8, u8), Duration)>,
    /// With `h264_pattern`: send NAL units of garbage instead (an IDR
    /// header, then bytes no decoder makes a picture of).
    pub corrupt_video: bool,
    /// Keep every video packet received ([`PeerState::video_packets`]).
    pub record_video: bool,
    /// Synthetic video leaves this long after it was captured (an
    /// encoder's latency): its RTP timestamps and sender reports still say
    /// when it was captured, so it arrives later than audio captured with
    /// it, as a browser's does.
    pub video_latency: Duration,
    /// Video's sender reports run this far behind its audio's (a sender
    /// whose clocks disagree: a broken or hostile client).
    pub video_clock_behind: Duration,
}

/// A publisher's send pacer, after libwebrtc's: video leaves at a multiple
/// of the encoders' bitrate in small bursts rather than a frame at a time,
/// so a keyframe or a large frame does not arrive at the bridge as one burst.
/// Audio is not paced (libwebrtc sends it ahead of the video queue).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Pacing rate as a multiple of the enabled layers' bitrate.
    pub factor: f64,
    /// How often the queue is served; at most one interval of budget is
    /// saved up while idle.
    pub interval: Duration,
}

impl Pacing {
    /// libwebrtc's defaults: pacing factor 2.5, 5 ms process interval.
    pub const BROWSER: Pacing = Pacing {
        factor: 2.5,
        interval: Duration::from_millis(5),
    };
}

impl PeerConfig {
    pub fn new(local_addr: SocketAddr) -> Self {
        Self {
            audio: true,
            video: LayerSpec::ladder(),
            video_source: "camera".into(),
            audio_slots: 4,
            video_slots: 4,
            local_addr,
            keyframe_response_delay: Duration::ZERO,
            keyframe_interval: Duration::from_secs(10),
            seed: 1,
            talk: None,
            pacing: None,
            record_rtcp: false,
            tone_hz: None,
            record_audio: false,
            corrupt_audio: false,
            h264_pattern: None,
            h264_alternate: None,
            corrupt_video: false,
            record_video: false,
            video_latency: Duration::ZERO,
            video_clock_behind: Duration::ZERO,
        }
    }
}
