//! Arbitrary bytes as a sequence of a bridge node's inputs: what the fuzz
//! target `node_input` and the property test `node_input` both feed a
//! [`Node`] with two shards, a focus link and relay peers, so every path
//! from the network into the node (media datagrams, signalling, relay
//! control and datagrams, focus commands) takes hostile input. Prost
//! decodes focus commands and the relay's control framing decodes its
//! stream, as in the shell.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tern_proto::bridge::v1 as bpb;
use tern_sfu::node::{Input, Node, NodeConfig};
use tern_sfu::signal::parse_client_message;
use tern_sfu::{CodecName, CoreConfig, EndpointId, JoinRequest, PeerId};

const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 10_000);
const PEERS: [&str; 2] = ["b0", "b9"];

/// A node as the fuzz target and the property test start it.
pub fn node(now: Instant) -> Node {
    let core = CoreConfig {
        shard: 0,
        local_addr: LOCAL,
        candidate_addr: LOCAL,
        tcp_candidate_addr: None,
        dtls_cert: crate::shared_cert(),
        codecs: vec![CodecName::Opus, CodecName::Vp8],
        max_participants_per_conference: 10,
        default_max_height: 720,
        rtx_cache_packets: 64,
        rtx_cache_age: Duration::from_secs(1),
        talk: Default::default(),
        bandwidth: Default::default(),
        composite: false,
    };
    let register = bpb::Register {
        bridge_id: "b5".into(),
        region: "fuzz".into(),
        ..Default::default()
    };
    Node::new(
        NodeConfig {
            id: "b5".into(),
            core,
            shards: 2,
            focus: Some(register),
            drain_timeout: Duration::from_secs(2),
        },
        now,
    )
}

/// Split `data` into inputs and hand each to `node`, draining its outputs;
/// time advances with the input. Returns the time reached.
pub fn drive(node: &mut Node, mut now: Instant, mut data: &[u8]) -> Instant {
    let take = |n: usize, data: &mut &[u8]| -> Vec<u8> {
        let n = n.min(data.len());
        let (a, b) = data.split_at(n);
        *data = b;
        a.to_vec()
    };
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        let len = data.first().copied().unwrap_or(0) as usize;
        data = data.get(1..).unwrap_or(&[]);
        let body = take(len, &mut data);
        let peer: PeerId = Arc::from(PEERS[usize::from(op >> 7)]);
        let input = match op % 15 {
            0 => {
                let src = SocketAddr::from(([127, 0, 0, 1 + (op >> 4) % 4], 5000));
                Input::Datagrams {
                    local: LOCAL,
                    batch: vec![(src, Bytes::from(body))],
                }
            }
            1 => Input::Join(JoinRequest {
                id: EndpointId(u64::from(op >> 4)),
                room: format!("room{}", body.first().copied().unwrap_or(0) % 3),
                participant: format!("p{}", op >> 4),
                name: "fuzz".into(),
                ice_password: "0123456789abcdef0123456789abcdef".into(),
                video_codec: None,
                may_publish: true,
                mix_rate: None,
                composite: Default::default(),
            }),
            2 => match std::str::from_utf8(&body).ok().map(parse_client_message) {
                Some(Ok(msg)) => Input::Message {
                    endpoint: EndpointId(u64::from(op >> 4)),
                    msg,
                },
                _ => continue,
            },
            3 => Input::Leave {
                endpoint: EndpointId(u64::from(op >> 4)),
            },
            4 => Input::RelayConnected { peer },
            5 => Input::RelayStream { peer, bytes: body },
            6 => Input::RelayDatagrams {
                peer,
                batch: vec![Bytes::from(body)],
            },
            7 => Input::RelayClosed { peer },
            8 => Input::FocusConnected,
            9 => match bpb::FocusCommand::decode(&body[..]) {
                Ok(cmd) => Input::FocusCommand(cmd),
                Err(_) => continue,
            },
            11 => Input::SignalBacklog {
                endpoint: EndpointId(u64::from(op >> 4)),
            },
            12 => Input::RelayMaxDatagram {
                peer,
                max: (len > 0).then_some(len * 8),
            },
            13 => Input::RelayWriteBlocked { peer },
            10 => {
                now += Duration::from_millis(u64::from(op >> 4) * 50 + len as u64);
                node.handle_timeout(now);
                while node.poll_output().is_some() {}
                continue;
            }
            _ => {
                if op >> 4 == 0xf {
                    Input::Shutdown
                } else {
                    Input::FocusDisconnected
                }
            }
        };
        now += Duration::from_millis(1);
        node.handle_input(now, input);
        while node.poll_output().is_some() {}
    }
    now
}
