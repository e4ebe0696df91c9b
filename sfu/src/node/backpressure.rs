//! What the bridge does when a queue or a path cannot take what it is
//! given. The shells notice (a channel is full, quinn says how large a
//! datagram the path takes); what follows is a decision about a
//! participant or a link, so it is made here and the simulator meets the
//! same rules:
//!
//! - a client that does not read its signalling falls [`SIGNAL_QUEUE`]
//!   messages behind: it is dropped ([`ShardInput::SignalBacklog`]). Its
//!   view of the conference would otherwise be silently wrong, and a
//!   dropped client reconnects and gets a fresh one;
//! - a relay datagram larger than the path takes now crosses on the
//!   control stream ([`relay_carriage`]): reliable and in order, so never
//!   worse than the loss it replaces;
//! - a relay control stream that falls [`RELAY_CONTROL_QUEUE`] messages
//!   behind closes the link ([`relay_control_backlog`]): control carries
//!   state (announcements, demand) that must not be lost piecemeal, and a
//!   new connection resynchronises it from the start.
//!
//! [`ShardInput::SignalBacklog`]: super::ShardInput::SignalBacklog

use crate::tern_relay::RelayError;

/// Signalling messages queued per endpoint before the client is dropped.
pub const SIGNAL_QUEUE: usize = 1024;

/// Control messages queued per relay peer before the link is closed.
pub const RELAY_CONTROL_QUEUE: usize = 8192;

/// How a relay datagram crosses to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    Datagram,
    /// Too large for the path (or the connection takes no datagrams): as an
    /// `OversizeMedia` control message.
    ControlStream,
}

/// `max_datagram` is what the connection takes now (quinn's
/// `max_datagram_size`, which PMTU discovery raises); `None`: no datagrams
/// at all.
pub fn relay_carriage(len: usize, max_datagram: Option<usize>) -> Carriage {
    match max_datagram {
        Some(max) if len <= max => Carriage::Datagram,
        _ => Carriage::ControlStream,
    }
}

/// The reason a relay link whose control queue is full is closed with.
pub fn relay_control_backlog() -> RelayError {
    RelayError::ControlBacklog(RELAY_CONTROL_QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_that_fits_the_path_goes_as_a_datagram() {
        assert_eq!(relay_carriage(1200, Some(1200)), Carriage::Datagram);
        assert_eq!(relay_carriage(0, Some(0)), Carriage::Datagram);
    }

    #[test]
    fn datagram_too_large_or_unsupported_goes_on_the_control_stream() {
        assert_eq!(relay_carriage(1201, Some(1200)), Carriage::ControlStream);
        assert_eq!(relay_carriage(10, None), Carriage::ControlStream);
    }

    #[test]
    fn control_backlog_reason_names_the_limit() {
        let e = relay_control_backlog();
        assert_eq!(e.reason(), "control_backlog");
        assert!(
            e.to_string().contains(&RELAY_CONTROL_QUEUE.to_string()),
            "{e}"
        );
    }
}
