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
    fn an_answer_without_candidates_is_left_alone() {
        let sdp = answer(&["m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"]);
        assert_eq!(complete_candidates(&sdp), sdp);
    }
}
