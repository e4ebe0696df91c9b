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
    /// A mixed conference at this sample rate (8000, 12000, 16000, 24000 or
    /// 48000 Hz): the token's `mix` claim.
    #[arg(long, value_name = "HZ")]
    mix: Option<u32>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    if cfg.auth.secret.is_empty() {
        bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
    }
    if let Some(rate) = args.mix
        && ![8_000, 12_000, 16_000, 24_000, 48_000].contains(&rate)
    {
        bail!("--mix {rate}: a mixed conference's rate is 8000, 12000, 16000, 24000 or 48000");
    }
    let keys = TokenKeys::new(&cfg.auth.secret);
    let ttl = args.ttl.unwrap_or(cfg.auth.token_ttl_secs);
    let token = keys.mint_claims(&crate::auth::Claims {
        room: args.room.clone(),
        sub: args.participant.clone(),
        name: args.name.clone(),
        exp: crate::auth::unix_now() + ttl,
        codec: None,
        publish: None,
        mix: args.mix,
        mix_video: None,
        moderator: None,
    });
    keys.verify(&token)
        .map_err(|r| anyhow::anyhow!(r.message))?;
    println!("{token}");
    Ok(())
}
