//! `tern check-config`: validate a configuration file and the relay
//! certificates it names, and print the effective configuration with every
//! secret replaced by its length (the output gets pasted into tickets).

use std::path::PathBuf;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(Some(&args.config))?;
    check_relay(&cfg)?;
    println!("{:#?}", redacted(cfg));
    Ok(())
}

/// The configuration with each non-empty secret shown as
/// `<redacted: N chars>`.
fn redacted(mut cfg: Config) -> Config {
    for s in [
        &mut cfg.auth.secret,
        &mut cfg.bridge.focus_secret,
        &mut cfg.focus.api_secret,
        &mut cfg.focus.bridge_secret,
        &mut cfg.turn.secret,
    ] {
        if !s.is_empty() {
            *s = format!("<redacted: {} chars>", s.chars().count());
        }
    }
    cfg
}

/// Loads and cross-checks the relay credentials a config names.
fn check_relay(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.relay.is_configured() {
        return Ok(());
    }
    let creds = crate::relay_net::load_identity(&cfg.relay)?;
    let id = creds.identity.id();
    println!("relay: certificate for bridge {id} is trusted by the cluster CA");
    // Peers dial a bridge by the id the focus knows it by, so a certificate
    // for another id would be refused by every peer.
    if !cfg.bridge.id.is_empty() && cfg.bridge.id != id.as_str() {
        eprintln!(
            "warning: the relay certificate is for bridge {id} but bridge.id is {:?}; peers will refuse it",
            cfg.bridge.id
        );
    }
    let revoked = crate::relay_net::load_revoked(&cfg.relay)?;
    if cfg.relay.revoked_file.is_some() {
        println!("relay: {} bridge(s) revoked", revoked.len());
    }
    if revoked.contains(id.as_str()) {
        eprintln!("warning: this bridge's own id {id} is on relay.revoked_file");
    }
    Ok(())
}
