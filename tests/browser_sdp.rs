//! The bridge's SDP answer to what Chromium really offers (a camera with
//! three simulcast layers, a microphone, the receive-slot pool, the room
//! data channel), checked rule by rule (`tern_sfu::sdp_audit`: RFC 8829,
//! 8843, 3264, 5763, 8285, 8853).
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root): `cargo nextest run --test browser_sdp`.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::run_in_netns;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn the_answer_to_chromiums_offer_follows_jsep_bundle_and_offer_answer_rules() {
    run_in_netns(
        "the_answer_to_chromiums_offer_follows_jsep_bundle_and_offer_answer_rules",
        |env| -> Result<()> {
            env.start_bridge()?;
            let alice = env.join("sdp-room", "alice", "")?;
            alice.wait_connected(CONNECT_TIMEOUT)?;
            let sdp = alice.browser.execute(
                "return [window.tern.pc().localDescription.sdp, window.tern.lastAnswer()];",
                vec![],
            )?;
            let offer = sdp[0].as_str().context("offer")?;
            let answer = sdp[1].as_str().context("answer")?;
            let m_lines = offer.lines().filter(|l| l.starts_with("m=")).count();
            ensure!(
                offer.contains("a=simulcast:send")
                    && offer.contains("m=application")
                    && m_lines > 10,
                "Chromium's offer lacks what this test is about:\n{offer}"
            );
            let findings = tern_sfu::sdp_audit::audit_answer(offer, answer);
            println!("{m_lines} m-sections; findings: {findings:#?}");
            ensure!(
                findings.is_empty(),
                "the answer breaks {} rule(s):\n{}\n--- offer\n{offer}\n--- answer\n{answer}",
                findings.len(),
                findings.join("\n")
            );
            Ok(())
        },
    );
}
