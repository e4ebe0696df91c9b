//! The PromQL in `deploy/`: every dashboard panel's and variable's
//! expression and every alert rule's.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::promql::variable_promql;

/// The data source every dashboard panel, target and variable uses (the
/// uid `deploy/grafana/provisioning/datasources/prometheus.yml` gives it).
pub fn datasource() -> Value {
    serde_json::json!({"type": "prometheus", "uid": "prometheus"})
}

pub fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// The expressions in the dashboards and the alert rules

/// A PromQL expression and where it is ("fleet.json: panel \"…\" (A)").
pub struct Expr {
    pub place: String,
    pub promql: String,
}

/// The dashboards, by file name.
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let v = serde_json::from_str(&read(p))
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// Every panel, row panels' nested ones included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

pub fn variable_query(var: &Value) -> Option<&str> {
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
}

pub fn dashboard_exprs() -> Vec<Expr> {
    let mut out = Vec::new();
    for (name, d) in dashboards() {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] == "query"
                && let Some(promql) = variable_query(v).and_then(variable_promql)
            {
                out.push(Expr {
                    place: format!("{name}: variable {}", v["name"]),
                    promql,
                });
            }
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(Expr {
                        place: format!("{name}: panel {} ({})", p["title"], t["refId"]),
                        promql: e.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// The alert rules of alerts.yml: (name, expr). A reader for the YAML this
/// file uses (the workspace has no YAML parser): `- alert: NAME`, then
/// `expr:` with the expression on the line or in a `|` block under it.
pub fn alert_rules() -> Vec<(String, String)> {
    let text = read(&deploy("prometheus/alerts.yml"));
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let indent = lines[i].len() - t.len();
        if let Some(n) = t.strip_prefix("- alert:") {
            name = Some(n.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            let expr = if rest.starts_with('|') || rest.starts_with('>') {
                let mut body = Vec::new();
                while let Some(next) = lines.get(i + 1) {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    body.push(nt);
                    i += 1;
                }
                body.join("\n")
            } else if rest.len() >= 2
                && (rest.starts_with('"') && rest.ends_with('"')
                    || rest.starts_with('\'') && rest.ends_with('\''))
            {
                assert!(!rest.contains('\\'), "escapes in a quoted expr: {rest}");
                rest[1..rest.len() - 1].to_string()
            } else {
                rest.to_string()
            };
            let n = name
                .take()
                .unwrap_or_else(|| panic!("alerts.yml: an expr outside an alert: {expr}"));
            out.push((n, expr));
        }
        i += 1;
    }
    let alerts = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(alerts, out.len(), "alerts.yml: an alert without its expr");
    assert!(
        !text.contains("- record:"),
        "alerts.yml has recording rules: teach alert_rules() to read them"
    );
    out
}

pub fn all_exprs() -> Vec<Expr> {
    let mut all = dashboard_exprs();
    all.extend(alert_rules().into_iter().map(|(name, promql)| Expr {
        place: format!("alerts.yml: alert {name}"),
        promql,
    }));
    all
}

/// Grafana's own variables an expression may use.
pub const GRAFANA_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__range",
    "__interval_ms",
    "__range_s",
];

/// The `$name`s in an expression.
pub fn variables_used(promql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = promql;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}
