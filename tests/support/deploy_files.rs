//! What the deployment-file tests share: running `tern check-config` and
//! `tern ca`, the example configurations' ports, and YAML through python3's
//! PyYAML.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

pub const TERN: &str = env!("CARGO_BIN_EXE_tern");
/// Where every deployment keeps the relay credentials; tests move it.
pub const RELAY_DIR: &str = "/etc/tern/relay";

/// An effective configuration, `section.key` -> value as check-config
/// prints it.
pub type Cfg = BTreeMap<String, String>;
pub type Env = Vec<(String, String)>;
/// (port, "tcp" | "udp")
pub type Ports = BTreeSet<(u64, String)>;

pub fn deploy(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")).join(rel)
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.output().with_context(|| format!("running {what}"))
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn stdout_of(cmd: &mut Command, what: &str) -> Result<String> {
    let out = run(cmd, what)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{what} failed: {stderr}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect()
}

/// A hex secret, as `openssl rand -hex 32` would make.
pub fn secret(name: &str) -> String {
    let mut hex = String::from("c0ffee");
    for b in name.bytes().cycle().take(29) {
        hex += &format!("{b:02x}");
    }
    hex
}

pub fn port(addr: &str) -> Result<u64> {
    let p = addr.rsplit(':').next().unwrap_or_default();
    p.parse().with_context(|| format!("port of {addr:?}"))
}

/// `found` must be `want`.
pub fn same<T: PartialEq + std::fmt::Debug>(what: &str, found: T, want: T) -> Result<()> {
    ensure!(found == want, "{what}: {found:?}, expected {want:?}");
    Ok(())
}

pub fn get<'a>(cfg: &'a Cfg, key: &str) -> Result<&'a str> {
    let v = cfg.get(key).with_context(|| format!("{key} is not set"))?;
    Ok(v)
}

// ---------------------------------------------------------------------------
// tern check-config and tern ca

pub fn check_config(file: &Path, env: &[(String, String)]) -> Result<Output> {
    let mut cmd = Command::new(TERN);
    cmd.arg("check-config").arg(file).env_clear();
    run(cmd.envs(env.iter().cloned()), "tern check-config")
}

/// The configuration check-config printed (`{:#?}`): `Some(x)` is `x`,
/// `None` is absent.
pub fn effective(stdout: &str) -> Cfg {
    let (mut out, mut section, mut pending) = (Cfg::new(), String::new(), None);
    for line in stdout.lines() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim().trim_end_matches(',');
        if let Some(key) = pending.take() {
            out.insert(key, line.to_string());
        } else if let Some((name, value)) = line.split_once(": ") {
            match indent {
                4 => section = name.to_string(),
                8 if value == "Some(" => pending = Some(format!("{section}.{name}")),
                8 if value != "None" => {
                    out.insert(format!("{section}.{name}"), value.into());
                }
                _ => {}
            }
        }
    }
    out
}

/// check-config must accept `file` with `env`, without a warning.
pub fn must_pass(file: &Path, env: &[(String, String)], what: &str) -> Result<Cfg> {
    let out = check_config(file, env)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && !stderr.contains("warning");
    ensure!(ok, "tern check-config on {what}: {}\n{stderr}", out.status);
    Ok(effective(&String::from_utf8_lossy(&out.stdout)))
}

/// A cluster CA and a certificate per bridge id, made with `tern ca` as the
/// README says, in `dir/relay`: ca.pem, <id>.pem, <id>-key.pem.
pub fn relay_files(dir: &Path, ids: &[&str]) -> Result<PathBuf> {
    let (ca, relay) = (dir.join("ca"), dir.join("relay"));
    let tern_ca = |args: &[&str], dir: &Path| -> Result<String> {
        let mut cmd = Command::new(TERN);
        stdout_of(cmd.arg("ca").args(args).arg(dir), "tern ca")
    };
    tern_ca(&["init", "--out"], &ca)?;
    for id in ids {
        let ca = ca.to_string_lossy();
        tern_ca(&["issue", "--id", id, "--ca", &ca, "--out"], &relay)?;
    }
    std::fs::copy(ca.join("ca.pem"), relay.join("ca.pem"))?;
    Ok(relay)
}

pub fn relocate_relay(s: &str, relay: &Path) -> String {
    s.replace(RELAY_DIR, &relay.to_string_lossy())
}

pub fn focus_env() -> Env {
    let (auth, api, bridge) = (secret("auth"), secret("api"), secret("bridge"));
    env(&[
        ("TERN_AUTH_SECRET", &auth),
        ("TERN_FOCUS_API_SECRET", &api),
        ("TERN_FOCUS_BRIDGE_SECRET", &bridge),
    ])
}

/// deploy/config/bridge.toml with its relay files installed as its [relay]
/// comment says (in `dir`), and its secrets.
pub fn example_bridge(dir: &Path) -> Result<(PathBuf, Env)> {
    let relay = relay_files(dir, &["eu-west-1"])?;
    std::fs::copy(relay.join("eu-west-1.pem"), relay.join("bridge.pem"))?;
    let key = relay.join("bridge-key.pem");
    std::fs::copy(relay.join("eu-west-1-key.pem"), key)?;
    let file = dir.join("bridge.toml");
    let body = read(&deploy("config/bridge.toml"))?;
    std::fs::write(&file, relocate_relay(&body, &relay))?;
    let (auth, bridge) = (secret("auth"), secret("bridge"));
    let secrets = [
        ("TERN_AUTH_SECRET", &*auth),
        ("TERN_BRIDGE_FOCUS_SECRET", &bridge),
    ];
    Ok((file, env(&secrets)))
}

/// The effective focus and bridge configurations of deploy/config.
pub fn example_configs() -> Result<(Cfg, Cfg)> {
    let dir = tempfile::tempdir()?;
    let focus = must_pass(&deploy("config/focus.toml"), &focus_env(), "focus.toml")?;
    let (file, env) = example_bridge(dir.path())?;
    Ok((focus, must_pass(&file, &env, "bridge.toml")?))
}

/// What a focus or a bridge listens on.
pub fn listen_ports(role: &str, cfg: &Cfg) -> Result<Ports> {
    let p = |key: &str| port(get(cfg, key)?);
    let mut set = Ports::new();
    if role == "focus" {
        set.insert((p("focus.grpc_listen")?, "tcp".into()));
        set.insert((p("focus.http_listen")?, "tcp".into()));
    } else {
        set.insert((p("bridge.http_listen")?, "tcp".into()));
        set.insert((p("bridge.media_listen")?, "udp".into()));
        if get(cfg, "bridge.ice_tcp")? == "true" {
            set.insert((p("bridge.media_listen")?, "tcp".into()));
        }
        if cfg.contains_key("relay.listen") {
            set.insert((p("relay.listen")?, "udp".into()));
        }
    }
    Ok(set)
}

// ---------------------------------------------------------------------------
// YAML, through python3's PyYAML (serde_yaml is not a dependency)

pub fn yaml_docs(path: &Path) -> Result<Vec<Value>> {
    let script = "import json, sys, yaml\n\
                  docs = yaml.safe_load_all(open(sys.argv[1]))\n\
                  json.dump([d for d in docs if d is not None], sys.stdout)";
    let json = stdout_of(
        Command::new("python3").args(["-c", script]).arg(path),
        "python3 (with PyYAML) reading YAML",
    )?;
    Ok(serde_json::from_str(&json)?)
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> Result<&'a str> {
    v.as_str().with_context(|| format!("{what}: {v}"))
}

pub fn list<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array().with_context(|| format!("{what}: {v}"))
}

pub fn strings<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>> {
    list(v, what)?.iter().map(|s| str_of(s, what)).collect()
}

/// The value after `--config` in a command line.
pub fn config_arg<'a>(args: &[&'a str]) -> Result<&'a str> {
    let i = args
        .iter()
        .position(|a| *a == "--config")
        .unwrap_or(args.len());
    let path = args.get(i + 1).copied();
    path.with_context(|| format!("no --config: {args:?}"))
}
