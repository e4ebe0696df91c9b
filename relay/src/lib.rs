//! The relay between bridges, Sans-IO.
//!
//! Bridges that host the same conference are joined by one QUIC connection
//! per pair (the quinn shell is in the `tern` binary). This crate holds what
//! is decided rather than moved: the wire format ([`wire`]), the state of one
//! connection ([`link`]: hello, version check, keepalive, control framing)
//! and hop-by-hop repair ([`repair`]: the sender's packet cache and the
//! receiver's loss detection). Per-conference relay state (who is remote,
//! which layers are demanded) lives with the conferences in `tern-sfu`.
//!
//! See `docs/relay-protocol.md` for the wire format and its versioning rules.

pub mod link;
pub mod repair;
pub mod wire;

pub use tern_proto::relay::v1 as msg;

/// Versions of the relay protocol this build speaks (see `Hello`).
pub const PROTOCOL_VERSION: u32 = 1;
/// The QUIC ALPN of relay connections; a new incompatible protocol gets a new one.
pub const ALPN: &[u8] = b"tern-relay/1";

/// Why relay input was refused. The shell counts these by [`RelayError::reason`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    #[error("datagram of {0} bytes is shorter than the {len}-byte header", len = wire::HEADER_LEN)]
    ShortDatagram(usize),
    #[error("datagram version {0} is not supported (this bridge speaks {PROTOCOL_VERSION})")]
    DatagramVersion(u8),
    #[error("datagram kind {0} is unknown")]
    DatagramKind(u8),
    #[error("datagram codec {0} is unknown")]
    DatagramCodec(u8),
    #[error("control frame of {0} bytes exceeds the {max}-byte limit", max = wire::MAX_CONTROL_FRAME)]
    FrameTooLarge(usize),
    #[error("control frame does not decode: {0}")]
    BadFrame(String),
    #[error("control message before hello")]
    NoHello,
    #[error("peer speaks relay protocol {0}, this bridge speaks {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("peer says it is bridge {got:?}, its certificate says {expected:?}")]
    WrongPeer { expected: String, got: String },
    #[error("peer sent a second hello")]
    DuplicateHello,
    #[error("peer silent for {0} ms")]
    Timeout(u64),
    /// Raised by the bridge, not the peer: the control stream to the peer
    /// fell this many messages behind (the peer does not read it).
    #[error("control stream to the peer is {0} messages behind")]
    ControlBacklog(usize),
}

impl RelayError {
    /// A fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayError::ShortDatagram(_) => "short_datagram",
            RelayError::DatagramVersion(_) => "datagram_version",
            RelayError::DatagramKind(_) => "datagram_kind",
            RelayError::DatagramCodec(_) => "datagram_codec",
            RelayError::FrameTooLarge(_) => "frame_too_large",
            RelayError::BadFrame(_) => "bad_frame",
            RelayError::NoHello => "no_hello",
            RelayError::Version(_) => "version",
            RelayError::WrongPeer { .. } => "wrong_peer",
            RelayError::DuplicateHello => "duplicate_hello",
            RelayError::Timeout(_) => "timeout",
            RelayError::ControlBacklog(_) => "control_backlog",
        }
    }
}
