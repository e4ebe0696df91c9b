//! `tern token`: mint a participant token with the configured secret.

use std::path::PathBuf;

use anyhow::bail;

use crate::auth::TokenKeys;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    room: String,
    #[arg(long)]
    participant: String,
    #[arg(long)]
    name: Option<String>,
    /// Lifetime in seconds (default: auth.token_ttl_secs).
    #[arg(long)]
    ttl: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    if cfg.auth.secret.is_empty() {
        bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
    }
    let keys = TokenKeys::new(&cfg.auth.secret);
    let token = keys.mint(
        &args.room,
        &args.participant,
        args.name.as_deref(),
        args.ttl.unwrap_or(cfg.auth.token_ttl_secs),
    );
    keys.verify(&token)
        .map_err(|r| anyhow::anyhow!(r.message))?;
    println!("{token}");
    Ok(())
}
