//! `tern loadtest`: N publishers and M subscribers across R rooms, real
//! WebRTC (ICE, DTLS-SRTP) against a bridge, for a bounded time; then a
//! summary per room and overall (join time, received packets and bitrate,
//! loss, freezes, end-to-end delay from the timestamps publishers embed),
//! also as JSON. Freezes are counted twice: between complete frames, and
//! between frames the subscribers' decoders could show (`frz c/s`); the
//! PLIs those decoders sent are counted too.
//!
//! Each participant is one tokio task that owns its [`Peer`](tern_peer::Peer) outright (no
//! lock: nothing else touches it) and its own UDP socket; the runtime has
//! `--threads` workers so the whole tool can be pinned to one core with
//! `taskset` and measured (it reports its own CPU time too).
//!
//! Targets: Tern (`--target tern`): a focus (`tern dev`, `tern focus`),
//! which places each participant on a bridge through `/join` (in the region
//! `--publisher-region` / `--subscriber-region` ask for, so media can be
//! made to cross the relay between bridges), or one bridge (tokens from
//! `/dev/token`, or minted with `--secret`); or a Janus VideoRoom
//! (`--target janus`, see [`janus`]).
//!
//! A crate of its own so that it meets the bridge only where a user's
//! client would: signalling, `/join`, `/dev/token` and `/metrics`. It must
//! not link the bridge's shells; the one thing it borrows from the `tern`
//! binary, how `--secret` becomes a participant token, is handed to
//! [`main`] as a [`MintToken`].

pub mod ceiling;
pub mod error;
pub mod histogram;
pub mod http;
pub mod janus;
pub mod stats;

mod args;
mod ctx;
mod join;
mod measure;
mod participant;
mod report;
mod run;

use anyhow::{Context, bail};

pub use args::{Args, ServerPid, Target, parse_server, parse_server_pid};
pub use ctx::Ctx;
pub use error::{Error, Result};
pub use report::{BridgeUsage, ForwardLatencySummary, ProcessUsage, Summary};
pub use run::run;

/// Mints a participant token for `--secret`: `(secret, room, participant)`.
/// The token format belongs to the bridge that verifies it (`tern::auth`),
/// so the binary supplies this rather than the load tool copying it.
pub type MintToken = fn(secret: &str, room: &str, participant: &str) -> String;

/// Entry point of `tern loadtest`: exits non-zero on bad parameters, an
/// unreachable server, or a run in which some receiver got no media.
pub fn main(args: Args, mint: MintToken) -> anyhow::Result<()> {
    if let Some(secs) = args.ceiling {
        if secs.is_nan() || secs <= 0.0 || secs > 600.0 {
            bail!("--ceiling takes 0..600 seconds");
        }
        let c = ceiling::measure(secs, args.ceiling_reader_core)?;
        let read = c
            .seal_and_sendmmsg_read_pps
            .map(|r| format!(", into read sockets {r:.0} pkt/s"))
            .unwrap_or_default();
        println!(
            "ceiling (one core): SRTP AES-256-GCM seal {:.0} pkt/s, UDP send {:.0} pkt/s, seal+send {:.0} pkt/s, seal+sendmmsg(32) {:.0} pkt/s{read} (1,200-byte packets)",
            c.seal_only_pps, c.send_only_pps, c.seal_and_send_pps, c.seal_and_sendmmsg_pps
        );
        if args.json.is_some() {
            println!("{}", serde_json::to_string(&c)?);
        }
        return Ok(());
    }
    args.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .thread_name("tern-load")
        .build()?;
    let summary = rt.block_on(run(args.clone(), mint))?;
    print!("{}", summary.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let o = &summary.overall;
    if o.receivers_with_media < o.expected_receivers || o.failed > 0 {
        bail!(
            "{} of {} receivers got media, {} participants failed",
            o.receivers_with_media,
            o.expected_receivers,
            o.failed
        );
    }
    Ok(())
}
