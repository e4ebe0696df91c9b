//! No module cycles: within each crate, no two modules use each other,
//! directly or through others (`cli.rs` ↔ `dev.rs` and `bridge/{http,
//! shard,relay}` were such cycles). A module may use its ancestors and its
//! descendants — that is how a parent and its children are built — but
//! among the rest, dependencies point one way, so each module can be read
//! with what it uses and nothing that uses it.
//!
//! Dependencies are read from the source text: every `crate::a::b` and
//! `super::x` path, resolved to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source roots of the workspace's crates (their `lib.rs`/`main.rs`).
const ROOTS: &[&str] = &[
    "src",
    "sfu/src",
    "relay/src",
    "mixer/src",
    "focus/src",
    "proto/src",
    "tests/sim/src",
    "tests/peer/src",
    "deploy/loadtest/src",
];

type Module = Vec<String>;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `bridge/shard.rs` → `[bridge, shard]`; `bridge/mod.rs` → `[bridge]`.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Module = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module paths a `use`-like path names: `a::b::C` → `[a, b, C]`;
/// a group `a::{b, c::D}` → `[a, b]` and `[a, c, D]` (on one line).
fn paths(rest: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = rest;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            return inner
                .split(',')
                .map(|item| {
                    let mut p = prefix.clone();
                    p.extend(paths(item.trim()).into_iter().next().unwrap_or_default());
                    p
                })
                .collect();
        }
        let seg: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if seg.is_empty() {
            return vec![prefix];
        }
        rest = &rest[seg.len()..];
        prefix.push(seg);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![prefix],
        }
    }
}

/// Paths after `crate::` or `super::` (chained `super::super::` too),
/// resolved against `here`.
fn references(here: &Module, text: &str) -> Vec<Module> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `tern_crate::`
            }
            out.extend(paths(&line[i + "crate::".len()..]));
        }
        for (i, _) in line.match_indices("super::") {
            if line[..i].ends_with("super::")
                || line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let mut rest = &line[i..];
            // `super` names the parent of this file's module (for a mod.rs,
            // the module is its directory).
            let mut base: Module = here.clone();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for p in paths(rest) {
                let mut m = base.clone();
                m.extend(p);
                out.push(m);
            }
        }
    }
    out
}

fn cycles_in(root: &Path) -> Vec<String> {
    let mut all = Vec::new();
    files(root, &mut all);
    let modules: BTreeSet<Module> = all.iter().map(|f| module_of(root, f)).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for f in &all {
        let here = module_of(root, f);
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        // Inline `mod tests` blocks belong to this file's module; their
        // `super::` means this module, which is an ancestor: no edge.
        for r in references(&here, &text) {
            // The longest known module the path names.
            let target = (0..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|m| modules.contains(m))
                .unwrap_or_default();
            let related = target.starts_with(&here) || here.starts_with(&target);
            if !related {
                edges.entry(here.clone()).or_default().insert(target);
            }
        }
    }
    // Each module's dependencies lifted to the siblings under the common
    // parent, so `a::x` using `b::y` counts as `a` using `b`.
    let lift = |from: &Module, to: &Module| -> (Module, Module) {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        (from[..=common].to_vec(), to[..=common].to_vec())
    };
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, tos) in &edges {
        for to in tos {
            let (a, b) = lift(from, to);
            graph.entry(a).or_default().insert(b);
        }
    }
    // Any path back to where it started is a cycle.
    let mut found = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if next == start {
                    let mut p: Vec<String> = path.iter().map(|m| m.join("::")).collect();
                    p.push(start.join("::"));
                    found.push(format!("{}: {}", root.display(), p.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_crate_has_a_module_cycle() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found: Vec<String> = ROOTS.iter().flat_map(|r| cycles_in(&ws.join(r))).collect();
    assert!(
        found.is_empty(),
        "module cycles (make one side stop using the other, e.g. move what both need into a module of its own):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn a_cycle_between_two_sibling_modules_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").expect("write");
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\nfn f() -> super::a::A { todo!() }\n",
    )
    .expect("write");
    let found = cycles_in(src);
    assert!(
        found.iter().any(|c| c.ends_with("a -> b -> a")),
        "{found:?}"
    );
    std::fs::write(src.join("b.rs"), "pub struct B;\n").expect("write");
    assert!(cycles_in(src).is_empty());
}
