//! Command line: `tern bridge`, `tern focus`, `tern dev`, `tern clusterstatus`,
//! `tern token`, `tern check-config`, `tern ca`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::auth::TokenKeys;
use crate::bridge;
use crate::config::Config;
use crate::relay_net::{BridgeId, ClusterCa};

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
        /// Serve `/dev/token` (anyone can mint tokens): for a standalone
        /// demo bridge without a focus, never in production.
        #[arg(long)]
        dev_tokens: bool,
    },
    /// Run the focus: placement, failover and the allocation API.
    Focus {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show every bridge the focus knows: online, region, versions, stress,
    /// conferences, endpoints, draining, last failure.
    Clusterstatus {
        /// The focus's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:7000")]
        focus: String,
        /// API secret (default: focus.api_secret from the config / TERN_FOCUS_API_SECRET).
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a local cluster with development defaults — a focus and two
    /// bridges in two regions — and open the printed URL in two tabs.
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
    /// Validate a configuration file (and the relay certificates it names)
    /// and print the effective configuration.
    CheckConfig { config: PathBuf },
    /// The cluster CA that authenticates bridges to each other on the relay
    /// mesh: create it once, then issue one certificate per bridge.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Load a bridge (or Janus) with synthetic publishers and subscribers for
    /// a bounded time and print what they received.
    Loadtest(crate::loadtest::Args),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a cluster CA: writes DIR/ca.pem and DIR/ca-key.pem (mode
    /// 0600). Refuses to overwrite an existing CA.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lifetime of the CA certificate.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue a certificate for one bridge: writes OUT/<id>.pem and
    /// OUT/<id>-key.pem (mode 0600). Its id must be the bridge's `bridge.id`.
    Issue {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Bridge id: 1-63 of a-z, 0-9 and '-'.
        #[arg(long, value_name = "BRIDGE_ID")]
        id: BridgeId,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lifetime of the bridge certificate.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

fn ca_main(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { out, days } => {
            let ca = ClusterCa::generate_valid_for(DAY * u32::try_from(days)?)?;
            let (cert, key) = ca.write(&out)?;
            println!("wrote {} and {}", cert.display(), key.display());
            println!(
                "keep {} offline; bridges need only {}",
                key.display(),
                cert.display()
            );
        }
        CaCommand::Issue { ca, id, out, days } => {
            let ca = ClusterCa::load(&ca)?;
            let identity = ca.issue_valid_for(&id, DAY * u32::try_from(days)?)?;
            let (cert, key) = identity.write(&out)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
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
    Ok(())
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    crate::dev::exit_with_parent();
    match cli.command {
        Command::Bridge { config, dev_tokens } => {
            let cfg = Config::load(config.as_deref())?;
            if cfg.auth.secret.is_empty() {
                bail!("auth.secret is empty: set it in the config file or TERN_AUTH_SECRET");
            }
            run_bridge(cfg, dev_tokens)
        }
        Command::Focus { config } => {
            let cfg = Config::load(config.as_deref())?;
            runtime()?.block_on(crate::focus::run(
                cfg,
                |b| {
                    println!(
                        "tern focus ready: grpc http://{} http http://{}/",
                        b.grpc, b.http
                    );
                },
                shutdown_signal(),
            ))
        }
        Command::Clusterstatus {
            focus,
            secret,
            config,
        } => {
            let secret = match secret {
                Some(s) => s,
                None => Config::load(config.as_deref())?.focus.api_secret,
            };
            runtime()?.block_on(crate::dev::clusterstatus(&focus, &secret))
        }
        Command::Dev {
            config,
            http,
            media,
        } => runtime()?.block_on(crate::dev::run(config, http, media)),
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
            check_relay(&cfg)?;
            println!("{cfg:#?}");
            Ok(())
        }
        Command::Ca { command } => ca_main(command),
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tern-worker")
        .build()?)
}

fn run_bridge(cfg: Config, dev: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let metrics = install_metrics()?;
        bridge::run(
            cfg,
            dev,
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

pub(crate) async fn shutdown_signal() {
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
