//! What the bridge's SDP answer tells about its candidates.
//!
//! str0m writes the bridge's ICE candidates into the first m-section only
//! (the BUNDLE tag, as RFC 8829 §5.3.1 allows) and no `a=end-of-candidates`.
//! Stacks that read candidates per m-section (aiortc 1.x among them) then
//! find none for the transport they pick and never connect. The bridge is
//! ICE-lite and knows every candidate it will ever have, so the answer says
//! so everywhere: each m-section that is not rejected carries the same
//! candidates (RFC 8859 puts `candidate` in the IDENTICAL category, so
//! repeating them is allowed) followed by `a=end-of-candidates` (RFC 8840).
//! Browsers bundle onto the first m-section and are unaffected.

/// Encodings that ride along with a media codec and are no codec themselves.
const AUXILIARY: [&str; 5] = ["rtx", "red", "ulpfec", "flexfec-03", "telephone-event"];

/// The first audio or video m-section of `offer` (not rejected) that offers
/// none of `supported` (SDP encoding names, any case), as a precise reason:
/// which section, what it offers, what the bridge forwards. Without this
/// str0m accepts such an offer and leaves the section without a codec, so
/// a publisher would send media nobody can receive and never hear why.
pub fn unsupported_codecs(offer: &str, supported: &[&str]) -> Option<String> {
    let mut sections: Vec<(&str, Option<&str>, bool, Vec<&str>)> = Vec::new();
    for l in offer.lines().map(str::trim_end) {
        if let Some(m) = l.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next().unwrap_or_default();
            let rejected = f.next() == Some("0");
            sections.push((kind, None, rejected, Vec::new()));
        } else if let Some(s) = sections.last_mut() {
            if let Some(mid) = l.strip_prefix("a=mid:") {
                s.1 = Some(mid);
            } else if let Some(r) = l.strip_prefix("a=rtpmap:") {
                // "96 VP8/90000": the name is between the space and the slash.
                if let Some(name) = r
                    .split_whitespace()
                    .nth(1)
                    .and_then(|e| e.split('/').next())
                {
                    s.3.push(name);
                }
            }
        }
    }
    let known = |n: &str| supported.iter().any(|s| s.eq_ignore_ascii_case(n));
    sections.into_iter().find_map(|(kind, mid, rejected, names)| {
        if rejected || !matches!(kind, "audio" | "video") || names.iter().any(|n| known(n)) {
            return None;
        }
        let offered: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !AUXILIARY.iter().any(|a| a.eq_ignore_ascii_case(n)))
            .collect();
        Some(format!(
            "m-section {} ({kind}) offers no codec this bridge forwards: offered [{}], supported [{}]",
            mid.unwrap_or("?"),
            offered.join(", "),
            supported.join(", "),
        ))
    })
}

/// `answer` with RED (RFC 2198) first in every audio m-line that
/// negotiated it. Browsers send with the first codec of the answer: Chromium
/// offers Opus before RED and sends plain Opus unless the answer puts RED
/// first. A receiver that did not negotiate RED gets the primary block
/// (`crate::red`), so preferring it costs nobody anything.
pub fn prefer_red(answer: &str) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = answer.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |n| i + 1 + n);
        if let Some(m) = l.strip_prefix("m=audio ") {
            let red: Option<&str> = lines[i + 1..end].iter().find_map(|a| {
                let r = a.strip_prefix("a=rtpmap:")?;
                let (pt, enc) = r.split_once(' ')?;
                enc.to_ascii_lowercase().starts_with("red/").then_some(pt)
            });
            let mut f: Vec<&str> = m.split(' ').collect();
            // port proto fmt...: move the RED format to the first place.
            if let Some(pt) = red
                && let Some(pos) = f.iter().skip(2).position(|x| *x == pt)
            {
                let pt = f.remove(pos + 2);
                f.insert(2, pt);
            }
            out.push(format!("m=audio {}", f.join(" ")));
        } else {
            out.push(l.to_string());
        }
        for a in &lines[i + 1..end] {
            out.push(a.to_string());
        }
        i = end;
    }
    let mut text = out.join(eol);
    if answer.ends_with('\n') {
        text.push_str(eol);
    }
    text
}

/// `answer` with every accepted m-section carrying all of the answer's
/// candidates and ending its candidate list with `a=end-of-candidates`.
/// Lines keep the answer's own line ending; an answer without candidates
/// (nothing to say) comes back unchanged.
pub fn complete_candidates(answer: &str) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = answer.lines().collect();
    let candidates: Vec<&str> = {
        let mut seen: Vec<&str> = Vec::new();
        for l in lines.iter().filter(|l| l.starts_with("a=candidate:")) {
            if !seen.contains(l) {
                seen.push(l);
            }
        }
        seen
    };
    if candidates.is_empty() {
        return answer.to_string();
    }
    let mut out = String::with_capacity(answer.len() + 256);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        if section.is_empty() {
            return;
        }
        let media = section[0].starts_with("m=");
        // `m=<media> 0 ...` is a rejected m-section: no transport at all.
        let rejected = section[0].split_whitespace().nth(1) == Some("0");
        for l in section
            .iter()
            .filter(|l| !(media && (l.starts_with("a=candidate:") || **l == "a=end-of-candidates")))
        {
            out.push_str(l);
            out.push_str(eol);
        }
        if media && !rejected {
            for c in &candidates {
                out.push_str(c);
                out.push_str(eol);
            }
            out.push_str("a=end-of-candidates");
            out.push_str(eol);
        }
        section.clear();
    };
    for l in lines {
        if l.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(l);
    }
    flush(&mut section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn red_goes_first_in_audio_m_lines_that_negotiated_it() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\na=mid:2\r\na=rtpmap:63 red/90000\r\n";
        let out = super::prefer_red(answer);
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\na=mid:0"),
            "{out}"
        );
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1"),
            "{out}"
        );
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\n"),
            "{out}"
        );
        assert_eq!(out.len(), answer.len());
        assert_eq!(super::prefer_red(&out), out, "idempotent");
    }

    use super::*;

    const CANDIDATE: &str = "a=candidate:1 1 udp 2130706175 192.0.2.1 10000 typ host";

    fn answer(sections: &[&str]) -> String {
        let mut s = String::from(
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0 1\r\n",
        );
        for x in sections {
            s.push_str(x);
        }
        s
    }

    fn section_of<'a>(sdp: &'a str, mid: &str) -> Vec<&'a str> {
        let mut cur = Vec::new();
        let mut found = Vec::new();
        for l in sdp.lines() {
            if l.starts_with("m=") {
                if cur.contains(&format!("a=mid:{mid}").as_str()) {
                    found = cur.clone();
                }
                cur.clear();
            }
            cur.push(l);
        }
        if cur.contains(&format!("a=mid:{mid}").as_str()) {
            found = cur;
        }
        found
    }

    #[test]
    fn every_bundled_m_section_gets_the_candidates_and_end_of_candidates() {
        let sdp = answer(&[
            &format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{CANDIDATE}\r\na=sendrecv\r\n"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n",
        ]);
        let out = complete_candidates(&sdp);
        for mid in ["0", "1"] {
            let s = section_of(&out, mid);
            assert_eq!(
                s.iter().filter(|l| **l == CANDIDATE).count(),
                1,
                "{mid}: {s:?}"
            );
            assert_eq!(s.last(), Some(&"a=end-of-candidates"), "{mid}: {s:?}");
        }
        // Nothing else moved or vanished.
        let other = |x: &str| {
            x.lines()
                .filter(|l| !l.starts_with("a=candidate") && *l != "a=end-of-candidates")
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(other(&out), other(&sdp));
        assert!(out.ends_with("\r\n") && !out.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn a_rejected_m_section_gets_no_candidates() {
        let sdp = answer(&[
            &format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{CANDIDATE}\r\n"),
            "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n",
        ]);
        let out = complete_candidates(&sdp);
        let s = section_of(&out, "1");
        assert!(
            !s.iter()
                .any(|l| l.starts_with("a=candidate") || *l == "a=end-of-candidates"),
            "{s:?}"
        );
    }

    #[test]
    fn applying_it_twice_changes_nothing_more() {
        let sdp = answer(&[
            &format!("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{CANDIDATE}\r\n"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n",
        ]);
        let once = complete_candidates(&sdp);
        assert_eq!(complete_candidates(&once), once);
    }

    #[test]
    fn an_offer_of_only_unsupported_video_codecs_is_named_precisely() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 98 99 100\r\na=mid:1\r\na=rtpmap:98 VP9/90000\r\n\
                     a=rtpmap:99 rtx/90000\r\na=rtpmap:100 AV1/90000\r\n";
        let why = unsupported_codecs(offer, &["opus", "VP8", "H264"]).expect("refused");
        assert_eq!(
            why,
            "m-section 1 (video) offers no codec this bridge forwards: offered [VP9, AV1], supported [opus, VP8, H264]"
        );
    }

    #[test]
    fn one_supported_codec_rejected_sections_and_data_are_enough() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98 96\r\na=mid:0\r\na=rtpmap:98 VP9/90000\r\n\
                     a=rtpmap:96 vp8/90000\r\nm=video 0 UDP/TLS/RTP/SAVPF 100\r\na=mid:1\r\n\
                     a=rtpmap:100 AV1/90000\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert_eq!(unsupported_codecs(offer, &["opus", "VP8", "H264"]), None);
    }

    proptest::proptest! {
        /// Offers come from the network: any text, no panic.
        #[test]
        fn any_text_is_checked_without_panicking(lines in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::string::string_regex("m=(audio|video|application) [0-9]{1,2} [A-Z/]{0,12} [0-9 ]{0,8}").expect("regex"),
                proptest::string::string_regex("a=(mid|rtpmap|candidate):[ -~]{0,24}").expect("regex"),
                proptest::string::string_regex("[ -~]{0,30}").expect("regex"),
            ],
            0..20,
        )) {
            let text = lines.join("\r\n");
            let _ = unsupported_codecs(&text, &["opus", "VP8"]);
            let _ = complete_candidates(&text);
        }
    }

    #[test]
    fn an_answer_without_candidates_is_left_alone() {
        let sdp = answer(&["m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"]);
        assert_eq!(complete_candidates(&sdp), sdp);
    }
}
