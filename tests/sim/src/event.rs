//! What happens next: the [`Event`]s the simulation schedules (datagrams,
//! signalling, focus and relay traffic, timers), and the queue order
//! ([`Scheduled`]: by virtual time, ties in insertion order).
//!
//! Events carry what is in flight only; what an event does on arrival is
//! `Sim::deliver`'s business.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tern_proto::bridge::v1 as bpb;
use tern_sfu::EndpointId;
use tern_sfu::signal::{ClientMessage, ServerMessage};

use crate::Sim;
use tern_focus::{Registration, Report};

/// Big messages are boxed: every queued datagram moves an `Event` through
/// the heap, so its size is paid per packet.
pub(crate) enum Event {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// Signalling of one session (`session` = the session's endpoint id).
    /// To the bridge: travels on that session's connection to its bridge,
    /// like bytes already in a TCP stream. To the peer: dropped if the
    /// session ended meanwhile (the client closed that socket).
    ToBridge {
        peer: usize,
        bridge: usize,
        session: EndpointId,
        msg: ClientMessage,
    },
    ToPeer {
        peer: usize,
        session: EndpointId,
        msg: Box<ServerMessage>,
    },
    /// The peer's signalling socket closed: its bridge died or refused the
    /// connection.
    SocketClosed {
        peer: usize,
        session: EndpointId,
    },
    /// The peer's re-join timer fired.
    Rejoin {
        peer: usize,
    },
    ToFocus {
        bridge: usize,
        msg: Box<ToFocus>,
    },
    /// The bridge's control stream to the focus opened (or failed to).
    FocusStream {
        bridge: usize,
        connected: bool,
    },
    /// A command from the focus to a bridge.
    FromFocus {
        bridge: usize,
        cmd: Box<bpb::FocusCommand>,
    },
    /// Relay connection `generation` completes its handshake on both sides.
    RelayConnect {
        pair: usize,
        generation: u64,
        dialler: usize,
    },
    /// A dial by bridge `bridge` to `peer` timed out.
    RelayDialFailed {
        bridge: usize,
        peer: usize,
    },
    /// The other side closed connection `generation`: side `to` learns it.
    RelayClosed {
        pair: usize,
        generation: u64,
        to: usize,
    },
    /// Control stream bytes of relay connection `generation`, from side `from` (0 = a).
    RelayStream {
        pair: usize,
        generation: u64,
        from: usize,
        bytes: Vec<u8>,
    },
    RelayDatagram {
        pair: usize,
        generation: u64,
        from: usize,
        data: Arc<[u8]>,
    },
}

/// A scheduled event; ties in time keep insertion order.
pub(crate) struct Scheduled {
    pub(crate) at: Instant,
    seq: u64,
    pub(crate) event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl Sim {
    /// Schedule `event` at `at`, after everything already scheduled then.
    pub(crate) fn push(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }
}

/// What a bridge's control stream carries to the focus.
#[derive(Debug)]
pub(crate) enum ToFocus {
    Register(Registration),
    Report(Report),
    /// The stream closed (the bridge process died).
    Closed,
}
