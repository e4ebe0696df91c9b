//! The orchestration files in `deploy/` agree with the binary and with each
//! other: the Kubernetes manifests render with `kubectl kustomize` and probe,
//! drain and wait as a bridge needs, the compose file mounts what exists and
//! publishes the ports the configurations listen on, and the configuration
//! each pod or container would see (`TERN_*` variables filled in) passes
//! `tern check-config`, relay certificates (made with `tern ca`) included.
//!
//! Needs `kubectl` and a `python3` with PyYAML (scripts/install-test-deps.sh
//! installs them); no Docker engine and no cluster.

#[path = "support/deploy_files.rs"]
mod deploy_files;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use deploy_files::*;

// ---------------------------------------------------------------------------
// Kubernetes

fn kustomize() -> Result<Vec<Value>> {
    let mut cmd = Command::new("kubectl");
    let rendered = stdout_of(cmd.arg("kustomize").arg(deploy("k8s")), "kubectl kustomize")?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), rendered)?;
    yaml_docs(file.path())
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    let is = |d: &&Value| d["kind"] == kind && d["metadata"]["name"] == name;
    docs.iter()
        .find(is)
        .with_context(|| format!("no {kind} {name}"))
}

fn container<'a>(workload: &'a Value, name: &str) -> Result<&'a Value> {
    let containers = &workload["spec"]["template"]["spec"]["containers"];
    let found = list(containers, "containers")?
        .iter()
        .find(|c| c["name"] == name);
    found.with_context(|| format!("no container {name}"))
}

/// The declared ports of a container.
fn declared_ports(c: &Value) -> Result<Ports> {
    let port = |p: &Value| -> Result<(u64, String)> {
        let n = p["containerPort"].as_u64().context("containerPort")?;
        let protocol = p["protocol"].as_str().unwrap_or("TCP");
        Ok((n, protocol.to_ascii_lowercase()))
    };
    list(&c["ports"], "ports")?.iter().map(port).collect()
}

/// The path a probe GETs; its port must be the HTTP listener's.
fn probe_path<'a>(c: &'a Value, probe: &str, http: u64) -> Result<&'a str> {
    let get = &c[probe]["httpGet"];
    let named = list(&c["ports"], "ports")?
        .iter()
        .find(|p| p["name"] == get["port"]);
    let port = named.map_or(&get["port"], |p| &p["containerPort"]).as_u64();
    ensure!(
        port == Some(http),
        "{}: {probe} port {port:?}, HTTP is {http}",
        c["name"]
    );
    str_of(&get["path"], probe)
}

#[test]
fn kubernetes_manifests_probe_health_and_ready_and_drain_bridges_before_exit() -> Result<()> {
    let (focus_cfg, bridge_cfg) = example_configs()?;
    let docs = kustomize()?;
    let focus = object(&docs, "Deployment", "tern-focus")?;
    let bridge = object(&docs, "StatefulSet", "tern-bridge")?;
    for (workload, name, cfg) in [
        (focus, "focus", &focus_cfg),
        (bridge, "bridge", &bridge_cfg),
    ] {
        let c = container(workload, name)?;
        let http = port(get(cfg, &format!("{name}.http_listen"))?)?;
        let (live, ready) = (
            probe_path(c, "livenessProbe", http)?,
            probe_path(c, "readinessProbe", http)?,
        );
        same(
            &format!("{name}: probes"),
            (live, ready),
            ("/health", "/ready"),
        )?;
        let declared = declared_ports(c)?;
        same(
            &format!("{name}: ports"),
            declared,
            listen_ports(name, cfg)?,
        )?;
    }

    let spec = &bridge["spec"]["template"]["spec"];
    same(
        "bridge hostNetwork",
        &spec["hostNetwork"],
        &Value::Bool(true),
    )?;
    let c = container(bridge, "bridge")?;
    let pre_stop = strings(&c["lifecycle"]["preStop"]["exec"]["command"], "preStop")?;
    ensure!(
        pre_stop.concat().contains("kill -TERM 1"),
        "preStop must send SIGTERM: {pre_stop:?}"
    );
    let drain: u64 = get(&bridge_cfg, "bridge.drain_timeout_secs")?.parse()?;
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .context("grace period")?;
    ensure!(
        grace > drain,
        "grace period {grace} s <= drain timeout {drain} s"
    );

    let pdb = object(&docs, "PodDisruptionBudget", "tern-bridge")?;
    let selector = &bridge["spec"]["selector"]["matchLabels"];
    same(
        "PDB selector",
        &pdb["spec"]["selector"]["matchLabels"],
        selector,
    )?;
    // The focus is ready only once a bridge registered: bridges must reach
    // it through a Service that does not wait for readiness.
    let envs = list(&c["env"], "env")?;
    let url = envs.iter().find(|v| v["name"] == "TERN_BRIDGE_FOCUS_URL");
    let url = str_of(
        url.map_or(&Value::Null, |v| &v["value"]),
        "TERN_BRIDGE_FOCUS_URL",
    )?;
    let host = url.trim_matches('"').trim_start_matches("http://");
    let service = host.split(':').next().unwrap_or_default();
    let svc = object(&docs, "Service", service)?;
    let not_ready = &svc["spec"]["publishNotReadyAddresses"];
    same(
        &format!("{service}: not ready"),
        not_ready,
        &Value::Bool(true),
    )?;
    Ok(())
}

/// Kubernetes' `$(VAR)` in an env value, from the variables before it.
fn expand_k8s(value: &str, known: &HashMap<String, String>) -> Result<String> {
    let (mut out, mut rest) = (String::new(), value);
    while let Some(i) = rest.find("$(") {
        let end = rest[i..].find(')').context("unclosed $(")? + i;
        let name = &rest[i + 2..end];
        let v = known
            .get(name)
            .with_context(|| format!("$({name}) is not defined before"))?;
        out.push_str(&rest[..i]);
        out.push_str(v);
        rest = &rest[end + 1..];
    }
    Ok(out + rest)
}

#[test]
fn kubernetes_pods_configuration_passes_check_config() -> Result<()> {
    let docs = kustomize()?;
    let dir = tempfile::tempdir()?;
    for (kind, name, role, pod) in [
        (
            "Deployment",
            "tern-focus",
            "focus",
            "tern-focus-5d9c7b-x2x4q",
        ),
        ("StatefulSet", "tern-bridge", "bridge", "tern-bridge-0"),
    ] {
        let workload = object(&docs, kind, name)?;
        let c = container(workload, role)?;
        // The config file: an item of a ConfigMap mounted as a directory.
        let config = config_arg(&strings(&c["args"], "args")?)?;
        let mounts = list(&c["volumeMounts"], "volumeMounts")?;
        let mount = mounts.iter().find_map(|m| {
            let rel = config
                .strip_prefix(m["mountPath"].as_str()?)?
                .trim_start_matches('/');
            Some((rel, m["name"].as_str()?))
        });
        let (item, volume) = mount.with_context(|| format!("{name}: {config} is not mounted"))?;
        let volumes = list(&workload["spec"]["template"]["spec"]["volumes"], "volumes")?;
        let cm = volumes
            .iter()
            .find(|v| v["name"] == volume)
            .map(|v| &v["configMap"]["name"]);
        let cm = str_of(
            cm.unwrap_or(&Value::Null),
            &format!("{name}: ConfigMap of {volume}"),
        )?;
        let body = str_of(&object(&docs, "ConfigMap", cm)?["data"][item], item)?;

        let relay = dir.path().join(role);
        let relay = if role == "bridge" {
            relay_files(&relay, &[pod])?
        } else {
            relay
        };
        let (mut known, mut env) = (HashMap::new(), Env::new());
        for e in list(&c["env"], "env")? {
            let key = str_of(&e["name"], "env name")?.to_string();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => expand_k8s(v, &known)?,
                (None, Some("metadata.name")) => pod.to_string(),
                (None, Some("status.hostIP")) => "192.0.2.10".to_string(),
                _ if e["valueFrom"]["secretKeyRef"].is_object() => secret(&key),
                _ => bail!("{name}: env {key} is not simulated here: {e}"),
            };
            known.insert(key.clone(), value.clone());
            env.push((key, relocate_relay(&value, &relay)));
        }
        let relay_mounted = mounts.iter().any(|m| m["mountPath"] == RELAY_DIR);
        ensure!(
            role == "focus" || relay_mounted,
            "{name}: nothing mounted at {RELAY_DIR}"
        );
        let file = dir.path().join(format!("{role}.toml"));
        std::fs::write(&file, relocate_relay(body, &relay))?;
        let cfg = must_pass(&file, &env, &format!("{name}'s configuration"))?;
        if role == "bridge" {
            same("bridge.id", get(&cfg, "bridge.id")?, &format!("{pod:?}"))?;
            let advertised = get(&cfg, "bridge.advertise_addr")?;
            same("advertised", advertised, "192.0.2.10:10000")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// compose

/// compose's `$$`, `${VAR}`, `${VAR:-default}` and `${VAR:?error}`.
fn interpolate(s: &str, vars: &HashMap<String, String>) -> Result<String> {
    let (mut out, mut rest) = (String::new(), s);
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            (out, rest) = (out + "$", r);
            continue;
        }
        let body = rest
            .strip_prefix('{')
            .with_context(|| format!("bare $ in {s:?}"))?;
        let end = body
            .find('}')
            .with_context(|| format!("unclosed ${{ in {s:?}"))?;
        let expr = &body[..end];
        let split = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        let (name, op) = expr.split_at(split.unwrap_or(expr.len()));
        let value = vars.get(name).filter(|v| !v.is_empty()).cloned();
        out.push_str(&match (op.get(..2), value) {
            (_, Some(v)) if op.is_empty() || op.starts_with(":-") || op.starts_with(":?") => v,
            (None, None) => String::new(),
            (Some(":-"), None) => op[2..].to_string(),
            (Some(":?"), None) => bail!("{name}: {}", &op[2..]),
            _ => bail!("${{{expr}}}: not understood here"),
        });
        rest = &body[end + 1..];
    }
    Ok(out + rest)
}

/// env.example filled in as its comments ask: every empty value (the
/// secrets) gets one.
fn compose_vars() -> Result<HashMap<String, String>> {
    let mut vars = HashMap::new();
    for line in read(&deploy("compose/env.example"))?.lines().map(str::trim) {
        if let Some((k, v)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let v = if v.is_empty() {
                secret(k)
            } else {
                v.to_string()
            };
            vars.insert(k.to_string(), v);
        }
    }
    Ok(vars)
}

/// A short-syntax volume: (host source, target).
fn mount(v: &Value) -> Result<(Option<&str>, &str)> {
    let v = str_of(v, "volume")?;
    let mut parts = v.split(':');
    let src = parts.next().filter(|s| s.starts_with(['.', '/']));
    let dst = parts.next().with_context(|| format!("{v:?}: no target"))?;
    Ok((src, dst))
}

struct Compose {
    doc: Value,
    vars: HashMap<String, String>,
}

impl Compose {
    fn load() -> Result<Self> {
        let doc = yaml_docs(&deploy("compose/compose.yaml"))?
            .into_iter()
            .next();
        Ok(Compose {
            doc: doc.context("compose.yaml is empty")?,
            vars: compose_vars()?,
        })
    }

    fn services(&self) -> Result<&serde_json::Map<String, Value>> {
        self.doc["services"].as_object().context("no services")
    }

    /// Services running `tern focus` or `tern bridge`: (name, role, service).
    fn tern(&self) -> Result<Vec<(&str, &str, &Value)>> {
        let mut out = Vec::new();
        for (name, s) in self.services()? {
            match s["command"].get(0).and_then(Value::as_str) {
                Some(role @ ("focus" | "bridge")) => out.push((name.as_str(), role, s)),
                _ => continue,
            }
        }
        Ok(out)
    }

    /// (host source, target) of a service's volumes; named volumes have no
    /// host source.
    fn mounts(s: &Value) -> Result<Vec<(Option<&str>, &str)>> {
        let volumes = s["volumes"].as_array().map_or(&[][..], Vec::as_slice);
        volumes.iter().map(mount).collect()
    }

    /// (published, target, protocol) of a service's ports, as
    /// `[ip:]published:target[/protocol]`.
    fn ports(&self, s: &Value) -> Result<Vec<(u64, u64, String)>> {
        let ports = s["ports"].as_array().map_or(&[][..], Vec::as_slice);
        let parse = |p: &Value| -> Result<(u64, u64, String)> {
            let p = interpolate(str_of(p, "port")?, &self.vars)?;
            let (spec, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            let mut parts = spec.rsplit(':');
            let target = parts.next().context("target")?.parse()?;
            let publ = parts
                .next()
                .with_context(|| format!("{p}: not published"))?
                .parse()?;
            Ok((publ, target, proto.to_string()))
        };
        ports.iter().map(parse).collect()
    }

    /// The configuration a service's container loads, with relay
    /// certificates made for its bridge id.
    fn config(&self, name: &str, s: &Value, dir: &Path) -> Result<Cfg> {
        let config = config_arg(&strings(&s["command"], "command")?)?;
        let mounts = Self::mounts(s)?;
        let source = mounts
            .iter()
            .find(|(_, dst)| *dst == config)
            .and_then(|(src, _)| *src);
        let source = source.with_context(|| format!("{name}: {config} is not mounted"))?;
        let mut env = Env::new();
        for (k, v) in s["environment"].as_object().into_iter().flatten() {
            let v =
                interpolate(str_of(v, k)?, &self.vars).with_context(|| format!("{name}: {k}"))?;
            env.push((k.clone(), v));
        }
        let id = env
            .iter()
            .find(|(k, _)| k == "TERN_BRIDGE_ID")
            .map(|(_, v)| v.trim_matches('"'));
        let relay = match id {
            Some(id) => {
                let mounted = mounts.iter().any(|(_, dst)| *dst == RELAY_DIR);
                ensure!(mounted, "{name}: nothing mounted at {RELAY_DIR}");
                relay_files(&dir.join(name), &[id])?
            }
            None => dir.join(name),
        };
        let env: Env = env
            .into_iter()
            .map(|(k, v)| (k, relocate_relay(&v, &relay)))
            .collect();
        let file = dir.join(format!("{name}.toml"));
        let body = read(&deploy("compose").join(source))?;
        std::fs::write(&file, relocate_relay(&body, &relay))?;
        must_pass(
            &file,
            &env,
            &format!("compose service {name}'s configuration"),
        )
    }
}

#[test]
fn compose_mounts_only_paths_that_exist_in_the_repository() -> Result<()> {
    let compose = Compose::load()?;
    let base = deploy("compose");
    let mut checked = 0;
    for (name, s) in compose.services()? {
        for (src, dst) in Compose::mounts(s)? {
            let Some(src) = src else { continue };
            ensure!(
                base.join(src).exists(),
                "{name} mounts {src} (at {dst}): no such path"
            );
            checked += 1;
        }
        if let Some(build) = s["build"].as_object() {
            let context = base.join(str_of(&build["context"], "build.context")?);
            ensure!(
                context.join("Cargo.toml").exists(),
                "{name}: context is not the repository"
            );
            let dockerfile = str_of(&build["dockerfile"], "build.dockerfile")?;
            ensure!(context.join(dockerfile).exists(), "{name}: no {dockerfile}");
        }
    }
    ensure!(
        checked >= 5,
        "only {checked} host paths: configs, Prometheus and Grafana expected"
    );
    Ok(())
}

#[test]
fn compose_publishes_the_ports_its_services_listen_on() -> Result<()> {
    let compose = Compose::load()?;
    let dir = tempfile::tempdir()?;
    let services = compose.tern()?;
    let bridges = services
        .iter()
        .filter(|(_, role, _)| *role == "bridge")
        .count();
    ensure!(
        bridges >= 2 && services.len() > bridges,
        "compose runs a focus and two bridges"
    );
    for (name, role, s) in services {
        let cfg = compose.config(name, s, dir.path())?;
        let ports = compose.ports(s)?;
        // Everything but the relay (between containers) reaches the host.
        let mut wanted = listen_ports(role, &cfg)?;
        if let Some(relay) = cfg.get("relay.listen") {
            wanted.remove(&(port(relay)?, "udp".to_string()));
        }
        let targets: Ports = ports.iter().map(|(_, t, p)| (*t, p.clone())).collect();
        same(&format!("{name}: published"), targets, wanted)?;
        if role != "bridge" {
            continue;
        }
        // Clients reach the media port at the advertised address; the
        // ICE-TCP candidate carries the port listened on.
        let media = port(get(&cfg, "bridge.media_listen")?)?;
        let advertised = port(get(&cfg, "bridge.advertise_addr")?)?;
        let host: Vec<u64> = ports.iter().filter(|p| p.1 == media).map(|p| p.0).collect();
        let same_port = host.iter().all(|h| *h == media);
        ensure!(same_port, "{name}: media {media} on host {host:?}");
        same(&format!("{name}: advertised media port"), advertised, media)?;
        let http = port(get(&cfg, "bridge.http_listen")?)?;
        let signal = get(&cfg, "bridge.signal_url")?;
        let host_http = ports
            .iter()
            .find(|p| p.1 == http && p.2 == "tcp")
            .map(|p| p.0);
        let host_http = host_http.context("HTTP not published")?;
        let reachable = signal.contains(&format!(":{host_http}/signal"));
        ensure!(reachable, "{name}: {signal} is not on {host_http}");
    }
    Ok(())
}

#[test]
fn compose_bridges_wait_for_their_relay_certificates_and_have_time_to_drain() -> Result<()> {
    let (_, example) = example_configs()?;
    let drain: u64 = get(&example, "bridge.drain_timeout_secs")?.parse()?;
    let compose = Compose::load()?;
    for (name, _, s) in compose.tern()?.into_iter().filter(|t| t.1 == "bridge") {
        let dep = &s["depends_on"]["relay-pki"]["condition"];
        same(name, dep.as_str(), Some("service_completed_successfully"))?;
        let grace = s["stop_grace_period"].as_str().unwrap_or("10s");
        let grace: u64 = grace.trim_end_matches('s').parse()?;
        ensure!(
            grace > drain,
            "{name}: stop_grace_period {grace}s <= {drain}s drain"
        );
    }
    Ok(())
}

/// Prometheus (deploy/prometheus, mounted by compose) scrapes every tern
/// service of compose at its HTTP port, and nothing else.
#[test]
fn prometheus_targets_name_compose_services_and_their_http_ports() -> Result<()> {
    let compose = Compose::load()?;
    let dir = tempfile::tempdir()?;
    let mut http = BTreeMap::new();
    for (name, role, s) in compose.tern()? {
        let cfg = compose.config(name, s, dir.path())?;
        let p = port(get(&cfg, &format!("{role}.http_listen"))?)?;
        http.insert(format!("{name}:{p}"), false);
    }
    let targets = deploy("prometheus/targets");
    let entries = std::fs::read_dir(&targets).with_context(|| format!("{targets:?}"))?;
    for file in entries.map(|e| e.map(|e| e.path())) {
        let file = file?;
        if !file.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            continue;
        }
        for group in yaml_docs(&file)?
            .iter()
            .filter_map(Value::as_array)
            .flatten()
        {
            for t in strings(&group["targets"], "targets")? {
                let known: Vec<&String> = http.keys().collect();
                let what = format!("{file:?}: target {t} is none of {known:?}");
                *http.get_mut(t).context(what)? = true;
            }
        }
    }
    let unscraped: Vec<&String> = http.iter().filter(|(_, s)| !**s).map(|(t, _)| t).collect();
    ensure!(unscraped.is_empty(), "Prometheus scrapes no {unscraped:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Dockerfile
