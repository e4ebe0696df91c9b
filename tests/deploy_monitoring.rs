//! The fleet's monitoring (issue 19): `deploy/prometheus` (scrape config,
//! alert rules and their unit tests) and `deploy/grafana` (provisioning and
//! dashboards), checked against the real thing.
//!
//! - `promtool` accepts the config (with its file_sd target files) and the
//!   rules, and the rules' unit tests (`alerts_test.yml`) pass.
//! - The dashboards are Grafana JSON that provisioning can load: the data
//!   source by uid `prometheus`, panels with PromQL targets, no variable
//!   that is not defined.
//! - Every metric a dashboard or an alert names is one a real `tern dev`
//!   exports (a histogram's `_bucket`, `_count` and `_sum`; `up` is
//!   Prometheus's own). Some series appear only once something happens,
//!   so the test first makes it happen: a short `tern loadtest` with the
//!   publisher in one region and the subscriber in the other (relay links
//!   and handshakes), and a WHIP offer without a token at the focus (its
//!   HTTP session counter).
//! - A real Prometheus with the deploy config (only the global intervals
//!   shortened) scrapes `tern dev`'s focus and bridges, sees media while a
//!   load test runs, loads every alert rule and evaluates it without
//!   error, and answers every dashboard query.
//!
//! Needs `/usr/bin/prometheus` and `/usr/bin/promtool` (Debian's
//! `prometheus` package; `scripts/install-test-deps.sh` installs it).

#[path = "support/deploy_exprs.rs"]
mod deploy_exprs;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/promql.rs"]
mod promql;
#[path = "support/tern_process.rs"]
mod tern_process;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use deploy_exprs::{
    GRAFANA_VARIABLES, alert_rules, all_exprs, dashboard_exprs, dashboards, datasource, deploy,
    panels, read, variables_used,
};
use prometheus::Prometheus;
use promql::{Selector, is_word, selectors};
use serde_json::Value;
use tern_process::{Tern, TernCommand};

const PROMTOOL: &str = "/usr/bin/promtool";

// ---------------------------------------------------------------------------
// promtool

fn promtool(dir: &Path, args: &[&str]) -> Output {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/install-test-deps.sh"
    );
    Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"))
}

fn assert_promtool(args: &[&str]) {
    let out = promtool(&deploy("prometheus"), args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("promtool {}:\n{stdout}{stderr}", args.join(" "));
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{stdout}{stderr}",
        args.join(" "),
        out.status
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_the_rule_tests_pass() {
    // `check config` also reads the rule files and the file_sd target
    // files the globs match (the compose cluster's targets).
    assert_promtool(&["check", "config", "prometheus.yml"]);
    assert_promtool(&["check", "rules", "alerts.yml"]);
    assert_promtool(&["test", "rules", "alerts_test.yml"]);
}

#[test]
fn the_dashboards_are_grafana_json_that_provisioning_loads() {
    let ds = datasource();
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["bridge.json", "fleet.json", "focus.json"] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    let mut uids = BTreeSet::new();
    for (name, d) in &all {
        let text = d.to_string();
        assert!(
            !text.contains("DS_PROMETHEUS") && !text.contains("__inputs"),
            "{name}: an import-time data source placeholder; use {ds}"
        );
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{name}: uid {:?}",
            d["uid"]
        );
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} twice");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        let schema = d["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            (36..=41).contains(&schema),
            "{name}: schemaVersion {schema}"
        );
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                assert_eq!(v["datasource"], ds, "{name}: variable {}", v["name"]);
                v["name"].as_str().expect("variable name")
            })
            .collect();
        let mut ids = BTreeSet::new();
        let ps = panels(d);
        assert!(ps.len() > 5, "{name}: {} panels", ps.len());
        for p in ps {
            let title = &p["title"];
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: panel id {} twice",
                p["id"]
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
            assert!(
                g["h"].as_u64().is_some()
                    && g["y"].as_u64().is_some()
                    && x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24),
                "{name}: panel {title} gridPos {g}"
            );
            let kind = p["type"].as_str().unwrap_or_default();
            if kind == "row" {
                continue;
            }
            assert!(
                ["timeseries", "stat"].contains(&kind),
                "{name}: panel {title} of type {kind:?}"
            );
            assert_eq!(p["datasource"], ds, "{name}: panel {title}");
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(!targets.is_empty(), "{name}: panel {title} has no targets");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(refs.insert(t["refId"].to_string()), "{name}: {title}");
                if !t["datasource"].is_null() {
                    assert_eq!(t["datasource"], ds, "{name}: panel {title}");
                }
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}: panel {title}: no expr");
                for v in variables_used(expr) {
                    assert!(
                        vars.contains(&v.as_str()) || GRAFANA_VARIABLES.contains(&v.as_str()),
                        "{name}: panel {title} uses ${v}, which is not a variable of the \
                         dashboard ({vars:?})"
                    );
                }
            }
        }
    }
    let bridge = &all
        .iter()
        .find(|(n, _)| n == "bridge.json")
        .expect("bridge.json")
        .1;
    assert!(
        bridge["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["name"] == "instance"),
        "bridge.json selects its bridge with a variable `instance`"
    );
    // Every expression parses far enough to name its metrics.
    let exprs = all_exprs();
    for e in &exprs {
        if let Err(err) = selectors(&e.promql) {
            panic!("{}: {err}", e.place);
        }
    }
    assert!(exprs.len() > 50, "only {} expressions found", exprs.len());

    // Provisioning: the data source has the uid the dashboards use, and
    // the dashboard provider reads where compose mounts the JSON.
    let source = read(&deploy("grafana/provisioning/datasources/prometheus.yml"));
    for want in [
        "uid: prometheus",
        "type: prometheus",
        "url: http://prometheus:9090",
    ] {
        assert!(
            source.lines().any(|l| l.trim() == want),
            "datasources/prometheus.yml lacks `{want}`"
        );
    }
    let provider = read(&deploy("grafana/provisioning/dashboards/tern.yml"));
    for want in ["type: file", "path: /var/lib/grafana/dashboards"] {
        assert!(
            provider.lines().any(|l| l.trim() == want),
            "dashboards/tern.yml lacks `{want}`"
        );
    }
}

// ---------------------------------------------------------------------------
// A real `tern dev`

/// `tern dev` on ports the system picks, and the HTTP addresses of its
/// focus and bridges (by region).
struct Dev {
    _process: Tern,
    focus: SocketAddr,
    bridges: Vec<(String, SocketAddr)>,
}

/// The word after `key` in `line`.
fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

impl Dev {
    fn start() -> Dev {
        let process = TernCommand::new(&["dev", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
            .env("TERN_LOG", "warn")
            .own_tmpdir()
            .stop_gracefully(Duration::from_secs(10))
            .start();
        // "tern dev: focus pid N http ADDR grpc ADDR",
        // "tern dev: bridge REGION pid N http ADDR media ADDR".
        let output = process.output();
        let addr = |line: &str| -> SocketAddr {
            after(line, "http")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no http address in {line:?}"))
        };
        let focus = output
            .lines()
            .find(|l| l.starts_with("tern dev: focus "))
            .map(addr)
            .unwrap_or_else(|| panic!("no focus line in:\n{output}"));
        let bridges: Vec<(String, SocketAddr)> = output
            .lines()
            .filter(|l| l.starts_with("tern dev: bridge "))
            .map(|l| {
                let region = after(l, "bridge").expect("region").to_string();
                (region, addr(l))
            })
            .collect();
        assert_eq!(bridges.len(), 2, "two bridges in:\n{output}");
        Dev {
            _process: process,
            focus,
            bridges,
        }
    }

    fn server(&self) -> String {
        format!("http://{}", self.focus)
    }

    /// `tern loadtest` through the focus: the publisher in one region, the
    /// subscribers in the other, so media crosses the relay.
    fn loadtest(&self, subscribers: u32, secs: u32) -> TernCommand {
        let (a, b) = (&self.bridges[0].0, &self.bridges[1].0);
        TernCommand::new(&[
            "loadtest",
            "--server",
            &self.server(),
            "-n",
            "1",
            "-m",
            &subscribers.to_string(),
            "-d",
            &secs.to_string(),
            "--publisher-region",
            a,
            "--subscriber-region",
            b,
        ])
        .env("RUST_BACKTRACE", "0")
    }

    /// (what, address) of every process with a /metrics.
    fn scraped(&self) -> Vec<(String, SocketAddr)> {
        let mut all = vec![("focus".to_string(), self.focus)];
        all.extend(
            self.bridges
                .iter()
                .map(|(r, a)| (format!("bridge {r}"), *a)),
        );
        all
    }
}

fn assert_ran(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric names of a Prometheus text exposition, and the `le` values
/// of each `_bucket`.
#[derive(Default)]
struct Exported {
    names: BTreeSet<String>,
    le: BTreeMap<String, BTreeSet<String>>,
}

impl Exported {
    fn add(&mut self, exposition: &str) {
        for line in exposition.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name: String = line.chars().take_while(|c| is_word(*c)).collect();
            if let Some(le) = line
                .split_once("le=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(v, _)| v.to_string())
            {
                self.le.entry(name.clone()).or_default().insert(le);
            }
            self.names.insert(name);
        }
    }

    /// What is wrong with `s`: a metric not exported, or a bucket bound
    /// its histogram does not have.
    fn problem(&self, s: &Selector) -> Option<String> {
        if s.metric == "up" {
            return None;
        }
        if !self.names.contains(&s.metric) {
            return Some(s.metric.clone());
        }
        let le = s.le.as_ref()?;
        let bounds = self.le.get(&s.metric);
        (!bounds.is_some_and(|b| b.contains(le))).then(|| {
            format!(
                "{}{{le=\"{le}\"}} (its bounds: {:?})",
                s.metric,
                bounds.cloned().unwrap_or_default()
            )
        })
    }
}

#[test]
fn every_dashboard_and_alert_expression_names_metrics_tern_dev_exports() {
    let dev = Dev::start();
    // Series that appear with their first event: relay links (a cross-
    // region call) and the focus's WHIP/WHEP outcomes (a refused offer).
    let out = dev.loadtest(1, 2).run(Duration::from_secs(60));
    assert_ran(&out, "tern loadtest");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let refused = agent
        .post(&format!("{}/whip/monitoring", dev.server()))
        .header("content-type", "application/sdp")
        .send("v=0\r\n")
        .expect("WHIP POST to the focus");
    assert!(
        refused.status().is_client_error(),
        "a WHIP offer without a token: {}",
        refused.status()
    );

    let mut exported = Exported::default();
    for (what, addr) in dev.scraped() {
        let (status, body) = tern_process::http_get(addr, "/metrics")
            .unwrap_or_else(|e| panic!("scraping the {what} at {addr}: {e:#}"));
        assert_eq!(status, 200, "{what} /metrics");
        exported.add(&body);
    }
    assert!(
        exported.names.contains("tern_packets_received_total"),
        "{:?}",
        exported.names
    );

    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for e in all_exprs() {
        let sel = selectors(&e.promql).unwrap_or_else(|err| panic!("{}: {err}", e.place));
        assert!(
            !sel.is_empty(),
            "{}: names no metric: {}",
            e.place,
            e.promql
        );
        checked += sel.len();
        let problems: Vec<String> = sel.iter().filter_map(|s| exported.problem(s)).collect();
        if !problems.is_empty() {
            missing.entry(e.place).or_default().extend(problems);
        }
    }
    let unique: BTreeSet<&String> = missing.values().flatten().collect();
    assert!(
        missing.is_empty(),
        "{} expressions name metrics `tern dev` does not export ({} names: {:?}):\n{}\n\
         exported: {:?}",
        missing.len(),
        unique.len(),
        unique,
        missing
            .iter()
            .map(|(place, names)| format!("  {place}: {}", names.join(", ")))
            .collect::<Vec<_>>()
            .join("\n"),
        exported.names
    );
    println!("{checked} metric selectors checked against what tern dev exports");
    drop(dev);
}

/// Polls `f` every 200 ms until it gives Some, or fails after `timeout`
/// with the last thing it said.
fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The sum of an instant query's sample values.
fn total(result: &[Value]) -> f64 {
    result
        .iter()
        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .sum()
}

/// The first expression of the panel titled `title` in a dashboard.
fn panel_expr(file: &str, title: &str) -> String {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(n, _)| n == file)
        .unwrap_or_else(|| panic!("{file}"));
    panels(&d)
        .into_iter()
        .find(|p| p["title"] == title)
        .and_then(|p| p["targets"][0]["expr"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("{file}: no panel {title:?} with an expr"))
}

/// A dashboard expression as Grafana would send it: the variables filled.
fn fill(promql: &str, instance: &str) -> String {
    promql
        .replace("$__rate_interval", "5s")
        .replace("$region", ".*")
        .replace("$instance", instance)
}

#[test]
fn a_real_prometheus_with_the_deploy_config_scrapes_tern_dev_and_loads_the_alerts() {
    let dev = Dev::start();
    let focus_region = "local-a"; // `tern dev` gives its focus this region
    let mut bridges = String::new();
    for (region, addr) in &dev.bridges {
        bridges.push_str(&format!(
            "- targets: ['{addr}']\n  labels:\n    region: {region}\n"
        ));
    }
    let prom = Prometheus::start(&[
        (
            "focus.yml",
            format!(
                "- targets: ['{}']\n  labels:\n    region: {focus_region}\n",
                dev.focus
            ),
        ),
        ("bridges.yml", bridges),
    ]);

    // Every target discovered through the file_sd files, with its job and
    // region, and up.
    let want: BTreeSet<(String, String, String)> = std::iter::once((
        "tern-focus".to_string(),
        dev.focus.to_string(),
        focus_region.to_string(),
    ))
    .chain(
        dev.bridges
            .iter()
            .map(|(r, a)| ("tern-bridge".to_string(), a.to_string(), r.clone())),
    )
    .collect();
    eventually(
        "every target up in /api/v1/targets",
        Duration::from_secs(60),
        || {
            let data = prom.api("/api/v1/targets", &[("state", "active")])?;
            let targets = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let up: BTreeSet<(String, String, String)> = targets
                .iter()
                .filter(|t| t["health"] == "up")
                .map(|t| {
                    let l = &t["labels"];
                    let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                    (s("job"), s("instance"), s("region"))
                })
                .collect();
            (up == want && targets.len() == want.len())
                .then_some(())
                .ok_or_else(|| format!("{targets:?}"))
        },
    );

    // Media while a load test runs, as the fleet dashboard shows it.
    let packets = fill(&panel_expr("fleet.json", "Packets received and sent"), "");
    let relay = fill(&panel_expr("fleet.json", "Relay traffic"), "");
    let load = {
        let cmd = dev.loadtest(2, 10);
        std::thread::spawn(move || cmd.run(Duration::from_secs(90)))
    };
    let mut seen = (0.0, 0.0);
    while !load.is_finished() && (seen.0 == 0.0 || seen.1 == 0.0) {
        let q = |e: &str| {
            prom.query(e)
                .map(|r| total(&r))
                .unwrap_or_else(|err| panic!("{err}"))
        };
        seen = (q(&packets), q(&relay));
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = load.join().expect("loadtest thread");
    assert_ran(&out, "tern loadtest");
    assert!(
        seen.0 > 0.0,
        "no packet rate while the load test ran: {packets}"
    );
    assert!(
        seen.1 > 0.0,
        "no relay traffic while the load test ran: {relay}"
    );
    println!(
        "while loaded: {:.0} packets/s ({packets}), relay {:.0} bit/s",
        seen.0, seen.1
    );

    // Every alert of alerts.yml loaded, and evaluated without an error.
    let alerts: BTreeSet<String> = alert_rules().into_iter().map(|(n, _)| n).collect();
    eventually(
        "every alert rule loaded and evaluated (health ok)",
        Duration::from_secs(30),
        || {
            let data = prom.api("/api/v1/rules", &[("type", "alert")])?;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let loaded: BTreeSet<String> = rules
                .iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect();
            if loaded != alerts {
                return Err(format!("loaded {loaded:?}, alerts.yml has {alerts:?}"));
            }
            if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
                panic!(
                    "rule {} fails to evaluate: {}",
                    bad["name"], bad["lastError"]
                );
            }
            rules
                .iter()
                .all(|r| r["health"] == "ok")
                .then_some(())
                .ok_or_else(|| format!("{rules:?}"))
        },
    );

    // A healthy cluster: no critical alert, not even pending (the rules
    // have been evaluated every second for as long as the load test ran).
    let active = prom
        .api("/api/v1/alerts", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let critical: Vec<&Value> = active["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["severity"] == "critical")
        .collect();
    assert!(
        critical.is_empty(),
        "critical alerts on a healthy tern dev: {critical:?}"
    );

    // The focus's per-bridge series keep the bridge's region (honor_labels),
    // not the focus target's.
    let regions: BTreeSet<String> = prom
        .query("count by (region) (tern_focus_bridges)")
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter_map(|r| r["metric"]["region"].as_str().map(String::from))
        .collect();
    let bridge_regions: BTreeSet<String> = dev.bridges.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(
        regions, bridge_regions,
        "regions of tern_focus_bridges as scraped"
    );
    let renamed = prom
        .query(r#"count({exported_region!=""})"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        renamed.is_empty(),
        "series with exported_region: {renamed:?}"
    );

    // Prometheus answers every dashboard query (the variables filled as
    // Grafana would, with the first bridge selected).
    let instance = dev.bridges[0].1.to_string();
    let (mut failed, mut empty) = (Vec::new(), Vec::new());
    let exprs = dashboard_exprs();
    for e in &exprs {
        match prom.query(&fill(&e.promql, &instance)) {
            Err(err) => failed.push(format!("  {}: {err}", e.place)),
            Ok(r) if r.is_empty() => empty.push(format!("  {}", e.place)),
            Ok(_) => {}
        }
    }
    assert!(
        failed.is_empty(),
        "dashboard queries Prometheus refused:\n{}",
        failed.join("\n")
    );
    // Not a failure: a quiet cluster has nothing to show for some (refused
    // joins, say); listed to see what a dashboard shows on `tern dev`.
    println!(
        "{} of {} dashboard queries returned no series:\n{}",
        empty.len(),
        exprs.len(),
        empty.join("\n")
    );
    drop(prom);
    drop(dev);
}
