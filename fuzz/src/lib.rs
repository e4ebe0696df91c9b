//! What the node fuzz targets share: a bridge [`Node`] with [`SHARDS`]
//! shards in the state where network input matters, driven in memory on
//! virtual time, the way the shell drives it.
//!
//! The node (id [`NODE`]) hosts room [`ROOM`] (on shard 1) with one real
//! participant (a str0m [`Peer`] connected over ICE, DTLS and SRTP through
//! in-memory datagrams, publishing the synthetic simulcast ladder and audio,
//! with receive slots), and room [`ROOM2`] (on shard 2) with a participant
//! that joined but never connects. Relay peer [`PEER`] shares both rooms
//! over an established relay connection: the node dialled it (the mesh
//! dials the larger id), the peer's hello made the link ready, and the peer
//! announced its conferences [`REMOTE_CONF`] ([`ROOM`]) and
//! [`REMOTE_CONF2`] ([`ROOM2`]) and, in [`ROOM`], a remote participant
//! publishing audio (source [`AUDIO_SOURCE`]) and three layers of VP8
//! (source [`VIDEO_SOURCE`]). All of it reaches the node as the shell
//! hands it over: `Input::Datagrams`, `Join`/`Message`, `RelayPeers`,
//! `RelayConnected`, `RelayStream` bytes framed as the peer's link writes
//! them. So a relay datagram that names those numbers is routed to
//! [`ROOM`]'s shard and really fanned out (gap tracking, layer switching,
//! rewriting, the receiver's SRTP and RTX cache), and a relay control
//! message that names the node's own conference numbers reaches the local
//! publisher's sources (demand, keyframe requests, NACKs from the relay
//! cache).
//!
//! [`STRANGER`] is a bridge that shares no room: the node accepts its
//! connection (the smaller id dials), so what it sends gets past the link
//! and the routing to cores that must refuse it.
//!
//! Every output the node produces is polled: datagrams and signalling go to
//! the participant, what the node writes on a control stream must decode
//! as whole, valid frames (checked here, for every target).
//!
//! Set-up (certificate, handshake) costs milliseconds, so targets keep one
//! `Bridge` across inputs; [`Bridge::reset_relay`] replaces the relay
//! connection with a fresh one (hello and announcements again) so each
//! input starts from the same relay state even when the previous one tore
//! it down.
//!
//! Virtual time is what an input costs: every millisecond that passes runs
//! both str0m sessions' timers (pacer, probing, RTCP, TWCC) and the
//! publisher's media through SRTP and the core, 1-2 ms of CPU per virtual
//! second under coverage instrumentation, against ~0.3 ms for everything
//! else an input does. Left to themselves, the relay targets' inputs grew
//! to long runs of pauses (0.4 s of virtual time per input on average over
//! `relay_control`'s corpus, 1.7 s over `relay_datagram`'s) and ran at a
//! few hundred executions a second. So the pauses an input asks for
//! ([`Bridge::pause`]) share a budget of [`INPUT_TIME`] per input
//! ([`Bridge::start_input`]): longer than the longest timer on the relay
//! paths (a relay hole is given up on after 1.5 s, a layer that sent
//! nothing for 1 s is idle), so everything time drives can still happen
//! within one input, but no input pays for more.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_peer::synth::LayerSpec;
use tern_peer::{Peer, PeerConfig, PeerOutput};
use tern_sfu::node::{Input, Node, NodeConfig, Output, shard_of_room};
use tern_sfu::signal::ClientMessage;
use tern_sfu::tern_relay::PROTOCOL_VERSION;
use tern_sfu::tern_relay::msg::{self, Hello, RelayControl, relay_control::Msg};
use tern_sfu::tern_relay::wire::{ControlDecoder, encode_control};
use tern_sfu::{CodecName, CoreConfig, EndpointId, JoinRequest, PeerId};

pub const SHARDS: usize = 3;
/// The node's bridge id.
pub const NODE: &str = "node";
/// Hosted on shard 1, with the connected participant.
pub const ROOM: &str = "fuzz";
/// Hosted on shard 2, with a participant that never connects.
pub const ROOM2: &str = "fuzz2";
/// The relay peer's bridge id (larger than [`NODE`]: the node dials it).
pub const PEER: &str = "peer";
/// A bridge that shares no room (smaller than [`NODE`]: it dials the node,
/// which accepts).
pub const STRANGER: &str = "edge";
/// The peer's number for [`ROOM`] (its shard 1 in the top byte).
pub const REMOTE_CONF: u32 = 0x0100_0001;
/// The peer's number for [`ROOM2`].
pub const REMOTE_CONF2: u32 = 0x0200_0001;
pub const AUDIO_SOURCE: u16 = 1;
pub const VIDEO_SOURCE: u16 = 2;
/// The remote participant's id.
pub const REMOTE: &str = "remote";

const LOCAL: EndpointId = EndpointId(1);
const IDLE: EndpointId = EndpointId(2);

/// The virtual time one input's pauses may let pass in all (see the
/// module's documentation): past 1.5 s, the relay's give-up time for a
/// hole (`tern_relay::repair`), the longest timer on the relay paths.
pub const INPUT_TIME: Duration = Duration::from_millis(1600);

/// The bridge configuration every fuzz target runs its cores with.
pub fn core_config(local: SocketAddr, dtls_cert: str0m::config::DtlsCert) -> CoreConfig {
    CoreConfig {
        shard: 0,
        local_addr: local,
        candidate_addr: local,
        tcp_candidate_addr: None,
        dtls_cert,
        codecs: vec![CodecName::Opus, CodecName::Vp8],
        max_participants_per_conference: 10,
        default_max_height: 720,
        rtx_cache_packets: 256,
        rtx_cache_age: Duration::from_secs(1),
        talk: Default::default(),
        bandwidth: Default::default(),
        composite: false,
    }
}

/// A control stream's bytes: `msgs` framed as a link writes them.
pub fn encode(msgs: impl IntoIterator<Item = Msg>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        encode_control(&RelayControl { msg: Some(m) }, &mut out);
    }
    out
}

/// The hello `id` opens its control stream with.
pub fn hello(id: &str) -> Msg {
    Msg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        bridge_id: id.into(),
        software_version: String::new(),
    })
}

pub struct Bridge {
    pub node: Node,
    /// The local participant.
    pub peer: Peer,
    pub now: Instant,
    pub relay_peer: PeerId,
    pub stranger: PeerId,
    /// The node's own number for [`ROOM`], as it announced it to the peer.
    pub local_conf: u32,
    /// ... and for [`ROOM2`].
    pub other_conf: u32,
    /// Control messages the node sent to the relay peer since the last
    /// [`Bridge::take_relay_control`].
    relay_control: Vec<Msg>,
    /// Peers whose connection the node closed since the last
    /// [`Bridge::take_closed`].
    closed: Vec<PeerId>,
    /// What the node wrote on each control stream, decoded.
    written: HashMap<PeerId, ControlDecoder>,
    /// What is left of the current input's [`INPUT_TIME`].
    time_left: Duration,
    bridge_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl Bridge {
    /// A node with the connected local participant, the idle one and the
    /// announced remote one; the local participant publishes (audio and
    /// the simulcast ladder) only if `publish`, which costs every input
    /// some SRTP work. Panics if the set-up does not converge: that is a
    /// harness bug, found on the first input, not a finding.
    pub fn new(publish: bool) -> Bridge {
        assert_eq!(shard_of_room(ROOM, SHARDS), 1);
        assert_eq!(shard_of_room(ROOM2, SHARDS), 2);
        let now = Instant::now();
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        let bridge_addr: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
        let peer_addr: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        let node = Node::new(
            NodeConfig {
                id: NODE.into(),
                core: core_config(bridge_addr, cert),
                shards: SHARDS,
                focus: None,
                drain_timeout: Duration::from_secs(2),
            },
            now,
        );
        let mut cfg = PeerConfig::new(peer_addr);
        if !publish {
            cfg.audio = false;
            cfg.video.clear();
        } else {
            // The browser ladder's rids and sizes at a fraction of its
            // bitrates: every delta frame one packet, keyframes one or two
            // (the 720p layer's was 30 packets). The node's work per
            // packet is the same; what the fuzz input steers (demand,
            // keyframe requests, NACKs from the relay cache) only needs
            // packets to flow, and each packet costs every input CPU.
            cfg.video = vec![
                LayerSpec::new("q", 320, 180, 30_000),
                LayerSpec::new("h", 640, 360, 60_000),
                LayerSpec::new("f", 1280, 720, 100_000),
            ];
        }
        let peer = Peer::new(cfg, now);
        let mut b = Bridge {
            node,
            peer,
            now,
            relay_peer: Arc::from(PEER),
            stranger: Arc::from(STRANGER),
            local_conf: 0,
            other_conf: 0,
            relay_control: Vec::new(),
            closed: Vec::new(),
            written: HashMap::new(),
            time_left: INPUT_TIME,
            bridge_addr,
            peer_addr,
        };
        for (id, room, participant) in [(LOCAL, ROOM, "local"), (IDLE, ROOM2, "idle")] {
            b.input(Input::Join(JoinRequest {
                id,
                room: room.into(),
                participant: participant.into(),
                name: participant.into(),
                ice_password: "0123456789abcdef0123456789abcdef".into(),
                video_codec: None,
                may_publish: true,
                mix_rate: None,
                composite: Default::default(),
            }));
        }
        for room in [ROOM, ROOM2] {
            b.input(Input::RelayPeers {
                room: room.into(),
                peers: vec![(PEER.into(), "127.0.0.9:4433".into())],
            });
        }
        b.reset_relay();
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
            if s.connected && remote_slots == 2 {
                // A fresh link: the one above may have gone quiet for long.
                b.reset_relay();
                b.take_closed();
                return b;
            }
        }
        panic!(
            "harness did not converge: connected {}, slots {:?}",
            b.peer.state().connected,
            b.peer.state().slots,
        );
    }

    /// Both participants are still there and the local one is connected
    /// (an input may have broken its session; targets then start anew).
    pub fn healthy(&self) -> bool {
        let s = self.peer.state();
        self.node.endpoint_count() == 2 && s.connected && !s.closed
    }

    /// Hand the node one input at the current time, then route what it says.
    pub fn input(&mut self, input: Input) {
        self.node.handle_input(self.now, input);
        self.flush();
    }

    /// Bytes on `peer`'s control stream, as read from the connection.
    pub fn stream(&mut self, peer: &PeerId, bytes: Vec<u8>) {
        self.input(Input::RelayStream {
            peer: peer.clone(),
            bytes,
        });
    }

    /// A new connection with `peer` replacing any old one (which the node
    /// hears closed first); with `hello`, the peer's hello makes it ready.
    pub fn connect(&mut self, peer: &PeerId, hello: bool) {
        self.disconnect(peer);
        self.input(Input::RelayConnected { peer: peer.clone() });
        if hello {
            self.stream(peer, encode([self::hello(peer)]));
        }
    }

    /// The connection with `peer` is gone.
    pub fn disconnect(&mut self, peer: &PeerId) {
        self.input(Input::RelayClosed { peer: peer.clone() });
        self.written.remove(peer);
    }

    /// The stranger's connection, after its hello announcing a conference
    /// named [`ROOM`] as [`REMOTE_CONF`] (so its datagrams naming that
    /// number get past the routing to the room's shard).
    pub fn connect_stranger(&mut self, hello: bool) {
        let stranger = self.stranger.clone();
        self.connect(&stranger, hello);
        if hello {
            let m = Msg::ConferenceJoined(msg::ConferenceJoined {
                number: REMOTE_CONF,
                name: ROOM.into(),
            });
            self.stream(&stranger, encode([m]));
        }
    }

    /// What the peer announces on a fresh link: its conferences, the remote
    /// participant and its sources (audio, and VP8 180p/360p/720p).
    pub fn announce_remote(&mut self) {
        let layer = |rid: &str, height| msg::Layer {
            rid: rid.into(),
            height,
            active: true,
            bitrate_bps: 0,
        };
        let msgs = [
            Msg::ConferenceJoined(msg::ConferenceJoined {
                number: REMOTE_CONF,
                name: ROOM.into(),
            }),
            Msg::ConferenceJoined(msg::ConferenceJoined {
                number: REMOTE_CONF2,
                name: ROOM2.into(),
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
                        svc: false,
                    },
                    msg::Source {
                        number: u32::from(VIDEO_SOURCE),
                        id: format!("{REMOTE}-video"),
                        name: "camera".into(),
                        kind: msg::Kind::Video as i32,
                        muted: false,
                        layers: vec![layer("q", 180), layer("h", 360), layer("f", 720)],
                        svc: false,
                    },
                ],
            }),
        ];
        let peer = self.relay_peer.clone();
        self.stream(&peer, encode(msgs));
    }

    /// A new connection with the peer, its hello and its announcements: the
    /// relay state every input starts from, whatever the previous one did.
    /// Panics if the link is not up or the node did not announce its rooms
    /// on it (a harness bug).
    pub fn reset_relay(&mut self) {
        let peer = self.relay_peer.clone();
        self.local_conf = 0;
        self.other_conf = 0;
        self.connect(&peer, true);
        self.announce_remote();
        assert!(self.node.relay_up(PEER), "the relay link is not up");
        assert!(
            self.local_conf != 0 && self.other_conf != 0,
            "the node did not announce its rooms"
        );
        self.take_relay_control();
    }

    /// Control messages the node sent to the relay peer since last asked.
    pub fn take_relay_control(&mut self) -> Vec<Msg> {
        std::mem::take(&mut self.relay_control)
    }

    /// Peers whose connection the node closed since last asked.
    pub fn take_closed(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.closed)
    }

    /// A new input begins: its pauses may let [`INPUT_TIME`] pass in all.
    pub fn start_input(&mut self) {
        self.time_left = INPUT_TIME;
    }

    /// A pause an input asks for: [`Bridge::advance`] by `dt`, or by what
    /// is left of the input's [`INPUT_TIME`]; once that is spent, pauses do
    /// nothing (what follows them is sent straight on). The budget restarts
    /// with every input, so what one input may do does not depend on what
    /// the inputs before it spent.
    pub fn pause(&mut self, dt: Duration) {
        if self.time_left.is_zero() {
            return;
        }
        let dt = dt.min(self.time_left);
        self.time_left -= dt;
        self.advance(dt);
    }

    /// Move time forward, run both sides' timers and exchange what they
    /// send until both are quiet.
    pub fn advance(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        if self.node.poll_timeout() <= now {
            self.node.handle_timeout(now);
        }
        if self.peer.poll_timeout() <= now {
            self.peer.handle_timeout(now);
        }
        self.flush();
        // The participant records every packet it receives; a fuzzing run
        // lasts millions of inputs.
        self.peer.take_received();
    }

    /// What the node wrote on `peer`'s control stream: whole, valid frames.
    fn written(&mut self, peer: PeerId, bytes: &[u8]) {
        let d = self.written.entry(peer.clone()).or_default();
        d.push(bytes);
        let mut msgs = Vec::new();
        while let Some(m) = d.next_message() {
            match m {
                Ok(m) => msgs.extend(m.msg),
                Err(e) => panic!("the node wrote an undecodable frame to {peer}: {e}"),
            }
        }
        assert_eq!(d.pending(), 0, "the node wrote a partial frame to {peer}");
        if *peer != *PEER {
            return;
        }
        for m in msgs {
            if let Msg::ConferenceJoined(c) = &m {
                match c.name.as_str() {
                    ROOM => self.local_conf = c.number,
                    ROOM2 => self.other_conf = c.number,
                    _ => {}
                }
            }
            self.relay_control.push(m);
        }
    }

    /// Route outputs between the node and the local participant until
    /// neither has more (bounded: a ping-pong that never ends is cut, not
    /// hung on). The participant's datagrams reach the node in batches, as
    /// the shell's reader hands them over.
    pub fn flush(&mut self) {
        let now = self.now;
        for _ in 0..64 {
            let mut quiet = true;
            while let Some(o) = self.node.poll_output() {
                quiet = false;
                match o {
                    Output::Transmit {
                        destination,
                        contents,
                        ..
                    } if destination == self.peer_addr => {
                        self.peer.handle_datagram(now, self.bridge_addr, &contents);
                    }
                    Output::Signal { endpoint, message } if endpoint == LOCAL => {
                        self.peer.handle_signal(now, *message);
                    }
                    Output::RelayWrite { peer, bytes } => self.written(peer, &bytes),
                    Output::RelayClose { peer, .. } => {
                        self.written.remove(&peer);
                        self.closed.push(peer);
                    }
                    _ => {}
                }
            }
            let mut batch = Vec::new();
            while let Some(o) = self.peer.poll_output() {
                quiet = false;
                let input = match o {
                    PeerOutput::Transmit {
                        destination,
                        contents,
                    } => {
                        if destination == self.bridge_addr {
                            batch.push((self.peer_addr, Bytes::from(contents)));
                        }
                        continue;
                    }
                    PeerOutput::Signal(ClientMessage::Join { .. }) => continue,
                    PeerOutput::Signal(ClientMessage::Leave) => Input::Leave { endpoint: LOCAL },
                    PeerOutput::Signal(msg) => Input::Message {
                        endpoint: LOCAL,
                        msg,
                    },
                };
                // Signalling and media keep their order.
                self.send_batch(&mut batch);
                self.node.handle_input(now, input);
            }
            self.send_batch(&mut batch);
            if quiet {
                return;
            }
        }
    }

    fn send_batch(&mut self, batch: &mut Vec<(SocketAddr, Bytes)>) {
        if !batch.is_empty() {
            let batch = std::mem::take(batch);
            self.node.handle_input(
                self.now,
                Input::Datagrams {
                    local: self.bridge_addr,
                    batch,
                },
            );
        }
    }

    /// The node's media address.
    pub fn bridge_addr(&self) -> SocketAddr {
        self.bridge_addr
    }

    /// The connected participant's address (bound to [`ROOM`]'s shard).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
}
