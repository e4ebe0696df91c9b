//! The command line: the `Command` enum and its dispatch. Each subcommand's
//! arguments and what it does live in its own file here
//! (`tern bridge | focus | dev | clusterstatus | token | check-config | ca |
//! loadtest`); `runtime` holds what the long-running ones share. Nothing here
//! knows how a bridge or a focus works: the commands call the library's
//! public functions.

mod bridge;
mod ca;
mod check_config;
mod clusterstatus;
mod dev;
mod focus;
mod loadtest;
mod runtime;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tern", version, about = "Tern: a WebRTC SFU cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an edge bridge.
    Bridge(bridge::Args),
    /// Run the focus: placement, failover and the allocation API.
    Focus(focus::Args),
    /// Show every bridge the focus knows: online, region, versions, stress,
    /// conferences, endpoints, draining, last failure.
    Clusterstatus(clusterstatus::Args),
    /// Run a local cluster with development defaults — a focus and two
    /// bridges in two regions — and open the printed URL in two tabs.
    Dev(dev::Args),
    /// Mint a participant token with the configured secret.
    Token(token::Args),
    /// Validate a configuration file (and the relay certificates it names)
    /// and print the effective configuration.
    CheckConfig(check_config::Args),
    /// The cluster CA that authenticates bridges to each other on the relay
    /// mesh: create it once, then issue one certificate per bridge.
    Ca {
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Load a bridge (or Janus) with synthetic publishers and subscribers for
    /// a bounded time and print what they received.
    Loadtest(loadtest::Args),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging()?;
    dev::exit_with_parent();
    match cli.command {
        Command::Bridge(args) => bridge::run(args),
        Command::Focus(args) => focus::run(args),
        Command::Clusterstatus(args) => clusterstatus::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Token(args) => token::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Ca { command } => ca::run(command),
        Command::Loadtest(args) => loadtest::run(args),
    }
}

/// Logs go to stderr: plain text, coloured only on a terminal (a file or a
/// collector gets no ANSI codes; `NO_COLOR` turns colour off anywhere), or
/// one JSON object per line with `TERN_LOG_FORMAT=json`.
fn init_logging() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TERN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info,str0m=warn,dimpl=warn"));
    let format = std::env::var("TERN_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "json" => builder.json().with_current_span(true).init(),
        "" | "text" => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).init()
        }
        other => anyhow::bail!("TERN_LOG_FORMAT={other:?}: expected \"text\" or \"json\""),
    }
    Ok(())
}
