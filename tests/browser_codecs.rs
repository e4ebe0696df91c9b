//! The video codec a bridge forwards is configurable (`media.codecs`):
//! Chromium participants on a `tern dev` cluster configured for H.264 send
//! and decode H.264 (simulcast included), as getStats' codec says.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root): `cargo nextest run --test browser_codecs`.

mod support;

use std::time::Duration;

use anyhow::{Result, ensure};
use support::{Check, Participant, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// The mime types of the page's inbound and outbound video (getStats).
fn video_codecs(p: &Participant) -> Result<(Vec<String>, Vec<String>)> {
    let v = p.browser.execute(
        r#"return (async () => {
            const stats = await window.tern.pc().getStats();
            const inbound = [], outbound = [];
            stats.forEach((r) => {
                if (r.kind !== 'video' || !r.codecId) return;
                const c = stats.get(r.codecId);
                if (!c) return;
                if (r.type === 'inbound-rtp' && (r.framesDecoded || 0) > 0) inbound.push(c.mimeType);
                if (r.type === 'outbound-rtp' && (r.framesEncoded || 0) > 0) outbound.push(c.mimeType);
            });
            return [inbound, outbound];
        })();"#,
        vec![],
    )?;
    let list = |i: usize| -> Vec<String> {
        v[i].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok((list(0), list(1)))
}

#[test]
fn a_bridge_configured_for_h264_carries_h264_between_chromium_participants() {
    run_in_netns(
        "a_bridge_configured_for_h264_carries_h264_between_chromium_participants",
        |env| {
            env.start_bridge_with_env(&[("TERN_MEDIA_CODECS", "[\"opus\", \"h264\"]")])?;
            let room = "h264-room";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            for (p, from) in [(&alice, &bob_id), (&bob, &alice_id)] {
                let got = wait_until(
                    &format!("{} decodes {from}'s camera", p.name),
                    MEDIA_TIMEOUT,
                    || {
                        let stats = p.stats()?;
                        Ok(
                            match stats.get(from.as_str()).and_then(|s| s.video.clone()) {
                                Some(v) if v.frames_decoded >= 30 && v.frame_height > 0 => {
                                    Check::Done(v)
                                }
                                other => Check::NotYet(format!("{other:?}")),
                            },
                        )
                    },
                )?;
                println!("{} decodes {from}: {got:?}", p.name);
            }
            for p in [&alice, &bob] {
                let (inbound, outbound) = video_codecs(p)?;
                println!("{}: receives {inbound:?}, sends {outbound:?}", p.name);
                ensure!(
                    !inbound.is_empty()
                        && inbound.iter().all(|m| m.eq_ignore_ascii_case("video/H264")),
                    "{} decodes {inbound:?}, not H.264",
                    p.name
                );
                ensure!(
                    !outbound.is_empty()
                        && outbound
                            .iter()
                            .all(|m| m.eq_ignore_ascii_case("video/H264")),
                    "{} sends {outbound:?}, not H.264",
                    p.name
                );
            }
            Ok(())
        },
    );
}
