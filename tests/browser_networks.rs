//! Networks that are not plain UDP, with real Chromium participants:
//!
//! - TURN with time-limited credentials: a real coturn (REST shared-secret
//!   auth, `use-auth-secret`) in the test's network namespace, a `tern dev`
//!   cluster configured with its URL and secret, and two participants that
//!   may only use relayed candidates (`iceTransportPolicy: "relay"`, the
//!   client's `?relay=1`). They get credentials from the focus's `/join`,
//!   coturn accepts them, and their media reaches each other through it.
//! - ICE-TCP: UDP to the bridges' media ports is dropped in the namespace
//!   (tc), so the participants can only use the bridges' passive TCP
//!   candidates (RFC 6544, RFC 4571 framing).
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh installs coturn):
//! `cargo nextest run --test browser_networks`.

mod support;

use std::fs::File;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use support::{Check, Participant, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const TURN_SECRET: &str = "turn-rest-secret-for-tests";

/// coturn, killed on drop.
struct Coturn {
    child: Child,
    log: std::path::PathBuf,
}

impl Coturn {
    fn start(dir: &std::path::Path) -> Result<Coturn> {
        let log = dir.join("coturn.log");
        let out = File::create(&log).context("creating coturn.log")?;
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--listening-port=3478",
                "--use-auth-secret",
                &format!("--static-auth-secret={TURN_SECRET}"),
                "--realm=tern.test",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                // The bridge is on 127.0.0.1 too: coturn refuses loopback
                // peers unless told.
                "--allow-loopback-peers",
                "--min-port=49160",
                "--max-port=49200",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
            ])
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting turnserver (scripts/install-test-deps.sh installs coturn)")?;
        let coturn = Coturn { child, log };
        // Ready when its relay servers are up; a browser that gathers
        // before that gets no relay candidate.
        wait_until("coturn is up", Duration::from_secs(10), || {
            let log = coturn.log();
            Ok(if log.contains("Total General servers") {
                Check::Done(())
            } else {
                Check::NotYet(log.lines().last().unwrap_or_default().to_string())
            })
        })?;
        Ok(coturn)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The type of the local and remote candidate of the page's selected pair,
/// and the remote candidate's protocol.
fn selected_pair(p: &Participant) -> Result<(String, String, String)> {
    let v = p.browser.execute(
        r#"return (async () => {
            const stats = await window.tern.pc().getStats();
            let pair = null;
            stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
            if (!pair) stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
            if (!pair) return null;
            const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
            return [local ? local.candidateType : '?', remote ? remote.candidateType : '?', remote ? remote.protocol : '?'];
        })();"#,
        vec![],
    )?;
    let pair = v
        .as_array()
        .with_context(|| format!("{}: no selected candidate pair: {v}", p.name))?;
    let field = |i: usize| {
        pair.get(i)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    Ok((field(0), field(1), field(2)))
}

/// Each of `a` and `b` decodes the other's camera and hears its microphone.
fn see_and_hear(a: &Participant, a_id: &str, b: &Participant, b_id: &str) -> Result<()> {
    for (p, from) in [(a, b_id), (b, a_id)] {
        let got = wait_until(
            &format!("{} decodes and hears {from}", p.name),
            MEDIA_TIMEOUT,
            || {
                let stats = p.stats()?;
                let Some(s) = stats.get(from) else {
                    return Ok(Check::NotYet(format!("{stats:?}")));
                };
                let video = s.video.as_ref().is_some_and(|v| v.frames_decoded >= 30);
                let audio = s
                    .audio
                    .as_ref()
                    .is_some_and(|a| a.packets_received >= 100 && a.total_audio_energy > 0.0);
                Ok(if video && audio {
                    Check::Done(s.clone())
                } else {
                    Check::NotYet(format!("{s:?}"))
                })
            },
        )?;
        println!("{} got from {from}: {got:?}", p.name);
    }
    Ok(())
}

#[test]
fn relay_only_browsers_reach_each_other_through_coturn_with_rest_credentials() {
    run_in_netns(
        "relay_only_browsers_reach_each_other_through_coturn_with_rest_credentials",
        |env| {
            let coturn = Coturn::start(env.dir())?;
            env.start_bridge_with_env(&[
                ("TERN_TURN_URLS", "[\"turn:127.0.0.1:3478?transport=udp\"]"),
                ("TERN_TURN_SECRET", &format!("\"{TURN_SECRET}\"")),
            ])?;
            let room = "turn-room";
            let alice = env.join(room, "alice", "relay=1")?;
            let bob = env.join(room, "bob", "relay=1")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;

            see_and_hear(&alice, &alice_id, &bob, &bob_id)?;
            // Relayed, really: the browser's end of the pair is coturn's.
            for p in [&alice, &bob] {
                let (local, remote, _) = selected_pair(p)?;
                println!("{}: selected pair {local} -> {remote}", p.name);
                ensure!(
                    local == "relay",
                    "{}'s selected pair is {local} -> {remote}, not through TURN",
                    p.name
                );
            }
            // coturn authenticated each with a REST username
            // (<expiry>:<participant id>) and allocated for it.
            let log = coturn.log();
            for id in [&alice_id, &bob_id] {
                ensure!(
                    log.lines()
                        .any(|l| l.contains(&format!(":{id}>")) && l.contains("username")),
                    "coturn's log has no session for username <expiry>:{id}:\n{}",
                    log.lines()
                        .filter(|l| l.contains("username") || l.contains("401"))
                        .take(20)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            Ok(())
        },
    );
}

/// `tc` in the namespace, failing with its stderr.
fn tc(args: &[&str]) -> Result<()> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .context("running tc")?;
    ensure!(
        out.status.success(),
        "tc {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn browsers_whose_udp_to_the_bridge_is_blocked_connect_over_ice_tcp() {
    run_in_netns(
        "browsers_whose_udp_to_the_bridge_is_blocked_connect_over_ice_tcp",
        |env| {
            let dev = env.start_bridge()?;
            // Drop every UDP datagram to a bridge's media port on lo: ICE
            // over UDP cannot succeed, only the TCP candidates can. (This
            // kernel has neither the prio qdisc nor the drop action: UDP to
            // those ports goes to an HTB class whose queue holds nothing.)
            tc(&[
                "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10",
            ])?;
            tc(&[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate",
                "10gbit", "quantum", "200000",
            ])?;
            tc(&[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate",
                "8bit", "ceil", "8bit", "burst", "1", "cburst", "1",
            ])?;
            tc(&[
                "qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "pfifo", "limit",
                "0",
            ])?;
            let bridges = dev.dev_bridges();
            ensure!(!bridges.is_empty(), "tern dev printed no bridges");
            for b in &bridges {
                let port = b
                    .media
                    .rsplit(':')
                    .next()
                    .context("media port")?
                    .to_string();
                tc(&[
                    "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1",
                    "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", &port,
                    "0xffff", "flowid", "1:20",
                ])?;
            }
            let room = "tcp-room";
            let alice = env.join(room, "alice", "")?;
            let bob = env.join(room, "bob", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            see_and_hear(&alice, &alice_id, &bob, &bob_id)?;
            for p in [&alice, &bob] {
                let (local, remote, protocol) = selected_pair(p)?;
                println!(
                    "{}: selected pair {local} -> {remote} over {protocol}",
                    p.name
                );
                ensure!(
                    protocol == "tcp" && remote == "host",
                    "{}'s selected pair is {local} -> {remote} over {protocol}, not the bridge's TCP candidate",
                    p.name
                );
            }
            Ok(())
        },
    );
}
