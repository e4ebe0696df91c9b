//! Relay credentials and the revoked list while the bridge runs: every
//! `relay.reload_interval_ms` the files are read again, and when their
//! bytes changed they are loaded and checked as at startup. New credentials
//! go to the endpoint (handshakes after this present the new certificate
//! and trust the new CA; connections up stay); a set that does not load is
//! refused with its reason and the old one kept. A new revoked list is
//! applied to handshakes at once, and live connections to bridges on it are
//! closed. Comparing bytes, not modification times, catches the atomic
//! symlink swap a Kubernetes Secret update makes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use tracing::{info, warn};

use super::relay::RelayShared;
use crate::config::RelayConfig;
use crate::relay_net::{RelayEndpoint, load_identity, load_revoked};

/// QUIC application close code for a connection to a revoked bridge.
const CLOSE_REVOKED: u32 = 5;

/// What the files held when last looked at (`None`: unreadable or unset).
#[derive(PartialEq, Eq)]
struct Snapshot {
    credentials: Vec<Option<Vec<u8>>>,
    revoked: Option<Vec<u8>>,
}

fn snapshot(cfg: &RelayConfig) -> Snapshot {
    let read = |p: &Option<std::path::PathBuf>| p.as_ref().and_then(|p| std::fs::read(p).ok());
    Snapshot {
        credentials: vec![read(&cfg.ca_cert), read(&cfg.cert), read(&cfg.key)],
        revoked: read(&cfg.revoked_file),
    }
}

/// Register the metrics at zero (a bridge that relays).
pub fn describe(revoked: usize) {
    for result in ["ok", "failed"] {
        metrics::counter!("tern_relay_credential_reloads_total", "result" => result).absolute(0);
    }
    metrics::gauge!("tern_relay_revoked_bridges").set(revoked as f64);
}

/// Close live connections to revoked bridges.
pub fn close_revoked(shared: &RelayShared, revoked: &HashSet<String>) {
    for entry in shared.conns.iter() {
        if revoked.contains(&**entry.key()) {
            info!(peer = %entry.key(), "relay connection to a revoked bridge closed");
            entry
                .value()
                .conn
                .close(VarInt::from_u32(CLOSE_REVOKED), b"revoked");
        }
    }
}

/// Watch the files until the process ends.
pub fn spawn(cfg: RelayConfig, endpoint: Arc<RelayEndpoint>, shared: Arc<RelayShared>) {
    if cfg.reload_interval_ms == 0 {
        return;
    }
    let every = Duration::from_millis(cfg.reload_interval_ms);
    tokio::spawn(async move {
        let mut last = snapshot(&cfg);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = snapshot(&cfg);
            if now == last {
                continue;
            }
            // A file missing is a swap in progress (or files removed once
            // read, as `tern dev` does): wait for a complete set.
            let complete = now.credentials.iter().all(Option::is_some);
            if complete && now.credentials != last.credentials {
                match load_identity(&cfg)
                    .map_err(anyhow::Error::from)
                    .and_then(|c| Ok(endpoint.reload(&c.identity, &c.ca)?))
                {
                    Ok(()) => {
                        info!("relay credentials reloaded: new relay connections use them");
                        metrics::counter!("tern_relay_credential_reloads_total", "result" => "ok")
                            .increment(1);
                    }
                    Err(e) => {
                        warn!(error = %e, "relay credentials not reloaded: the previous ones stay");
                        metrics::counter!("tern_relay_credential_reloads_total", "result" => "failed")
                            .increment(1);
                    }
                }
            }
            if complete {
                last.credentials = now.credentials;
            }
            if now.revoked != last.revoked {
                match load_revoked(&cfg) {
                    Ok(ids) => {
                        info!(revoked = ids.len(), "relay revoked list reloaded");
                        metrics::gauge!("tern_relay_revoked_bridges").set(ids.len() as f64);
                        endpoint.set_revoked(ids.clone());
                        close_revoked(&shared, &ids);
                    }
                    Err(e) => {
                        warn!(error = %e, "relay revoked list not reloaded: the previous one stays");
                        metrics::counter!("tern_relay_credential_reloads_total", "result" => "failed")
                            .increment(1);
                    }
                }
            }
            last.revoked = now.revoked;
        }
    });
}
