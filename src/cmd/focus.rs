//! `tern focus`: run the focus until SIGTERM. Only parses and starts; the
//! focus shell lives in `crate::focus`.

use std::path::PathBuf;

use super::runtime::{install_metrics, runtime, shutdown_signal};
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    let metrics = install_metrics()?;
    runtime()?.block_on(crate::focus::run(
        cfg,
        metrics,
        |b| {
            println!(
                "tern focus ready: grpc http://{} http http://{}/",
                b.grpc, b.http
            );
        },
        shutdown_signal(),
    ))
}
