//! `tern clusterstatus`: ask the focus for every bridge it knows and print
//! them as a table. A gRPC client only; it changes nothing in the cluster.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tern_proto::focus::v1 as fpb;

use super::runtime::runtime;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The focus's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:7000")]
    focus: String,
    /// API secret (default: focus.api_secret from the config / TERN_FOCUS_API_SECRET).
    #[arg(long)]
    secret: Option<String>,
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let secret = match args.secret {
        Some(s) => s,
        None => Config::load(args.config.as_deref())?.focus.api_secret,
    };
    runtime()?.block_on(clusterstatus(&args.focus, &secret))
}

async fn clusterstatus(focus: &str, secret: &str) -> anyhow::Result<()> {
    if secret.is_empty() {
        bail!("no API secret: pass --secret or set focus.api_secret / TERN_FOCUS_API_SECRET");
    }
    let channel = tonic::transport::Endpoint::from_shared(focus.to_string())
        .with_context(|| format!("invalid focus address {focus:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach the focus at {focus}"))?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {secret}")
        .parse()
        .context("the secret is not a valid header value")?;
    let mut client = fpb::focus_client::FocusClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        },
    );
    let bridges = client
        .list_bridges(fpb::ListBridgesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("focus refused: {} ({:?})", s.message(), s.code()))?
        .into_inner()
        .bridges;
    print!("{}", render_table(&bridges));
    Ok(())
}

/// The clusterstatus table (one row per bridge).
fn render_table(bridges: &[fpb::Bridge]) -> String {
    let header = [
        "BRIDGE",
        "STATUS",
        "REGION",
        "VERSION",
        "API",
        "STRESS",
        "CONFS",
        "ENDPOINTS",
        "DRAINING",
        "LAST FAILURE",
    ];
    let rows: Vec<[String; 10]> = bridges
        .iter()
        .map(|b| {
            let state =
                fpb::BridgeState::try_from(b.state).unwrap_or(fpb::BridgeState::Unspecified);
            [
                b.id.clone(),
                if b.online { "online" } else { "offline" }.to_string(),
                b.region.clone(),
                b.version.clone(),
                b.api_version.to_string(),
                format!("{:.3}", b.stress),
                b.conferences.to_string(),
                b.endpoints.to_string(),
                matches!(
                    state,
                    fpb::BridgeState::Draining | fpb::BridgeState::ShuttingDown
                )
                .then_some("yes")
                .unwrap_or("no")
                .to_string(),
                if b.last_failure.is_empty() {
                    "-".to_string()
                } else {
                    b.last_failure.clone()
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
