//! The deployment files in `deploy/` that configure one process agree
//! with the binary: the example configurations pass `tern check-config` (and
//! a typo in them does not), the systemd units pass `systemd-analyze verify`
//! and run hardened, and the Dockerfile exposes the configurations' ports.
//! `tests/deploy_orchestration.rs` checks Kubernetes and compose.
//!
//! Needs `systemd-analyze` (scripts/install-test-deps.sh installs it).

#[path = "support/deploy_files.rs"]
mod deploy_files;

use std::process::Command;

use anyhow::{Context, Result, ensure};

use deploy_files::*;

#[test]
fn example_configs_pass_check_config_with_secrets_from_the_environment() -> Result<()> {
    let dir = tempfile::tempdir()?;
    must_pass(&deploy("config/focus.toml"), &focus_env(), "focus.toml")?;
    let (file, env) = example_bridge(dir.path())?;
    let out = check_config(&file, &env)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{out:?}");
    // The relay credentials were loaded and checked against the CA.
    let trusted = "relay: certificate for bridge eu-west-1 is trusted by the cluster CA";
    ensure!(stdout.contains(trusted), "{stdout}");
    // Secrets are set (their lengths show) and never printed.
    ensure!(stdout.contains("secret: \"<redacted: "), "{stdout}");
    for (name, value) in &env {
        ensure!(
            !name.contains("SECRET") || !stdout.contains(value.trim_matches('"')),
            "check-config printed {name}'s value:\n{stdout}"
        );
    }
    Ok(())
}

/// No secret has a value in the files (each names its variable instead),
/// and every key of the sections a file is for is in it, set or named in a
/// comment: a key added to src/config.rs must be documented here.
#[test]
fn example_configs_hold_no_secret_and_mention_every_key_of_their_sections() -> Result<()> {
    let (_, bridge) = example_configs()?;
    // None prints nothing: set the optional keys the focus file leaves out.
    let mut with_optional = focus_env();
    with_optional.extend(env(&[("TERN_FOCUS_MAX_JOINS_PER_MINUTE", "1")]));
    let focus = must_pass(&deploy("config/focus.toml"), &with_optional, "focus.toml")?;
    let bridge_sections = &["bridge", "auth", "media", "relay"][..];
    let cases = [
        ("focus.toml", &["focus", "auth", "turn"][..], focus),
        ("bridge.toml", bridge_sections, bridge),
    ];
    for (file, sections, cfg) in cases {
        let body = read(&deploy("config").join(file))?;
        let table: toml::Table = body.parse().with_context(|| file.to_string())?;
        let mut missing = Vec::new();
        for key in cfg.into_keys() {
            let Some((section, name)) = key.split_once('.') else {
                continue;
            };
            if !sections.contains(&section) {
                continue;
            }
            if name.ends_with("secret") {
                let var = format!("TERN_{}", key.replace('.', "_").to_uppercase());
                let value = table.get(section).and_then(|s| s.get(name));
                ensure!(value.is_none(), "{file}: {key} is set, not {var}");
                ensure!(body.contains(&var), "{file} does not name {var}");
            } else if !body.contains(name) {
                missing.push(key);
            }
        }
        ensure!(missing.is_empty(), "{file} does not mention {missing:?}");
    }
    Ok(())
}

/// The first `key = value` of each section, misspelt: check-config must
/// refuse the copy and name the key (the check is real).
#[test]
fn check_config_refuses_the_example_configs_with_a_misspelt_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (bridge, bridge_env) = example_bridge(dir.path())?;
    for (original, env) in [
        (deploy("config/focus.toml"), focus_env()),
        (bridge, bridge_env),
    ] {
        let body = read(&original)?;
        let (mut section_start, mut tried) = (false, 0);
        for (i, line) in body.lines().enumerate() {
            section_start |= line.starts_with('[');
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if !section_start || line.starts_with('#') {
                continue;
            }
            section_start = false;
            let typo = format!("{key}x");
            let mut lines: Vec<String> = body.lines().map(String::from).collect();
            lines[i] = line.replacen(key, &typo, 1);
            let file = dir.path().join("broken.toml");
            std::fs::write(&file, lines.join("\n"))?;
            let out = check_config(&file, &env)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            let named = !out.status.success() && stderr.contains(&typo);
            ensure!(named, "{typo} in {original:?}: {stderr}");
            tried += 1;
        }
        ensure!(tried >= 3, "{original:?}: only {tried} sections tried");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// systemd

fn units() -> Result<Vec<(String, String)>> {
    ["tern-focus.service", "tern-bridge.service"]
        .into_iter()
        .map(|n| Ok((n.to_string(), read(&deploy("systemd").join(n))?)))
        .collect()
}

/// `systemd-analyze verify` on copies of the units whose binary is the one
/// just built (verify wants the ExecStart binary to exist). Any complaint
/// about them fails: verify exits 0 after warning about an unknown
/// directive.
fn verify_units(units: &[(String, String)]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]);
    for (name, body) in units {
        ensure!(body.contains("ExecStart=/usr/local/bin/tern "), "{name}");
        let copy = dir.path().join(name);
        std::fs::write(&copy, body.replace("/usr/local/bin/tern", TERN))?;
        cmd.arg(copy);
    }
    let out = run(&mut cmd, "systemd-analyze")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_ours = |l: &str| units.iter().any(|(n, _)| l.contains(n.as_str()));
    let ok = out.status.success() && !stderr.lines().any(about_ours);
    ensure!(ok, "systemd-analyze verify: {}\n{stderr}", out.status);
    Ok(())
}

/// The values of `key=` lines of a unit.
fn directives<'a>(body: &'a str, key: &str) -> Vec<&'a str> {
    body.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() -> Result<()> {
    verify_units(&units()?)
}

#[test]
fn systemd_verify_check_fails_on_a_misspelt_directive() -> Result<()> {
    let mut broken = units()?;
    broken[1].1 = broken[1].1.replace("KillMode=", "KilMode=");
    let e = verify_units(&broken).expect_err("a misspelt directive must fail the check");
    ensure!(e.to_string().contains("KilMode"), "{e:#}");
    Ok(())
}

#[test]
fn systemd_units_run_the_example_configs_hardened_and_outwait_the_drain() -> Result<()> {
    let (_, bridge) = example_configs()?;
    let drain: u64 = get(&bridge, "bridge.drain_timeout_secs")?.parse()?;
    for (name, body) in units()? {
        let role = ["bridge", "focus"].into_iter().find(|r| name.contains(r));
        let role = role.context("a unit per role")?;
        let exec = format!("/usr/local/bin/tern {role} --config /etc/tern/{role}.toml");
        let env_file = format!("/etc/tern/{role}.env");
        for (key, want) in [
            ("ExecStart", exec.as_str()),
            ("EnvironmentFile", &env_file),
            ("KillSignal", "SIGTERM"),
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("CapabilityBoundingSet", ""),
        ] {
            let found = directives(&body, key);
            same(&format!("{name}: {key}="), &found[..], &[want])?;
        }
        if role == "bridge" {
            let stop: u64 = directives(&body, "TimeoutStopSec").concat().parse()?;
            ensure!(stop > drain, "{name}: TimeoutStopSec={stop} < drain");
        }
    }
    Ok(())
}

#[test]
fn dockerfile_exposes_the_ports_of_the_example_configs() -> Result<()> {
    let (focus, bridge) = example_configs()?;
    let body = read(&deploy("Dockerfile"))?.replace("\\\n", " ");
    let instructions: Vec<(String, &str)> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(i, rest)| (i.to_uppercase(), rest.trim()))
        })
        .collect();
    let last = |i: &str| {
        instructions
            .iter()
            .rev()
            .find(|(k, _)| k == i)
            .map(|(_, v)| *v)
    };
    let mut exposed = Ports::new();
    for (_, ports) in instructions.iter().filter(|(i, _)| i == "EXPOSE") {
        for p in ports.split_whitespace() {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            exposed.insert((
                n.parse().with_context(|| format!("EXPOSE {p}"))?,
                proto.into(),
            ));
        }
    }
    let mut wanted = listen_ports("focus", &focus)?;
    wanted.extend(listen_ports("bridge", &bridge)?);
    same("EXPOSE", exposed, wanted)?;
    same("ENTRYPOINT", last("ENTRYPOINT"), Some(r#"["tern"]"#))?;
    let user = last("USER").context("no USER: the image would run as root")?;
    ensure!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    let build = "cargo build --release --locked --bin tern";
    let built = instructions
        .iter()
        .any(|(i, v)| i == "RUN" && v.contains(build));
    ensure!(built, "the builder does not run {build}");
    let ignore = read(&deploy("../.dockerignore"))?;
    ensure!(
        ignore.lines().any(|l| l.trim() == "target/"),
        ".dockerignore lets target/ in"
    );
    Ok(())
}
