//! Command line: `tern bridge`, `tern dev`, `tern token`, `tern check-config`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::auth::TokenKeys;
use crate::bridge;
use crate::config::Config;

#[derive(Parser)]
#[command(name = "tern", version, about = "Tern: a WebRTC SFU cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an edge bridge.
    Bridge {
        /// TOML configuration file (see README); TERN_<SECTION>_<KEY> overrides.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run everything locally with development defaults: open the printed URL
    /// in two tabs to talk to yourself.
    Dev {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// HTTP address (browser client, signalling, metrics).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Media UDP address.
        #[arg(long)]
        media: Option<SocketAddr>,
    },
    /// Mint a participant token with the configured secret.
    Token {
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
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig { config: PathBuf },
    /// Load a bridge (or Janus) with synthetic publishers and subscribers for
    /// a bounded time and print what they received.
    Loadtest(crate::loadtest::Args),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Bridge { config } => {
            let cfg = Config::load(config.as_deref())?;
            if cfg.auth.secret.is_empty() {
                bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
            }
            run_bridge(cfg, false)
        }
        Command::Dev {
            config,
            http,
            media,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(a) = http {
                cfg.bridge.http_listen = a;
            }
            if let Some(a) = media {
                cfg.bridge.media_listen = a;
            }
            if cfg.auth.secret.is_empty() {
                cfg.auth.secret = format!("{:032x}", rand::random::<u128>());
            }
            run_bridge(cfg, true)
        }
        Command::Token {
            config,
            room,
            participant,
            name,
            ttl,
        } => {
            let cfg = Config::load(config.as_deref())?;
            if cfg.auth.secret.is_empty() {
                bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
            }
            let keys = TokenKeys::new(&cfg.auth.secret);
            let token = keys.mint(
                &room,
                &participant,
                name.as_deref(),
                ttl.unwrap_or(cfg.auth.token_ttl_secs),
            );
            keys.verify(&token)
                .map_err(|r| anyhow::anyhow!(r.message))?;
            println!("{token}");
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(Some(&config))?;
            println!("{cfg:#?}");
            Ok(())
        }
        Command::Loadtest(args) => crate::loadtest::main(args),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TERN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info,str0m=warn,dimpl=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}

fn run_bridge(cfg: Config, dev: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tern-worker")
        .build()?;
    rt.block_on(async move {
        let metrics = install_metrics()?;
        bridge::run(
            cfg,
            dev,
            metrics,
            |b| {
                if dev {
                    println!(
                        "tern dev ready: open http://{}/room/hello in two browser tabs (media udp {})",
                        b.http, b.media
                    );
                } else {
                    println!(
                        "tern bridge ready: http://{}/ (media udp {})",
                        b.http, b.media
                    );
                }
            },
            shutdown_signal(),
        )
        .await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
