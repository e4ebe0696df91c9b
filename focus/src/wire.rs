//! The focus core's types as `tern.bridge.v1` messages and back: the one
//! conversion the gRPC shell and the simulator both use, so a bridge node
//! talks to the focus core the same way in either.

use std::collections::{BTreeMap, BTreeSet};

use tern_proto::bridge::v1 as bpb;

use crate::{FocusEvent, Registration, Report};

fn conferences(list: Vec<bpb::ConferenceState>) -> BTreeMap<String, BTreeSet<String>> {
    list.into_iter()
        .map(|c| (c.name, c.participants.into_iter().collect()))
        .collect()
}

impl From<bpb::Register> for Registration {
    fn from(r: bpb::Register) -> Self {
        Self {
            id: r.bridge_id,
            region: r.region,
            version: r.version,
            api_version: r.api_version,
            signal_url: r.signal_url,
            relay_addr: r.relay_addr,
            max_packet_rate: r.max_packet_rate,
            conferences: conferences(r.conferences),
        }
    }
}

impl From<bpb::Stats> for Report {
    fn from(s: bpb::Stats) -> Self {
        Self {
            rtp_packets_in_per_s: s.rtp_packets_in_per_s,
            rtp_packets_out_per_s: s.rtp_packets_out_per_s,
            endpoints: s.endpoints,
            healthy: s.healthy,
            draining: s.draining,
            shutting_down: s.shutting_down,
            conferences: conferences(s.conferences),
            mixing_load: s.mixing_load,
            recordings: s
                .recordings
                .into_iter()
                .map(|r| crate::RecordingReport {
                    conference: r.conference,
                    id: r.recording_id,
                    active: r.active,
                    error: r.error,
                    files: r.files,
                    bytes: r.bytes,
                })
                .collect(),
        }
    }
}

impl FocusEvent {
    /// For the events that are commands to a bridge: the bridge, and the
    /// command as it travels on the control stream.
    pub fn command(&self) -> Option<(&str, bpb::FocusCommand)> {
        use bpb::focus_command::Cmd;
        let (bridge, cmd) = match self {
            FocusEvent::CommandMove {
                bridge,
                conference,
                participants,
                reason,
            } => (
                bridge,
                Cmd::Move(bpb::MoveParticipants {
                    conference: conference.clone(),
                    participants: participants.clone(),
                    reason: reason.clone(),
                }),
            ),
            FocusEvent::CommandDrain { bridge, draining } => (bridge, Cmd::Drain(*draining)),
            FocusEvent::CommandEndConference { bridge, conference } => {
                (bridge, Cmd::EndConference(conference.clone()))
            }
            FocusEvent::CommandStartRecording {
                bridge,
                conference,
                id,
                started_unix_ms,
            } => (
                bridge,
                Cmd::StartRecording(bpb::StartRecording {
                    conference: conference.clone(),
                    recording_id: id.clone(),
                    started_unix_ms: *started_unix_ms,
                }),
            ),
            FocusEvent::CommandRecordingNotice {
                bridge,
                conference,
                id,
                active,
            } => (
                bridge,
                Cmd::RecordingNotice(bpb::RecordingNotice {
                    conference: conference.clone(),
                    recording_id: id.clone(),
                    active: *active,
                }),
            ),
            FocusEvent::CommandStopRecording {
                bridge,
                conference,
                id,
            } => (
                bridge,
                Cmd::StopRecording(bpb::StopRecording {
                    conference: conference.clone(),
                    recording_id: id.clone(),
                }),
            ),
            FocusEvent::CommandRelayPeers {
                bridge,
                conference,
                peers,
            } => (
                bridge,
                Cmd::RelayPeers(bpb::RelayPeers {
                    conference: conference.clone(),
                    peers: peers
                        .iter()
                        .map(|(bridge_id, relay_addr)| bpb::RelayPeer {
                            bridge_id: bridge_id.clone(),
                            relay_addr: relay_addr.clone(),
                        })
                        .collect(),
                }),
            ),
            _ => return None,
        };
        Some((bridge.as_str(), bpb::FocusCommand { cmd: Some(cmd) }))
    }
}
