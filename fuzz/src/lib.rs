//! What the relay fuzz targets share: a bridge [`Core`] in the state where
//! relay input matters, driven in memory on virtual time.
//!
//! The core hosts room [`ROOM`] with one real participant (a str0m [`Peer`]
//! connected over ICE, DTLS and SRTP through in-memory datagrams, publishing
//! the synthetic simulcast ladder and audio, with receive slots). Relay peer
//! [`PEER`] shares the room over a ready link and has announced a remote
//! participant publishing audio (source [`AUDIO_SOURCE`]) and three layers
//! of VP8 (source [`VIDEO_SOURCE`]) in its conference [`REMOTE_CONF`]. So a
//! relay datagram that names those numbers is really fanned out: gap
//! tracking, layer switching, rewriting, the receiver's SRTP and RTX cache;
//! and a relay control message that names the local conference reaches the
//! local publisher's sources (demand, keyframe requests, NACKs from the
//! relay cache).
//!
//! Set-up (certificate, handshake) costs milliseconds, so targets keep one
//! `Bridge` across inputs; [`Bridge::reset_relay`] takes the link down and up
//! again so each input starts from the same relay state even when the
//! previous one tore it down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_peer::{Peer, PeerConfig, PeerOutput};
use tern_sfu::signal::ClientMessage;
use tern_sfu::tern_relay::msg::{self, relay_control::Msg};
use tern_sfu::{CodecName, Core, CoreConfig, EndpointId, JoinRequest, Output, PeerId};

pub const ROOM: &str = "fuzz";
/// The relay peer's bridge id.
pub const PEER: &str = "peer";
/// The peer's number for the shared room (its shard 1 in the top byte).
pub const REMOTE_CONF: u32 = 0x0100_0001;
pub const AUDIO_SOURCE: u16 = 1;
pub const VIDEO_SOURCE: u16 = 2;
/// The remote participant's id.
pub const REMOTE: &str = "remote";

const LOCAL: EndpointId = EndpointId(1);

/// The bridge configuration every fuzz target runs its core with.
pub fn core_config(local: SocketAddr, dtls_cert: str0m::config::DtlsCert) -> CoreConfig {
    CoreConfig {
        shard: 0,
        local_addr: local,
        candidate_addr: local,
        dtls_cert,
        codecs: vec![CodecName::Opus, CodecName::Vp8],
        max_participants_per_conference: 10,
        default_max_height: 720,
        rtx_cache_packets: 256,
        rtx_cache_age: Duration::from_secs(1),
        talk: Default::default(),
    }
}

pub struct Bridge {
    pub core: Core,
    /// The local participant.
    pub peer: Peer,
    pub now: Instant,
    pub relay_peer: PeerId,
    /// The core's own number for the room, as it announced it to the peer.
    pub local_conf: u32,
    /// Control messages the core sent to the relay peer since the last
    /// [`Bridge::take_relay_control`].
    relay_control: Vec<Msg>,
    bridge_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl Bridge {
    /// A core with the connected local participant and the announced remote
    /// one; the local participant publishes (audio and the simulcast ladder)
    /// only if `publish`, which costs every input some SRTP work. Panics if
    /// the set-up does not converge: that is a harness bug, found on the
    /// first input, not a finding.
    pub fn new(publish: bool) -> Bridge {
        let now = Instant::now();
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        let bridge_addr: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
        let peer_addr: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        let core = Core::new(core_config(bridge_addr, cert), now);
        let mut cfg = PeerConfig::new(peer_addr);
        if !publish {
            cfg.audio = false;
            cfg.video.clear();
        }
        let peer = Peer::new(cfg, now);
        let mut b = Bridge {
            core,
            peer,
            now,
            relay_peer: Arc::from(PEER),
            local_conf: 0,
            relay_control: Vec::new(),
            bridge_addr,
            peer_addr,
        };
        b.core
            .handle_join(
                now,
                JoinRequest {
                    id: LOCAL,
                    room: ROOM.into(),
                    participant: "local".into(),
                    name: "local".into(),
                    ice_password: "0123456789abcdef0123456789abcdef".into(),
                },
            )
            .expect("join");
        b.core.handle_relay_peers(now, ROOM, &[PEER.to_string()]);
        b.core.handle_relay_link_up(now, PEER);
        b.announce_remote();
        // Until ICE, DTLS and SRTP are up, the local participant's sources are
        // declared and its slots carry the remote sources.
        for _ in 0..2000 {
            b.advance(Duration::from_millis(5));
            let s = b.peer.state();
            let remote_slots = s
                .slots
                .values()
                .filter(|v| v.as_deref().is_some_and(|id| id.starts_with(REMOTE)))
                .count();
            if s.connected && remote_slots == 2 && b.local_conf != 0 {
                b.take_relay_control();
                return b;
            }
        }
        panic!(
            "harness did not converge: connected {}, slots {:?}, local conference {}",
            b.peer.state().connected,
            b.peer.state().slots,
            b.local_conf
        );
    }

    /// What the peer announces on a fresh link: its conference, the remote
    /// participant and its sources (audio, and VP8 180p/360p/720p).
    pub fn announce_remote(&mut self) {
        let layer = |rid: &str, height| msg::Layer {
            rid: rid.into(),
            height,
            active: true,
        };
        let msgs = [
            Msg::ConferenceJoined(msg::ConferenceJoined {
                number: REMOTE_CONF,
                name: ROOM.into(),
            }),
            Msg::ParticipantJoined(msg::ParticipantJoined {
                conference: REMOTE_CONF,
                participant: REMOTE.into(),
                name: REMOTE.into(),
            }),
            Msg::Sources(msg::Sources {
                conference: REMOTE_CONF,
                participant: REMOTE.into(),
                sources: vec![
                    msg::Source {
                        number: u32::from(AUDIO_SOURCE),
                        id: format!("{REMOTE}-audio"),
                        name: "mic".into(),
                        kind: msg::Kind::Audio as i32,
                        muted: false,
                        layers: vec![layer("", 0)],
                    },
                    msg::Source {
                        number: u32::from(VIDEO_SOURCE),
                        id: format!("{REMOTE}-video"),
                        name: "camera".into(),
                        kind: msg::Kind::Video as i32,
                        muted: false,
                        layers: vec![layer("q", 180), layer("h", 360), layer("f", 720)],
                    },
                ],
            }),
        ];
        let now = self.now;
        for m in msgs {
            self.core.handle_relay_control(now, PEER, m);
        }
        self.flush();
    }

    /// Link down and up again, then the peer's announcements: the relay
    /// state every input starts from, whatever the previous one did.
    pub fn reset_relay(&mut self) {
        let now = self.now;
        self.core.handle_relay_link_down(now, PEER);
        // A previous input may have changed the room's relay peers.
        self.core.handle_relay_peers(now, ROOM, &[PEER.to_string()]);
        self.core.handle_relay_link_up(now, PEER);
        self.announce_remote();
        self.take_relay_control();
    }

    /// Control messages the core sent to the relay peer since last asked.
    pub fn take_relay_control(&mut self) -> Vec<Msg> {
        std::mem::take(&mut self.relay_control)
    }

    /// Move time forward, run both sides' timers and exchange what they
    /// send until both are quiet.
    pub fn advance(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        if self.core.poll_timeout() <= now {
            self.core.handle_timeout(now);
        }
        if self.peer.poll_timeout() <= now {
            self.peer.handle_timeout(now);
        }
        self.flush();
        // The participant records every packet it receives; a fuzzing run
        // lasts millions of inputs.
        self.peer.take_received();
    }

    /// Route outputs between the core and the local participant until
    /// neither has more (bounded: a ping-pong that never ends is cut, not
    /// hung on).
    pub fn flush(&mut self) {
        let now = self.now;
        for _ in 0..64 {
            let mut quiet = true;
            while let Some(o) = self.core.poll_output() {
                quiet = false;
                match o {
                    Output::Transmit {
                        destination,
                        contents,
                    } if destination == self.peer_addr => {
                        self.peer.handle_datagram(now, self.bridge_addr, &contents);
                    }
                    Output::Signal { endpoint, message } if endpoint == LOCAL => {
                        self.peer.handle_signal(now, message);
                    }
                    Output::RelayControl { peer, msg } if *peer == *PEER => {
                        if let Msg::ConferenceJoined(c) = &msg {
                            self.local_conf = c.number;
                        }
                        self.relay_control.push(msg);
                    }
                    _ => {}
                }
            }
            while let Some(o) = self.peer.poll_output() {
                quiet = false;
                match o {
                    PeerOutput::Transmit {
                        destination,
                        contents,
                    } => {
                        if destination == self.bridge_addr {
                            self.core
                                .handle_datagram(now, self.peer_addr, destination, &contents);
                        }
                    }
                    PeerOutput::Signal(ClientMessage::Join { .. }) => {}
                    PeerOutput::Signal(ClientMessage::Leave) => self.core.handle_leave(now, LOCAL),
                    PeerOutput::Signal(m) => self.core.handle_message(now, LOCAL, m),
                }
            }
            if quiet {
                return;
            }
        }
    }
}
