//! `tern dev`: a focus and two bridges as child processes of this one, with
//! throwaway secrets and relay certificates. Also owns the rule that those
//! children exit with their parent (`exit_with_parent`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::runtime::{runtime, shutdown_signal};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// HTTP address (browser client, signalling, metrics).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Media UDP address.
    #[arg(long)]
    media: Option<SocketAddr>,
}

/// The base address plus an offset; port 0 stays 0 (every process picks its
/// own and `tern dev` reads the real ones from their ready lines).
fn with_port(a: SocketAddr, offset: u16) -> SocketAddr {
    if a.port() == 0 {
        a
    } else {
        SocketAddr::new(a.ip(), a.port().saturating_add(offset))
    }
}

/// The address after `marker` in a ready line.
fn addr_after(line: &str, marker: &str) -> anyhow::Result<SocketAddr> {
    line.split(marker)
        .nth(1)
        .and_then(|r| r.split(['/', ' ', ')']).next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no address after {marker:?} in {line:?}"))
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
    // Children exit when `tern dev` dies, even by SIGKILL (see
    // `exit_with_parent`).
    cmd.env(PARENT_ENV, std::process::id().to_string());
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

/// Set for processes `tern dev` starts: the pid they must not outlive.
pub const PARENT_ENV: &str = "TERN_DEV_PARENT";

/// If started by `tern dev`, exit as soon as it is gone: a killed `tern dev`
/// must not leave a focus and bridges running (no `prctl(PR_SET_PDEATHSIG)`
/// without `unsafe`, so poll the parent pid instead).
pub fn exit_with_parent() {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    std::thread::spawn(move || {
        loop {
            if std::os::unix::process::parent_id() != parent {
                eprintln!("tern: parent tern dev ({parent}) is gone; exiting");
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

fn quoted(a: SocketAddr) -> String {
    format!("\"{a}\"")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    runtime()?.block_on(run_cluster(args.config, args.http, args.media))
}

async fn run_cluster(
    config: Option<PathBuf>,
    http: Option<SocketAddr>,
    media: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let http = http.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let media = media.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 10000)));
    let grpc = with_port(http, 3);
    let secret = |_: &str| format!("{:032x}", rand::random::<u128>());
    let (auth, api, bridge_secret) = (secret("auth"), secret("api"), secret("bridge"));

    let (mut focus, ready) = spawn(
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
    // "tern focus ready: grpc http://ADDR http http://ADDR/"
    let grpc = addr_after(&ready, "grpc http://")?;
    let http = addr_after(&ready, " http http://")?;
    println!(
        "tern dev: focus pid {} http {http} grpc {grpc}",
        focus.id().unwrap_or_default()
    );
    // The bridges relay to each other with certificates from a throwaway
    // cluster CA (an operator makes a lasting one with `tern ca`).
    // The pid alone is not unique: tests run `tern dev` in fresh PID
    // namespaces, and a killed run leaves its directory behind.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let pki = Scratch::create(
        std::env::temp_dir().join(format!("tern-dev-{}-{nanos}", std::process::id())),
    )?;
    let ca = crate::relay_net::ClusterCa::generate()?;
    // Only the CA certificate goes to disk: its key signs the two bridge
    // certificates below, in this process, and is never needed again.
    let ca_cert = pki.0.join("ca.pem");
    std::fs::write(&ca_cert, ca.cert_pem())
        .with_context(|| format!("writing {}", ca_cert.display()))?;
    // Recordings go to ./tern-recordings unless the environment or a
    // config file says where.
    let recordings = (config.is_none() && std::env::var_os("TERN_BRIDGE_RECORDINGS_DIR").is_none())
        .then(|| "tern-recordings".to_string());
    if let Some(dir) = &recordings {
        println!(
            "tern dev: recordings go to ./{dir}/ (a moderator starts one: /room/NAME?role=moderator)"
        );
    }
    let mut bridges = Vec::new();
    for (i, region) in ["local-a", "local-b"].into_iter().enumerate() {
        let i = i as u16;
        let (b_http, b_media) = (with_port(http, 1 + i), with_port(media, i));
        let b_relay = with_port(media, 100 + i);
        let id = crate::relay_net::BridgeId::new(region)?;
        let (cert, key) = ca.issue(&id)?.write(&pki.0)?;
        let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
        let mut env = vec![
            ("TERN_AUTH_SECRET", auth.clone()),
            ("TERN_BRIDGE_HTTP_LISTEN", quoted(b_http)),
            ("TERN_BRIDGE_MEDIA_LISTEN", quoted(b_media)),
            ("TERN_BRIDGE_REGION", format!("\"{region}\"")),
            ("TERN_BRIDGE_ID", format!("\"{region}\"")),
            ("TERN_BRIDGE_FOCUS_URL", format!("\"http://{grpc}\"")),
            ("TERN_BRIDGE_FOCUS_SECRET", format!("\"{bridge_secret}\"")),
            ("TERN_BRIDGE_DRAIN_TIMEOUT_SECS", "10".into()),
            ("TERN_RELAY_LISTEN", quoted(b_relay)),
            ("TERN_RELAY_CA_CERT", path(&ca_cert)),
            ("TERN_RELAY_CERT", path(&cert)),
            ("TERN_RELAY_KEY", path(&key)),
            // The files are deleted once read: nothing to watch.
            ("TERN_RELAY_RELOAD_INTERVAL_MS", "0".into()),
        ];
        if let Some(dir) = &recordings {
            env.push(("TERN_BRIDGE_RECORDINGS_DIR", format!("{dir:?}")));
        }
        let (child, ready) = spawn(&["bridge"], &config, &env).await?;
        // "tern bridge ready: http://ADDR/ (media udp ADDR)"
        let (b_http, b_media) = (
            addr_after(&ready, "http://")?,
            addr_after(&ready, "media udp ")?,
        );
        println!(
            "tern dev: bridge {region} pid {} http {b_http} media {b_media}",
            child.id().unwrap_or_default()
        );
        bridges.push(child);
    }
    // Bridges read their relay certificate and key once, before they print
    // their ready line: the keys need not stay on disk while the cluster runs.
    drop(pki);
    println!("tern dev: clusterstatus: tern clusterstatus --focus http://{grpc} --secret {api}");
    println!("tern dev ready: open http://{http}/room/hello in two browser tabs");

    // A bridge dying is something to watch the cluster heal from, not a
    // reason to stop; the focus dying or a signal ends the session.
    tokio::select! {
        _ = shutdown_signal() => {}
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

/// A directory removed with everything in it when dropped, so that a start
/// that fails half-way (a port in use, a bridge that exits) leaves no keys
/// behind either.
struct Scratch(PathBuf);

impl Scratch {
    fn create(path: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
