//! A check of an SDP answer against its offer, by the rules of RFC 8829
//! (JSEP), RFC 8843 (BUNDLE), RFC 3264 (offer/answer), RFC 5763 (DTLS
//! roles), RFC 8285 (header extensions) and RFC 8853 (simulcast), as far as
//! an ICE-lite SFU's answer is concerned. Used by tests on the answers the
//! bridge really gives to browsers and other stacks' offers; each finding
//! is a sentence naming the rule.

/// One m-section, as much as the audit needs.
#[derive(Debug, Default)]
struct Section<'a> {
    kind: &'a str,
    port: &'a str,
    protos: &'a str,
    formats: Vec<&'a str>,
    mid: Option<&'a str>,
    direction: Option<&'a str>,
    setup: Option<&'a str>,
    rtcp_mux: bool,
    candidates: usize,
    end_of_candidates: bool,
    ufrag: bool,
    fingerprint: bool,
    rtpmap: Vec<(&'a str, String)>,
    extmap: Vec<(&'a str, &'a str)>,
    rids: Vec<(&'a str, &'a str)>,
    simulcast: Option<&'a str>,
}

#[derive(Debug, Default)]
struct Sdp<'a> {
    session: Section<'a>,
    bundle: Vec<&'a str>,
    ice_lite: bool,
    media: Vec<Section<'a>>,
}

fn parse(text: &str) -> Sdp<'_> {
    let mut sdp = Sdp::default();
    for l in text.lines().map(str::trim_end) {
        if let Some(m) = l.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            sdp.media.push(Section {
                kind: f.next().unwrap_or_default(),
                port: f.next().unwrap_or_default(),
                protos: f.next().unwrap_or_default(),
                formats: f.collect(),
                ..Section::default()
            });
            continue;
        }
        if let Some(g) = l.strip_prefix("a=group:BUNDLE") {
            sdp.bundle = g.split_whitespace().collect();
            continue;
        }
        if l == "a=ice-lite" {
            sdp.ice_lite = true;
            continue;
        }
        let s = sdp.media.last_mut().unwrap_or(&mut sdp.session);
        match l {
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => {
                s.direction = Some(&l[2..]);
            }
            "a=rtcp-mux" => s.rtcp_mux = true,
            "a=end-of-candidates" => s.end_of_candidates = true,
            _ => {}
        }
        if let Some(v) = l.strip_prefix("a=mid:") {
            s.mid = Some(v.trim());
        } else if let Some(v) = l.strip_prefix("a=setup:") {
            s.setup = Some(v.trim());
        } else if l.starts_with("a=candidate:") {
            s.candidates += 1;
        } else if l.starts_with("a=ice-ufrag:") {
            s.ufrag = true;
        } else if l.starts_with("a=fingerprint:") {
            s.fingerprint = true;
        } else if let Some(v) = l.strip_prefix("a=rtpmap:") {
            let mut f = v.split_whitespace();
            if let (Some(pt), Some(enc)) = (f.next(), f.next()) {
                s.rtpmap.push((pt, enc.to_ascii_lowercase()));
            }
        } else if let Some(v) = l.strip_prefix("a=extmap:") {
            let mut f = v.split_whitespace();
            if let (Some(id), Some(uri)) = (f.next(), f.next()) {
                // "3/sendonly": the id without its direction.
                s.extmap.push((id.split('/').next().unwrap_or(id), uri));
            }
        } else if let Some(v) = l.strip_prefix("a=rid:") {
            let mut f = v.split_whitespace();
            if let (Some(id), Some(dir)) = (f.next(), f.next()) {
                s.rids.push((id, dir));
            }
        } else if let Some(v) = l.strip_prefix("a=simulcast:") {
            s.simulcast = Some(v.trim());
        }
    }
    sdp
}

/// What is wrong with `answer` as the answer to `offer` (empty: nothing
/// this audit knows of).
pub fn audit_answer(offer: &str, answer: &str) -> Vec<String> {
    let (o, a) = (parse(offer), parse(answer));
    let mut out = Vec::new();
    if o.media.len() != a.media.len() {
        out.push(format!(
            "RFC 3264 §6: the answer has {} m-sections for the offer's {}",
            a.media.len(),
            o.media.len()
        ));
    }
    if !a.ice_lite {
        out.push(
            "the bridge is ICE-lite but the answer does not say a=ice-lite (RFC 8445 §5.3)".into(),
        );
    }
    let accepted: Vec<&str> = a
        .media
        .iter()
        .filter(|m| m.port != "0")
        .filter_map(|m| m.mid)
        .collect();
    if !accepted.is_empty() {
        if a.bundle.is_empty() {
            out.push("RFC 8843 §7.3: no a=group:BUNDLE in the answer".into());
        } else {
            if a.bundle != accepted {
                out.push(format!(
                    "RFC 8843 §7.3.1: BUNDLE {:?} is not the accepted m-sections {:?} in order",
                    a.bundle, accepted
                ));
            }
            if o.bundle.first() != a.bundle.first()
                && o.bundle.first().is_some_and(|t| accepted.contains(t))
            {
                out.push(format!(
                    "RFC 8843 §7.3.1: the offerer's tag {:?} was accepted but the answer's BUNDLE starts with {:?}",
                    o.bundle.first(),
                    a.bundle.first()
                ));
            }
        }
    }
    for (i, (om, am)) in o.media.iter().zip(&a.media).enumerate() {
        let name = format!("m-section {i} (mid {})", om.mid.unwrap_or("?"));
        if om.kind != am.kind {
            out.push(format!(
                "{name}: RFC 3264 §6: media {} answered as {}",
                om.kind, am.kind
            ));
        }
        if om.mid != am.mid {
            out.push(format!(
                "{name}: RFC 8829 §5.3.1: mid answered as {:?}",
                am.mid
            ));
        }
        if am.port == "0" {
            if a.bundle.contains(&am.mid.unwrap_or_default()) {
                out.push(format!("{name}: RFC 8843 §7.3.3: rejected but in BUNDLE"));
            }
            continue;
        }
        if om.protos != am.protos {
            out.push(format!(
                "{name}: RFC 3264 §6: proto {} answered as {}",
                om.protos, am.protos
            ));
        }
        let setup = am.setup.or(a.session.setup);
        if !matches!(setup, Some("active" | "passive")) {
            out.push(format!(
                "{name}: RFC 5763 §5: a=setup is {setup:?}, must be active or passive in an answer"
            ));
        }
        if !(am.fingerprint || a.session.fingerprint) {
            out.push(format!("{name}: RFC 8122: no a=fingerprint"));
        }
        if !(am.ufrag || a.session.ufrag) {
            out.push(format!("{name}: RFC 8839 §5.4: no a=ice-ufrag"));
        }
        if am.candidates == 0 || !am.end_of_candidates {
            out.push(format!(
                "{name}: {} candidates{}: an ICE-lite answer has all of them in every accepted m-section (RFC 8839 §5.1)",
                am.candidates,
                if am.end_of_candidates { "" } else { ", no a=end-of-candidates" }
            ));
        }
        if am.kind == "application" {
            continue;
        }
        if om.rtcp_mux && !am.rtcp_mux {
            out.push(format!(
                "{name}: RFC 8829 §5.3.1: the offer has a=rtcp-mux, the answer does not"
            ));
        }
        let od = om.direction.unwrap_or("sendrecv");
        let ad = am.direction.unwrap_or("sendrecv");
        let allowed: &[&str] = match od {
            "sendonly" => &["recvonly", "inactive"],
            "recvonly" => &["sendonly", "inactive"],
            "inactive" => &["inactive"],
            _ => &["sendrecv", "sendonly", "recvonly", "inactive"],
        };
        if !allowed.contains(&ad) {
            out.push(format!("{name}: RFC 3264 §6.1: {od} answered as {ad}"));
        }
        for (pt, enc) in &am.rtpmap {
            match om.rtpmap.iter().find(|(p, _)| p == pt) {
                Some((_, oenc)) if oenc == enc => {}
                Some((_, oenc)) => out.push(format!(
                    "{name}: RFC 3264 §6.1: payload type {pt} is {oenc} in the offer, {enc} in the answer"
                )),
                None => out.push(format!(
                    "{name}: RFC 3264 §6.1: payload type {pt} ({enc}) is not in the offer"
                )),
            }
            if !am.formats.contains(pt) {
                out.push(format!(
                    "{name}: rtpmap for {pt}, which the m-line does not list"
                ));
            }
        }
        for (id, uri) in &am.extmap {
            match om.extmap.iter().find(|(_, u)| u == uri) {
                Some((oid, _)) if oid == id => {}
                Some((oid, _)) => out.push(format!(
                    "{name}: RFC 8285 §6: {uri} has id {oid} in the offer, {id} in the answer"
                )),
                None => out.push(format!("{name}: RFC 8285 §6: {uri} was not offered")),
            }
        }
        // Simulcast the client sends: the answer receives the same rids.
        if let Some(sim) = om.simulcast
            && let Some(list) = sim.strip_prefix("send ")
        {
            let want: Vec<&str> = list
                .split([';', ','])
                .map(|r| r.trim_start_matches('~'))
                .collect();
            match am.simulcast.and_then(|s| s.strip_prefix("recv ")) {
                None => out.push(format!(
                    "{name}: RFC 8853 §5.3: the offer sends simulcast {list}, the answer has no a=simulcast:recv"
                )),
                Some(got) => {
                    let got: Vec<&str> =
                        got.split([';', ',']).map(|r| r.trim_start_matches('~')).collect();
                    if got != want {
                        out.push(format!(
                            "{name}: RFC 8853 §5.3: simulcast recv {got:?} for the offered send {want:?}"
                        ));
                    }
                    for r in &want {
                        if !am.rids.iter().any(|(id, dir)| id == r && *dir == "recv") {
                            out.push(format!("{name}: RFC 8851 §4: no a=rid:{r} recv in the answer"));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::audit_answer;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
a=setup:actpass\r\na=ice-ufrag:x\r\na=fingerprint:sha-256 AA\r\n\
a=rtpmap:111 opus/48000/2\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n";

    const ANSWER: &str = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n\
a=setup:passive\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\n\
a=rtpmap:111 opus/48000/2\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=candidate:1 1 udp 1 127.0.0.1 10000 typ host\r\na=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\n\
a=setup:passive\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\n\
a=rtpmap:96 VP8/90000\r\na=rid:q recv\r\na=rid:h recv\r\na=simulcast:recv q;h\r\n\
a=candidate:1 1 udp 1 127.0.0.1 10000 typ host\r\na=end-of-candidates\r\n";

    #[test]
    fn a_conforming_answer_has_no_findings() {
        assert_eq!(audit_answer(OFFER, ANSWER), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_named_when_broken() {
        let cases = [
            ("a=ice-lite\r\n", "", "ICE-lite"),
            (
                "a=setup:passive\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\na=rtpmap:96",
                "a=setup:actpass\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\na=rtpmap:96",
                "RFC 5763",
            ),
            (
                "a=mid:1\r\na=recvonly",
                "a=mid:1\r\na=sendonly",
                "RFC 3264 §6.1: sendonly answered as sendonly",
            ),
            (
                "a=rtpmap:96 VP8/90000",
                "a=rtpmap:97 VP8/90000",
                "payload type 97",
            ),
            ("a=extmap:1 urn", "a=extmap:5 urn", "RFC 8285"),
            ("a=simulcast:recv q;h", "a=simulcast:recv q", "RFC 8853"),
            ("a=group:BUNDLE 0 1", "a=group:BUNDLE 1 0", "RFC 8843"),
        ];
        for (from, to, rule) in cases {
            let broken = ANSWER.replacen(from, to, 1);
            assert_ne!(broken, ANSWER, "case {rule}: nothing replaced");
            let found = audit_answer(OFFER, &broken);
            assert!(
                found.iter().any(|f| f.contains(rule)),
                "{rule} not found in {found:?}"
            );
        }
        // The last m-section without its candidates.
        let cut = ANSWER
            .rsplitn(3, "a=candidate")
            .last()
            .unwrap_or_default()
            .to_string();
        assert!(
            audit_answer(OFFER, &cut)
                .iter()
                .any(|f| f.contains("candidates"))
        );
    }
}
