//! WHIP (RFC 9725) and WHEP clients: what the bridge reads from their bare
//! SDP offers and how its refusals become HTTP statuses.
//!
//! A WHIP or WHEP client sends one offer over HTTP and nothing else: no
//! `join`, no `sources` declaration, no constraints. The bridge treats it as
//! a participant whose sending m-sections are its sources (named like the
//! browser client's, so other participants' pages show them the same way)
//! and whose receiving m-sections are receive slots filled by the default
//! policy (the most recent speakers, at the default height).

use crate::signal::{ErrorCode, Kind, LayerDecl, SourceDecl};

/// The height given to the top simulcast layer until a keyframe says
/// better; lower layers get half the one above (the browser's default
/// `scaleResolutionDownBy` ladder). Heights are corrected from VP8
/// keyframes, so these only order the layers.
const TOP_LAYER_HEIGHT: u32 = 720;

/// The sources a client that declares none publishes: every audio or video
/// m-section it sends on (`sendonly` or `sendrecv`, not rejected) with a
/// mid, in order. Audio is `mic`, video `camera`, further ones `mic-2`,
/// `camera-2`, ... Simulcast layers are the `a=rid:<id> send` of the
/// section in the order `a=simulcast:send` lists them (RFC 8853), lowest
/// first being the convention this bridge assumes; their heights are
/// placeholders until the first keyframe of each.
pub fn sources_from_offer(offer: &str) -> Vec<SourceDecl> {
    struct Section<'a> {
        kind: Option<Kind>,
        rejected: bool,
        mid: Option<&'a str>,
        sending: bool,
        rids: Vec<&'a str>,
        simulcast: Vec<&'a str>,
    }
    let mut sections: Vec<Section> = Vec::new();
    for l in offer.lines().map(str::trim_end) {
        if let Some(m) = l.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = match f.next() {
                Some("audio") => Some(Kind::Audio),
                Some("video") => Some(Kind::Video),
                _ => None,
            };
            sections.push(Section {
                kind,
                rejected: f.next() == Some("0"),
                mid: None,
                // RFC 4566: sendrecv unless the section says otherwise.
                sending: true,
                rids: Vec::new(),
                simulcast: Vec::new(),
            });
            continue;
        }
        let Some(s) = sections.last_mut() else {
            continue;
        };
        match l {
            "a=recvonly" | "a=inactive" => s.sending = false,
            "a=sendonly" | "a=sendrecv" => s.sending = true,
            _ => {}
        }
        if let Some(mid) = l.strip_prefix("a=mid:") {
            s.mid = Some(mid.trim());
        } else if let Some(r) = l.strip_prefix("a=rid:") {
            let mut f = r.split_whitespace();
            if let (Some(id), Some("send")) = (f.next(), f.next()) {
                s.rids.push(id);
            }
        } else if let Some(sim) = l.strip_prefix("a=simulcast:") {
            // "send q;h;f recv x": alternatives separated by ',', a paused
            // one prefixed '~'; the first alternative of each stream counts.
            let mut f = sim.split_whitespace();
            while let (Some(dir), Some(list)) = (f.next(), f.next()) {
                if dir == "send" {
                    s.simulcast = list
                        .split(';')
                        .filter_map(|alts| alts.split(',').next())
                        .map(|r| r.trim_start_matches('~'))
                        .collect();
                }
            }
        }
    }
    let mut counts = [0usize; 2];
    sections
        .into_iter()
        .filter(|s| !s.rejected && s.sending)
        .filter_map(|s| {
            let kind = s.kind?;
            let mid = s.mid?;
            let n = &mut counts[usize::from(kind == Kind::Video)];
            *n += 1;
            let base = if kind == Kind::Audio { "mic" } else { "camera" };
            let name = if *n == 1 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            };
            let order: Vec<&str> = if s.simulcast.is_empty() {
                s.rids.clone()
            } else {
                s.simulcast
                    .iter()
                    .copied()
                    .filter(|r| s.rids.contains(r))
                    .collect()
            };
            let layers = if kind == Kind::Video && order.len() > 1 {
                let top = order.len() - 1;
                order
                    .iter()
                    .enumerate()
                    .map(|(i, rid)| LayerDecl {
                        rid: rid.to_string(),
                        height: TOP_LAYER_HEIGHT >> (top - i).min(4),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Some(SourceDecl {
                mid: mid.to_string(),
                name,
                kind,
                layers,
            })
        })
        .collect()
}

/// The HTTP status a WHIP or WHEP request gets for a refusal with `code`:
/// the client's fault (4xx) or the bridge's state (503, worth retrying).
pub fn http_status(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InvalidToken | ErrorCode::TokenExpired => 401,
        ErrorCode::PublishNotAllowed => 403,
        ErrorCode::RateLimited | ErrorCode::TooManyConnections => 429,
        ErrorCode::MessageTooLarge => 413,
        ErrorCode::BadOffer | ErrorCode::BadMessage => 400,
        ErrorCode::Replaced
        | ErrorCode::ConferenceEnded
        | ErrorCode::UnsupportedCodec
        | ErrorCode::ConferenceMode => 409,
        ErrorCode::RoomFull
        | ErrorCode::ShuttingDown
        | ErrorCode::Overloaded
        | ErrorCode::UnsupportedVersion => 503,
        ErrorCode::NotJoined
        | ErrorCode::AlreadyJoined
        | ErrorCode::DataTooLarge
        | ErrorCode::DataNotText
        | ErrorCode::DataRateLimited => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBS_LIKE: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn a_plain_whip_offer_publishes_mic_and_camera() {
        let s = sources_from_offer(OBS_LIKE);
        assert_eq!(
            s,
            vec![
                SourceDecl {
                    mid: "0".into(),
                    name: "mic".into(),
                    kind: Kind::Audio,
                    layers: vec![]
                },
                SourceDecl {
                    mid: "1".into(),
                    name: "camera".into(),
                    kind: Kind::Video,
                    layers: vec![]
                },
            ]
        );
    }

    #[test]
    fn a_whep_offer_publishes_nothing() {
        let whep = OBS_LIKE.replace("a=sendonly", "a=recvonly");
        assert!(sources_from_offer(&whep).is_empty());
        let inactive = OBS_LIKE.replace("a=sendonly", "a=inactive");
        assert!(sources_from_offer(&inactive).is_empty());
    }

    #[test]
    fn rejected_sections_and_data_channels_are_no_sources() {
        let offer = OBS_LIKE.replace("m=audio 9 ", "m=audio 0 ")
            + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        let s = sources_from_offer(&offer);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "camera");
    }

    #[test]
    fn sendrecv_is_the_default_and_further_sections_are_numbered() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:w\r\na=sendrecv\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n";
        let names: Vec<(String, String)> = sources_from_offer(offer)
            .into_iter()
            .map(|s| (s.mid, s.name))
            .collect();
        assert_eq!(
            names,
            vec![
                ("v".to_string(), "camera".to_string()),
                ("w".to_string(), "camera-2".to_string()),
                ("a".to_string(), "mic".to_string()),
            ]
        );
    }

    #[test]
    fn simulcast_layers_follow_the_simulcast_line_lowest_first() {
        let offer = OBS_LIKE.to_string()
            + "a=rid:f send\r\na=rid:q send\r\na=rid:h send\r\na=rid:x recv\r\n\
a=simulcast:send q;h;~f\r\n";
        let s = sources_from_offer(&offer);
        let layers: Vec<(&str, u32)> = s[1]
            .layers
            .iter()
            .map(|l| (l.rid.as_str(), l.height))
            .collect();
        assert_eq!(layers, vec![("q", 180), ("h", 360), ("f", 720)]);
    }

    #[test]
    fn rids_without_a_simulcast_line_keep_their_order() {
        let offer = OBS_LIKE.to_string() + "a=rid:lo send\r\na=rid:hi send\r\n";
        let s = sources_from_offer(&offer);
        let rids: Vec<&str> = s[1].layers.iter().map(|l| l.rid.as_str()).collect();
        assert_eq!(rids, vec!["lo", "hi"]);
        assert_eq!(s[1].layers[1].height, 720);
    }

    #[test]
    fn token_problems_are_401_and_a_busy_bridge_is_503() {
        assert_eq!(http_status(ErrorCode::InvalidToken), 401);
        assert_eq!(http_status(ErrorCode::TokenExpired), 401);
        assert_eq!(http_status(ErrorCode::BadOffer), 400);
        assert_eq!(http_status(ErrorCode::Overloaded), 503);
        assert_eq!(http_status(ErrorCode::RoomFull), 503);
    }

    mod props {
        use super::super::sources_from_offer;
        use proptest::prelude::*;

        proptest! {
            /// Any text: never panics, every source names a mid that the
            /// offer has, and names are unique.
            #[test]
            fn any_offer_gives_unique_sources_with_real_mids(text in "(m=(audio|video) [09] X 1\r\n|a=mid:[a-c]\r\n|a=(sendonly|recvonly|inactive)\r\n|a=rid:[a-c] (send|recv)\r\n|a=simulcast:send [a-c~;,]{0,6}\r\n|junk\r\n){0,20}") {
                let s = sources_from_offer(&text);
                let mut names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                prop_assert_eq!(names.len(), s.len());
                for src in &s {
                    let mid_line = format!("a=mid:{}", src.mid);
                    prop_assert!(text.contains(&mid_line));
                }
            }
        }
    }
}
