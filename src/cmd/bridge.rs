//! `tern bridge`: run an edge bridge until SIGTERM. Only parses and starts;
//! the bridge itself lives in `crate::bridge`.

use std::path::PathBuf;

use anyhow::bail;

use super::runtime::{install_metrics, runtime, shutdown_signal};
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file (see README); TERN_<SECTION>_<KEY> overrides.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Serve `/dev/token` (anyone can mint tokens): for a standalone
    /// demo bridge without a focus, never in production.
    #[arg(long)]
    dev_tokens: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    if cfg.auth.secret.is_empty() {
        bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
    }
    runtime()?.block_on(async move {
        let metrics = install_metrics()?;
        crate::bridge::run(
            cfg,
            args.dev_tokens,
            metrics,
            |b| {
                println!(
                    "tern bridge ready: http://{}/ (media udp {})",
                    b.http, b.media
                );
            },
            shutdown_signal(),
        )
        .await
    })
}
