//! One relay connection between two bridges, without the connection: the
//! hello exchange and version check, control framing, keepalive and RTT.
//!
//! The shell feeds it the bytes read from the control stream and writes out
//! what [`Link::poll_transmit`] returns; media datagrams only touch it
//! through [`Link::handle_datagram_seen`] (liveness). QUIC has its own idle
//! timeout; this one also catches a peer whose process is alive but whose
//! relay task is stuck, and gives the RTT the NACK timer needs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::msg::{Hello, Ping, Pong, RelayControl, relay_control::Msg};
use crate::wire::{ControlDecoder, encode_control};
use crate::{PROTOCOL_VERSION, RelayError};

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub local_id: String,
    pub software_version: String,
    pub ping_interval: Duration,
    /// Nothing received for this long closes the link.
    pub timeout: Duration,
}

impl LinkConfig {
    pub fn new(local_id: impl Into<String>) -> Self {
        Self {
            local_id: local_id.into(),
            software_version: String::new(),
            ping_interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(5000),
        }
    }
}

#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    /// Who the certificate says the peer is; its hello must agree.
    peer_id: String,
    decoder: ControlDecoder,
    out: Vec<u8>,
    delivered: VecDeque<RelayControl>,
    hello_received: bool,
    last_rx: Instant,
    next_ping: Instant,
    ping_seq: u64,
    ping_sent: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    error: Option<RelayError>,
}

impl Link {
    pub fn new(cfg: LinkConfig, peer_id: impl Into<String>, now: Instant) -> Self {
        let mut link = Self {
            next_ping: now + cfg.ping_interval,
            cfg,
            peer_id: peer_id.into(),
            decoder: ControlDecoder::default(),
            out: Vec::new(),
            delivered: VecDeque::new(),
            hello_received: false,
            last_rx: now,
            ping_seq: 0,
            ping_sent: None,
            rtt: None,
            error: None,
        };
        let hello = Msg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            bridge_id: link.cfg.local_id.clone(),
            software_version: link.cfg.software_version.clone(),
        });
        link.send(hello);
        link
    }

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The peer's hello arrived and was accepted.
    pub fn is_ready(&self) -> bool {
        self.hello_received && self.error.is_none()
    }

    /// Why the link must be closed, once it must.
    pub fn error(&self) -> Option<&RelayError> {
        self.error.as_ref()
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Queue a control message for the peer.
    pub fn send(&mut self, msg: Msg) {
        encode_control(&RelayControl { msg: Some(msg) }, &mut self.out);
    }

    /// Bytes to write to the control stream, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// The next control message for the bridge (never hello, ping or pong).
    pub fn poll_message(&mut self) -> Option<RelayControl> {
        self.delivered.pop_front()
    }

    pub fn handle_datagram_seen(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub fn handle_stream(&mut self, now: Instant, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.last_rx = now;
        self.decoder.push(bytes);
        while let Some(m) = self.decoder.next_message() {
            match m {
                Ok(m) => self.on_message(now, m),
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
            if self.error.is_some() {
                return;
            }
        }
    }

    fn on_message(&mut self, now: Instant, m: RelayControl) {
        let Some(msg) = m.msg else {
            // A message from a newer minor version with only unknown fields.
            return;
        };
        match (&msg, self.hello_received) {
            (Msg::Hello(h), false) => {
                if h.protocol_version != PROTOCOL_VERSION {
                    return self.fail(RelayError::Version(h.protocol_version));
                }
                if h.bridge_id != self.peer_id {
                    return self.fail(RelayError::WrongPeer {
                        expected: self.peer_id.clone(),
                        got: h.bridge_id.clone(),
                    });
                }
                self.hello_received = true;
            }
            (Msg::Hello(_), true) => self.fail(RelayError::DuplicateHello),
            (_, false) => self.fail(RelayError::NoHello),
            (Msg::Ping(p), true) => self.send(Msg::Pong(Pong { id: p.id })),
            (Msg::Pong(p), true) => {
                if let Some((id, at)) = self.ping_sent
                    && id == p.id
                {
                    self.rtt = Some(now.saturating_duration_since(at));
                    self.ping_sent = None;
                }
            }
            (_, true) => self.delivered.push_back(RelayControl { msg: Some(msg) }),
        }
    }

    fn fail(&mut self, e: RelayError) {
        tracing::warn!(peer = %self.peer_id, error = %e, "relay link failed");
        self.error = Some(e);
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_ping.min(self.last_rx + self.cfg.timeout)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        let silent = now.saturating_duration_since(self.last_rx);
        if silent >= self.cfg.timeout {
            return self.fail(RelayError::Timeout(silent.as_millis() as u64));
        }
        if now >= self.next_ping {
            self.next_ping = now + self.cfg.ping_interval;
            if self.hello_received {
                self.ping_seq += 1;
                self.ping_sent = Some((self.ping_seq, now));
                self.send(Msg::Ping(Ping { id: self.ping_seq }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{ConferenceJoined, Nack};

    fn pair(now: Instant) -> (Link, Link) {
        (
            Link::new(LinkConfig::new("a"), "b", now),
            Link::new(LinkConfig::new("b"), "a", now),
        )
    }

    fn exchange(now: Instant, x: &mut Link, y: &mut Link) {
        for _ in 0..4 {
            if let Some(b) = x.poll_transmit() {
                y.handle_stream(now, &b);
            }
            if let Some(b) = y.poll_transmit() {
                x.handle_stream(now, &b);
            }
        }
    }

    #[test]
    fn links_become_ready_after_hellos_and_deliver_messages_in_order() {
        let now = Instant::now();
        let (mut a, mut b) = pair(now);
        a.send(Msg::ConferenceJoined(ConferenceJoined {
            number: 1,
            name: "room".into(),
        }));
        a.send(Msg::Nack(Nack::default()));
        exchange(now, &mut a, &mut b);
        assert!(a.is_ready() && b.is_ready());
        assert!(matches!(
            b.poll_message().and_then(|m| m.msg),
            Some(Msg::ConferenceJoined(_))
        ));
        assert!(matches!(
            b.poll_message().and_then(|m| m.msg),
            Some(Msg::Nack(_))
        ));
        assert!(b.poll_message().is_none());
    }

    #[test]
    fn a_peer_claiming_another_identity_is_refused() {
        let now = Instant::now();
        let mut a = Link::new(LinkConfig::new("a"), "b", now);
        let mut c = Link::new(LinkConfig::new("c"), "a", now);
        exchange(now, &mut c, &mut a);
        assert_eq!(
            a.error(),
            Some(&RelayError::WrongPeer {
                expected: "b".into(),
                got: "c".into()
            })
        );
    }

    #[test]
    fn other_protocol_versions_and_messages_before_hello_are_refused() {
        let now = Instant::now();
        let mut a = Link::new(LinkConfig::new("a"), "b", now);
        let mut bytes = Vec::new();
        encode_control(
            &RelayControl {
                msg: Some(Msg::Hello(Hello {
                    protocol_version: 2,
                    bridge_id: "b".into(),
                    software_version: String::new(),
                })),
            },
            &mut bytes,
        );
        a.handle_stream(now, &bytes);
        assert_eq!(a.error(), Some(&RelayError::Version(2)));

        let mut a = Link::new(LinkConfig::new("a"), "b", now);
        let mut bytes = Vec::new();
        encode_control(
            &RelayControl {
                msg: Some(Msg::Nack(Nack::default())),
            },
            &mut bytes,
        );
        a.handle_stream(now, &bytes);
        assert_eq!(a.error(), Some(&RelayError::NoHello));

        let mut a = Link::new(LinkConfig::new("a"), "b", now);
        a.handle_stream(now, &[0x05, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(a.error(), Some(RelayError::BadFrame(_))));
    }

    #[test]
    fn silence_closes_the_link_and_pings_measure_rtt() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        exchange(t0, &mut a, &mut b);
        let t1 = t0 + Duration::from_millis(1000);
        a.handle_timeout(t1);
        let ping = a.poll_transmit().expect("ping queued");
        b.handle_stream(t1, &ping);
        let pong = b.poll_transmit().expect("pong queued");
        a.handle_stream(t1 + Duration::from_millis(30), &pong);
        assert_eq!(a.rtt(), Some(Duration::from_millis(30)));
        let late = t1 + Duration::from_millis(30) + Duration::from_millis(5000);
        a.handle_timeout(late);
        assert_eq!(a.error().map(RelayError::reason), Some("timeout"));
    }
}
