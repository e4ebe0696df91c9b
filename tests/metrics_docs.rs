//! `docs/metrics.md` against a real `tern dev` (a focus and two bridges
//! with the relay and ICE-TCP on): the page lists exactly the metrics the
//! processes export, each with the type it is exported as, and every
//! exported metric follows the conventions the page states (a `tern_`
//! prefix, counters in `_total`, no label naming a room, conference,
//! participant or endpoint).

mod native;

use std::collections::{BTreeMap, BTreeSet};

use native::tern_process::{TernCommand, http_get};

/// Labels that would make a series per room or per person.
const FORBIDDEN_LABELS: &[&str] = &[
    "room",
    "conference",
    "participant",
    "endpoint",
    "user",
    "name",
    "ufrag",
    "ssrc",
];

/// name -> type from the `# TYPE` lines of one exposition, with a bridge's
/// histogram parts (exported as counters and a gauge) folded into one
/// `histogram`.
fn exported(exposition: &str, into: &mut BTreeMap<String, String>) {
    let mut parts: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split(' ');
        let (Some(name), Some(ty)) = (it.next(), it.next()) else {
            panic!("bad TYPE line {line:?}");
        };
        into.insert(name.to_string(), ty.to_string());
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                parts.entry(base.to_string()).or_default().insert(suffix);
            }
        }
    }
    for (base, p) in parts {
        if p.len() == 3 {
            for suffix in ["_bucket", "_count", "_sum"] {
                into.remove(&format!("{base}{suffix}"));
            }
            into.insert(base, "histogram".into());
        }
    }
}

/// name -> type from the tables of docs/metrics.md (rows `| `name` | type | ...`).
fn documented() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`tern_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let ty = cells[2]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            out.insert(name.clone(), ty).is_none(),
            "{name} is listed twice in docs/metrics.md"
        );
    }
    out
}

fn label_names(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = rest.split_once('}').map_or("", |(l, _)| l);
        for pair in labels.split("\",") {
            if let Some((k, _)) = pair.split_once('=') {
                out.entry(name.to_string())
                    .or_default()
                    .insert(k.to_string());
            }
        }
    }
    out
}

#[test]
fn docs_list_exactly_the_exported_metrics_and_every_metric_follows_the_conventions() {
    let dev = TernCommand::new(&["dev", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0"])
        .env("TERN_LOG", "warn")
        .own_tmpdir()
        .stop_gracefully(std::time::Duration::from_secs(10))
        .start();
    // "tern dev: focus pid N http ADDR grpc ADDR", then per bridge
    // "tern dev: bridge REGION pid N http ADDR media ADDR", then
    // "tern dev ready: ...".
    let out = dev.output();
    let http_of = |line: &str| -> Option<std::net::SocketAddr> {
        line.split(" http ").nth(1)?.split(' ').next()?.parse().ok()
    };
    let focus = out
        .lines()
        .filter(|l| l.starts_with("tern dev: focus pid"))
        .find_map(http_of)
        .unwrap_or_else(|| panic!("no focus line in:\n{out}"));
    let bridges: Vec<std::net::SocketAddr> = out
        .lines()
        .filter(|l| l.starts_with("tern dev: bridge "))
        .filter_map(http_of)
        .collect();
    assert_eq!(bridges.len(), 2, "two bridge lines in:\n{out}");

    // The focus's per-bridge series exist once bridges have registered and
    // the focus has published (once a second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !http_get(focus, "/metrics").is_ok_and(|(_, b)| b.contains("tern_focus_bridge_stress{")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the focus never listed its bridges"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut types = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for addr in std::iter::once(focus).chain(bridges) {
        let (status, body) = http_get(addr, "/metrics").expect("scrape");
        assert_eq!(status, 200);
        exported(&body, &mut types);
        labels.extend(label_names(&body));
    }

    let docs = documented();
    let undocumented: Vec<&String> = types.keys().filter(|n| !docs.contains_key(*n)).collect();
    let unexported: Vec<&String> = docs.keys().filter(|n| !types.contains_key(*n)).collect();
    assert!(
        undocumented.is_empty() && unexported.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}\n\
         in docs/metrics.md but not exported by tern dev: {unexported:?}"
    );
    for (name, ty) in &types {
        assert_eq!(&docs[name], ty, "{name}: documented type vs exported type");
        assert!(name.starts_with("tern_"), "{name}: no tern_ prefix");
        if ty == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} does not end in _total"
            );
        } else {
            assert!(!name.ends_with("_total"), "{ty} {name} ends in _total");
        }
    }
    for (series, names) in &labels {
        for l in names {
            assert!(
                !FORBIDDEN_LABELS.contains(&l.as_str()),
                "{series} has an unbounded label {l:?}"
            );
        }
    }
}
