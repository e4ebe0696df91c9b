//! `Peer` as the answerer (servers such as Janus offer to subscribers): two
//! peers in memory, one publishing with its usual offer, the other answering
//! it, ICE + DTLS + SRTP for real, on virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_peer::{Peer, PeerConfig, PeerOutput};
use tern_sfu::signal::{ClientMessage, ServerMessage, SlotInfo};

/// Moves every datagram one peer wants to send to the other; returns the
/// signalling messages it produced.
fn flush(now: Instant, from: &mut Peer, to: &mut Peer) -> Vec<ClientMessage> {
    let mut signals = Vec::new();
    while let Some(o) = from.poll_output() {
        match o {
            PeerOutput::Transmit {
                destination,
                contents,
            } if destination == to.local_addr() => {
                to.handle_datagram(now, from.local_addr(), &contents);
            }
            PeerOutput::Transmit { .. } => {}
            PeerOutput::Signal(m) => signals.push(m),
        }
    }
    signals
}

#[test]
fn a_peer_answers_an_offer_and_receives_what_the_offerer_sends() {
    let t0 = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:1000".parse().expect("addr");
    let b_addr: SocketAddr = "10.0.0.2:2000".parse().expect("addr");
    // A publishes audio and the three-layer ladder, receives nothing.
    let mut a_cfg = PeerConfig::new(a_addr);
    a_cfg.audio_slots = 0;
    a_cfg.video_slots = 0;
    let mut a = Peer::new(a_cfg, t0);
    // B only receives, and makes no offer of its own.
    let mut b_cfg = PeerConfig::new(b_addr);
    b_cfg.audio = false;
    b_cfg.video = vec![];
    let mut b = Peer::new(b_cfg, t0);

    a.start_offer(t0);
    assert!(a.state().joined);
    let mut offer = None;
    while let Some(o) = a.poll_output() {
        if let PeerOutput::Signal(ClientMessage::Offer { sdp, sources }) = o {
            offer = Some((sdp, sources));
        }
    }
    let (sdp, sources) = offer.expect("start_offer makes an offer");
    assert_eq!(sources.len(), 2, "{sources:?}");

    let answer = b.accept_offer(t0, &sdp).expect("answer");
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(b.state().answered && b.state().joined);
    // The driver knows what the offered mids carry and names them.
    b.handle_signal(
        t0,
        ServerMessage::Slots {
            slots: sources
                .iter()
                .map(|s| SlotInfo {
                    mid: s.mid.clone(),
                    source: Some(format!("a/{}", s.name)),
                    suspended: None,
                })
                .collect(),
        },
    );
    a.handle_signal(t0, ServerMessage::Answer { sdp: answer });
    assert!(a.state().answered, "{:?}", a.state().errors);

    let mut now = t0;
    let end = t0 + Duration::from_secs(2);
    while now < end {
        flush(now, &mut a, &mut b);
        flush(now, &mut b, &mut a);
        now = a.poll_timeout().min(b.poll_timeout()).max(now) + Duration::from_micros(100);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert!(a.state().connected && b.state().connected);
    assert!(a.state().errors.is_empty(), "{:?}", a.state().errors);
    assert!(b.state().errors.is_empty(), "{:?}", b.state().errors);

    let video = b.state().received_for("a/camera");
    let audio = b.state().received_for("a/mic");
    assert!(audio.len() > 50, "audio packets: {}", audio.len());
    // All three simulcast layers arrive (nothing selects between them here).
    for layer in 0..3u8 {
        assert!(
            video.iter().any(|r| r.layer == Some(layer)),
            "no packet of layer {layer}"
        );
    }
    assert!(video.iter().all(|r| r.sent_us.is_some()));
}
