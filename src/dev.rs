//! `tern dev` (a focus and two bridges as child processes) and
//! `tern clusterstatus`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tern_proto::focus::v1 as fpb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn with_port(a: SocketAddr, offset: u16) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().saturating_add(offset))
}

/// Start a child `tern` and return it with the first line it printed.
async fn spawn(
    args: &[&str],
    config: &Option<PathBuf>,
    env: &[(&str, String)],
) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("finding the tern executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting tern {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .with_context(|| format!("tern {} did not become ready", args.join(" ")))??
        .with_context(|| format!("tern {} exited during startup", args.join(" ")))?;
    // Keep reading so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, first))
}

fn quoted(a: SocketAddr) -> String {
    format!("\"{a}\"")
}

pub async fn run(
    config: Option<PathBuf>,
    http: Option<SocketAddr>,
    media: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let http = http.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let media = media.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 10000)));
    let grpc = with_port(http, 3);
    let secret = |_: &str| format!("{:032x}", rand::random::<u128>());
    let (auth, api, bridge_secret) = (secret("auth"), secret("api"), secret("bridge"));

    let (mut focus, _) = spawn(
        &["focus"],
        &config,
        &[
            ("TERN_AUTH_SECRET", auth.clone()),
            ("TERN_FOCUS_API_SECRET", api.clone()),
            ("TERN_FOCUS_BRIDGE_SECRET", bridge_secret.clone()),
            ("TERN_FOCUS_HTTP_LISTEN", quoted(http)),
            ("TERN_FOCUS_GRPC_LISTEN", quoted(grpc)),
            ("TERN_FOCUS_REGION", "\"local-a\"".into()),
        ],
    )
    .await?;
    println!(
        "tern dev: focus pid {} http {http} grpc {grpc}",
        focus.id().unwrap_or_default()
    );
    let mut bridges = Vec::new();
    for (i, region) in ["local-a", "local-b"].into_iter().enumerate() {
        let i = i as u16;
        let (b_http, b_media) = (with_port(http, 1 + i), with_port(media, i));
        let (child, _) = spawn(
            &["bridge"],
            &config,
            &[
                ("TERN_AUTH_SECRET", auth.clone()),
                ("TERN_BRIDGE_HTTP_LISTEN", quoted(b_http)),
                ("TERN_BRIDGE_MEDIA_LISTEN", quoted(b_media)),
                ("TERN_BRIDGE_REGION", format!("\"{region}\"")),
                ("TERN_BRIDGE_ID", format!("\"{region}\"")),
                ("TERN_BRIDGE_FOCUS_URL", format!("\"http://{grpc}\"")),
                ("TERN_BRIDGE_FOCUS_SECRET", format!("\"{bridge_secret}\"")),
                ("TERN_BRIDGE_DRAIN_TIMEOUT_SECS", "10".into()),
            ],
        )
        .await?;
        println!(
            "tern dev: bridge {region} pid {} http {b_http} media {b_media}",
            child.id().unwrap_or_default()
        );
        bridges.push(child);
    }
    println!("tern dev: clusterstatus: tern clusterstatus --focus http://{grpc} --secret {api}");
    println!("tern dev ready: open http://{http}/room/hello in two browser tabs");

    // A bridge dying is something to watch the cluster heal from, not a
    // reason to stop; the focus dying or a signal ends the session.
    tokio::select! {
        _ = crate::cli::shutdown_signal() => {}
        status = focus.wait() => eprintln!("tern dev: focus exited ({status:?})"),
    }
    for c in bridges.iter_mut().chain(std::iter::once(&mut focus)) {
        if let Some(pid) = c.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for c in bridges.iter_mut().chain(std::iter::once(&mut focus)) {
        if tokio::time::timeout(Duration::from_secs(15), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
    Ok(())
}

pub async fn clusterstatus(focus: &str, secret: &str) -> anyhow::Result<()> {
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
pub fn render_table(bridges: &[fpb::Bridge]) -> String {
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
