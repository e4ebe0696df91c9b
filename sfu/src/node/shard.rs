//! What a worker shard is told: one enum for every input a shard's [`Core`]
//! takes besides a join (which answers), so the node, the tokio shard task
//! and the simulator hand a shard the same values and apply them the same
//! way.
//!
//! It owns no state: [`ShardInput::apply`] is the one place that maps an
//! input to the core's verb.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use crate::core::{Core, EndpointId, PeerId};
use crate::signal::ClientMessage;
use crate::tern_relay::msg::relay_control::Msg;
use tern_mixer::audio::MixOutput;
use tern_mixer::host::Mixed;

#[derive(Debug)]
pub enum ShardInput {
    /// Client datagrams read together from the media socket at `local`.
    Datagrams {
        local: SocketAddr,
        batch: Vec<(SocketAddr, Bytes)>,
    },
    /// Frames from ICE-TCP connections at the TCP candidate `local`, each
    /// with its connection's remote address.
    TcpDatagrams {
        local: SocketAddr,
        batch: Vec<(SocketAddr, Bytes)>,
    },
    /// How far behind real time the shard's oldest unread datagram was
    /// (admission control reads it).
    IngressLag(Duration),
    Message {
        id: EndpointId,
        msg: ClientMessage,
    },
    Leave {
        id: EndpointId,
    },
    /// The client's signalling queue is full: it is dropped
    /// ([`super::backpressure`]).
    SignalBacklog {
        id: EndpointId,
    },
    /// Ask participants of a room to reconnect elsewhere (drain, focus move).
    Move {
        room: String,
        participants: Vec<String>,
        reason: String,
    },
    /// End a conference.
    End {
        room: String,
    },
    /// The focus: these bridges host `room` too.
    RelayPeers {
        room: String,
        peers: Vec<String>,
    },
    RelayLinkUp {
        peer: PeerId,
    },
    RelayLinkDown {
        peer: PeerId,
    },
    RelayRtt {
        peer: PeerId,
        rtt: Duration,
    },
    RelayControl {
        peer: PeerId,
        msg: Msg,
    },
    /// Media datagrams from one peer that arrived together.
    RelayDatagrams {
        peer: PeerId,
        data: Vec<Bytes>,
    },
    /// A mixing worker restarted: its conferences' members are told again.
    MixerRestarted,
    /// The focus: record `room` here as recording `id`.
    StartRecording {
        room: String,
        id: String,
        started_unix_ms: u64,
    },
    StopRecording {
        room: String,
        id: String,
    },
    /// `room` is recorded as `id` (on this bridge or another), or no longer.
    RecordingNotice {
        room: String,
        id: String,
        active: bool,
    },
    /// The shell could not write recording `id` of `room`.
    RecordingFailed {
        room: String,
        id: String,
        error: String,
    },
    /// What a mixing worker produced for mixed conference `room`.
    Mixed {
        room: std::sync::Arc<str>,
        output: Mixed,
    },
}

impl ShardInput {
    /// Hand the input to the shard's core.
    pub fn apply(self, core: &mut Core, now: Instant) {
        match self {
            ShardInput::Datagrams { local, batch } => {
                core.handle_datagrams(now, local, batch.iter().map(|(src, d)| (*src, &d[..])))
            }
            ShardInput::TcpDatagrams { local, batch } => {
                core.handle_tcp_datagrams(now, local, batch.iter().map(|(src, d)| (*src, &d[..])))
            }
            ShardInput::IngressLag(lag) => core.handle_ingress_lag(now, lag),
            ShardInput::Message { id, msg } => core.handle_message(now, id, msg),
            ShardInput::Leave { id } => core.handle_leave(now, id),
            ShardInput::SignalBacklog { id } => {
                warn!(endpoint = %id, "signalling queue full; dropping the client");
                core.handle_leave(now, id)
            }
            ShardInput::Move {
                room,
                participants,
                reason,
            } => {
                let n = core.move_participants(now, &room, &participants, &reason);
                info!(%room, moved = n, %reason, "participants moved");
            }
            ShardInput::End { room } => {
                let n = core.end_conference(now, &room);
                info!(%room, removed = n, "conference ended");
            }
            ShardInput::RelayPeers { room, peers } => core.handle_relay_peers(now, &room, &peers),
            ShardInput::RelayLinkUp { peer } => core.handle_relay_link_up(now, &peer),
            ShardInput::RelayLinkDown { peer } => core.handle_relay_link_down(now, &peer),
            ShardInput::RelayRtt { peer, rtt } => core.handle_relay_rtt(&peer, rtt),
            ShardInput::RelayControl { peer, msg } => core.handle_relay_control(now, &peer, msg),
            ShardInput::RelayDatagrams { peer, data } => {
                core.handle_relay_datagrams(now, &peer, data.iter().map(|d| &d[..]))
            }
            ShardInput::MixerRestarted => core.handle_mixer_restarted(),
            ShardInput::StartRecording {
                room,
                id,
                started_unix_ms,
            } => {
                // A refusal is logged and reported by the core.
                let _ = core.start_recording(now, &room, &id, started_unix_ms);
            }
            ShardInput::StopRecording { room, id } => {
                if let Err(e) = core.stop_recording(now, &room, &id) {
                    warn!(%room, recording = %id, error = %e, "stop refused");
                }
            }
            ShardInput::RecordingNotice { room, id, active } => {
                core.handle_recording_notice(&room, &id, active)
            }
            ShardInput::RecordingFailed { room, id, error } => {
                core.handle_recording_failed(now, &room, &id, &error)
            }
            ShardInput::Mixed { room, output } => match output {
                Mixed::Audio(MixOutput::Audio {
                    to,
                    timestamp,
                    payload,
                }) => core.handle_mixed_audio(now, &room, EndpointId(to), timestamp, payload),
                Mixed::Audio(MixOutput::Recorded { timestamp, payload }) => {
                    core.handle_mix_recorded(now, &room, timestamp, &payload)
                }
                Mixed::Audio(MixOutput::Dropped {
                    participant,
                    reason,
                }) => core.handle_mix_dropped(&room, EndpointId(participant), &reason),
                Mixed::Video(v) => core.handle_composite(now, &room, v),
            },
        }
    }

    /// Whether the input may be dropped when the shard's queue is full (media,
    /// which the protocols repair) or must be delivered (state changes).
    pub fn is_media(&self) -> bool {
        matches!(
            self,
            ShardInput::Datagrams { .. }
                | ShardInput::TcpDatagrams { .. }
                | ShardInput::RelayDatagrams { .. }
                | ShardInput::Mixed { .. }
        )
    }
}
