//! The room data channel in real browsers: chat between participants on
//! one bridge and across the relay, and the bridge's limits (size, rate)
//! refusing a sender with a precise error while everyone else carries on.
//!
//! Runs like tests/browser_e2e.rs (own network namespace, browser-test
//! lock, root, scripts/install-test-deps.sh):
//! `cargo nextest run --test browser_chat`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::{Check, Participant, run_in_netns, wait_until};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const CHAT_TIMEOUT: Duration = Duration::from_secs(10);
/// The bridge's limits (tern_sfu::MAX_DATA_MESSAGE, DATA_BURST).
const MAX_DATA_MESSAGE: usize = 16 * 1024;
const DATA_BURST: usize = 20;
const DATA_RATE: usize = 10;

/// `tern_data_messages_dropped_total{reason="rate_limited"}` over every
/// bridge.
fn rate_limited_drops(env: &support::Env) -> Result<u64> {
    Ok(env.bridges_metric(
        "tern_data_messages_dropped_total",
        "reason=\"rate_limited\"",
    )? as u64)
}

/// (from, text) of the chat messages `p` received from others.
fn received(p: &Participant) -> Result<Vec<(String, String)>> {
    let chat = p
        .browser
        .eval("window.tern.state().chat")
        .context("reading the chat")?;
    Ok(chat["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["self"] != Value::Bool(true))
                .map(|m| {
                    (
                        m["from"].as_str().unwrap_or_default().to_string(),
                        m["text"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn wait_channel_open(p: &Participant) -> Result<()> {
    wait_until(
        &format!("{}'s room data channel open", p.name),
        CONNECT_TIMEOUT,
        || {
            let open = p.browser.eval("window.tern.state().chat.open")?;
            Ok(if open == Value::Bool(true) {
                Check::Done(())
            } else {
                Check::NotYet(format!("open = {open}"))
            })
        },
    )
}

fn send_chat(p: &Participant, text: &str) -> Result<()> {
    let ok = p.browser.execute(
        "return window.tern.sendChat(arguments[0]);",
        vec![json!(text)],
    )?;
    ensure!(
        ok == Value::Bool(true),
        "{} could not send {text:?}",
        p.name
    );
    Ok(())
}

fn wait_gets(p: &Participant, from: &str, text: &str) -> Result<()> {
    wait_until(
        &format!("{} gets {text:?} from {from}", p.name),
        CHAT_TIMEOUT,
        || {
            let got = received(p)?;
            Ok(if got.iter().any(|(f, t)| f == from && t == text) {
                Check::Done(())
            } else {
                Check::NotYet(format!("{got:?}"))
            })
        },
    )
}

/// Error codes the page shows.
fn error_codes(p: &Participant) -> Result<Vec<String>> {
    Ok(p.state()?
        .errors
        .iter()
        .filter_map(|e| e["code"].as_str().map(str::to_string))
        .collect())
}

#[test]
fn browser_chat_reaches_everyone_on_the_same_bridge_and_across_the_relay() {
    run_in_netns(
        "browser_chat_reaches_everyone_on_the_same_bridge_and_across_the_relay",
        |env| {
            // Split: the focus puts each participant of a room on another
            // bridge in turn, so alice and carol share one and bob is across
            // the relay.
            let dev = env.start_bridge_with_env(&[("TERN_FOCUS_STRATEGY", "\"split\"")])?;
            ensure!(dev.is_focus(), "this test needs the focus and two bridges");
            wait_until("both bridges online at the focus", CONNECT_TIMEOUT, || {
                let bridges = dev.api_bridges()?;
                let online = bridges
                    .as_array()
                    .map_or(0, |b| b.iter().filter(|b| b["online"] == true).count());
                Ok(if online == 2 {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{bridges}"))
                })
            })?;
            let room = "chat-relay";
            let alice = env.join(room, "alice", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob = env.join(room, "bob", "")?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            let carol = env.join(room, "carol", "")?;
            let carol_id = carol.wait_connected(CONNECT_TIMEOUT)?;
            let mut on = Vec::new();
            for p in [&alice, &bob, &carol] {
                on.push(p.state()?.bridge.context("no bridge")?);
            }
            println!("alice, bob, carol on {on:?}");
            ensure!(
                on.iter().collect::<BTreeSet<_>>().len() == 2,
                "participants spread over both bridges: {on:?}"
            );
            for p in [&alice, &bob, &carol] {
                wait_channel_open(p)?;
                let others: Vec<&str> = ["alice", "bob", "carol"]
                    .into_iter()
                    .filter(|n| *n != p.name)
                    .collect();
                p.wait_sees(&others, CONNECT_TIMEOUT)?;
            }

            send_chat(&alice, "hello from alice")?;
            wait_gets(&bob, &alice_id, "hello from alice")?;
            wait_gets(&carol, &alice_id, "hello from alice")?;
            send_chat(&bob, "bob here, across the relay")?;
            wait_gets(&alice, &bob_id, "bob here, across the relay")?;
            wait_gets(&carol, &bob_id, "bob here, across the relay")?;
            send_chat(&carol, "and carol")?;
            wait_gets(&alice, &carol_id, "and carol")?;
            wait_gets(&bob, &carol_id, "and carol")?;
            // Each got every message once, and not its own back.
            for (p, n) in [(&alice, 2), (&bob, 2), (&carol, 2)] {
                let got = received(p)?;
                ensure!(got.len() == n, "{} got {got:?}", p.name);
            }
            // The page shows them.
            let shown = bob.browser.eval(
                "Array.from(document.querySelectorAll('#chat-log li')).map(li => li.textContent)",
            )?;
            println!("bob's chat log: {shown}");
            ensure!(
                shown.to_string().contains("hello from alice")
                    && shown.to_string().contains("alice"),
                "bob's page does not show alice's message by name: {shown}"
            );
            Ok(())
        },
    );
}

#[test]
fn browser_data_channel_refuses_oversized_and_flooding_messages_and_disturbs_nobody() {
    run_in_netns(
        "browser_data_channel_refuses_oversized_and_flooding_messages_and_disturbs_nobody",
        |env| {
            env.start_bridge()?;
            let room = "chat-limits";
            let alice = env.join(room, "alice", "")?;
            let alice_id = alice.wait_connected(CONNECT_TIMEOUT)?;
            let bob = env.join(room, "bob", "")?;
            let bob_id = bob.wait_connected(CONNECT_TIMEOUT)?;
            for p in [&alice, &bob] {
                wait_channel_open(p)?;
            }
            alice.wait_sees(&["bob"], CONNECT_TIMEOUT)?;
            send_chat(&alice, "first")?;
            wait_gets(&bob, &alice_id, "first")?;

            // Oversized: refused with data_too_large, bob gets nothing.
            let big = "x".repeat(MAX_DATA_MESSAGE + 1024);
            let sent = alice.browser.execute(
                "return window.tern.sendData(arguments[0]);",
                vec![json!(big)],
            )?;
            ensure!(sent == Value::Bool(true), "the page could not send 17 KiB");
            wait_until("alice told data_too_large", CHAT_TIMEOUT, || {
                let codes = error_codes(&alice)?;
                Ok(if codes.iter().any(|c| c == "data_too_large") {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{codes:?}"))
                })
            })?;

            // A flood: 60 at once. The burst passes, the rest is refused with
            // data_rate_limited. How many pass beyond the burst depends on how
            // fast the page's sends reach the bridge (the budget refills at
            // 10/s; on a loaded CI host 60 sends took ~0.6 s), so the check is
            // exact on what the bridge counted: every flood message was
            // either delivered or refused as rate-limited, and at least the
            // ones beyond what a second's refill allows were refused.
            let dropped_before = rate_limited_drops(env)?;
            alice.browser.execute(
                "for (let i = 0; i < 60; i++) window.tern.sendChat('flood ' + i); return true;",
                vec![],
            )?;
            wait_until("alice told data_rate_limited", CHAT_TIMEOUT, || {
                let codes = error_codes(&alice)?;
                Ok(if codes.iter().any(|c| c == "data_rate_limited") {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{codes:?}"))
                })
            })?;
            std::thread::sleep(Duration::from_secs(2));
            let flood = received(&bob)?
                .into_iter()
                .filter(|(_, t)| t.starts_with("flood "))
                .count();
            let refused = rate_limited_drops(env)? - dropped_before;
            println!("bob got {flood} of 60 flood messages; the bridge refused {refused}");
            ensure!(
                flood + refused as usize == 60,
                "of 60 flood messages bob got {flood} and the bridge refused {refused}"
            );
            // Alice's "first" message took a token from the burst; it is
            // back only if 100 ms passed before the flood (not always on
            // an idle machine: 19 seen at 00:26 on 2026-12-05).
            ensure!(
                (DATA_BURST - 1..=DATA_BURST + 2 * DATA_RATE).contains(&flood),
                "bob got {flood} of the 60 (burst {DATA_BURST}, {DATA_RATE}/s)"
            );
            // Nothing of the oversized one reached bob.
            ensure!(
                !received(&bob)?
                    .iter()
                    .any(|(_, t)| t.len() > MAX_DATA_MESSAGE),
                "the oversized message reached bob"
            );

            // Both carry on: alice's budget refills, bob was never limited,
            // and neither connection was disturbed.
            send_chat(&alice, "after the flood")?;
            wait_gets(&bob, &alice_id, "after the flood")?;
            send_chat(&bob, "bob still fine")?;
            wait_gets(&alice, &bob_id, "bob still fine")?;
            for p in [&alice, &bob] {
                let st = p.state()?;
                ensure!(
                    st.joined && st.pc == "connected" && st.ws == "open",
                    "{} disturbed: {st:?}",
                    p.name
                );
            }
            ensure!(
                error_codes(&bob)?.is_empty(),
                "bob was told errors: {:?}",
                error_codes(&bob)?
            );
            Ok(())
        },
    );
}
