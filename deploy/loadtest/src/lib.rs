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
pub fn main(args: Args, mint: MintToken) -> Result<()> {
    if let Some(secs) = args.ceiling {
        if secs.is_nan() || secs <= 0.0 || secs > 600.0 {
            return Err(Error::BadArgument {
                flag: "--ceiling",
                why: "takes 0..600 seconds".into(),
            });
        }
        let c = ceiling::measure(secs, args.ceiling_reader_core)?;
        let read = c
            .seal_and_sendmmsg_read_pps
            .map(|r| format!(", into read sockets {r:.0} pkt/s"))
            .unwrap_or_default();
        let gso = c
            .seal_and_gso_read_pps
            .map(|r| format!(", as GSO messages of 4 {r:.0} pkt/s"))
            .unwrap_or_default();
        println!(
            "ceiling (one core): SRTP AES-256-GCM seal {:.0} pkt/s, UDP send {:.0} pkt/s, seal+send {:.0} pkt/s, seal+sendmmsg(32) {:.0} pkt/s{read}{gso} (1,200-byte packets)",
            c.seal_only_pps, c.send_only_pps, c.seal_and_send_pps, c.seal_and_sendmmsg_pps
        );
        if args.json.is_some() {
            let json = serde_json::to_string(&c).map_err(|source| Error::Serialize {
                what: "the ceiling",
                source,
            })?;
            println!("{json}");
        }
        return Ok(());
    }
    args.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .thread_name("tern-load")
        .build()
        .map_err(|source| Error::Io {
            what: "starting the load tool's runtime".into(),
            source,
        })?;
    let summary = rt.block_on(run(args.clone(), mint))?;
    print!("{}", summary.to_text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|source| Error::Serialize {
            what: "the summary",
            source,
        })?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").map_err(|source| Error::Io {
                what: format!("writing {}", path.display()),
                source,
            })?;
        }
    }
    let o = &summary.overall;
    if o.receivers_with_media < o.expected_receivers || o.failed > 0 {
        return Err(Error::RunFailed {
            receivers_with_media: o.receivers_with_media,
            expected_receivers: o.expected_receivers,
            failed: o.failed,
        });
    }
    Ok(())
}
