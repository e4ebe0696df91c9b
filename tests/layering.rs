//! The Sans-IO crates stay Sans-IO: none of them may reach an async
//! runtime or a network stack through its normal dependencies. A `tokio`
//! in `tern-sfu`'s graph would let a socket or a task creep into the core
//! unnoticed (it came in once through tern-relay → tern-proto → tonic), so
//! this asks cargo for each crate's graph and names the path that brings a
//! forbidden crate in.
//!
//! Dev- and build-dependencies do not count: tests may use anything, and a
//! build script runs on the host, not in the core.

use std::process::Command;

/// Crates that must not depend on an async runtime or a network stack.
const SANS_IO: &[&str] = &[
    "tern-sfu",
    "tern-relay",
    "tern-mixer",
    "tern-record",
    "tern-focus",
    "tern-peer",
    "tern-sim",
    // Only with its default features: `grpc` (the `tern` binary) adds tonic.
    "tern-proto",
];

/// What they must not reach.
const FORBIDDEN: &[&str] = &["tokio", "hyper", "tonic", "axum"];

#[test]
fn sans_io_crates_do_not_depend_on_tokio_hyper_tonic_or_axum() {
    let mut found = Vec::new();
    for krate in SANS_IO {
        for path in forbidden_paths(&normal_tree(krate)) {
            found.push(format!("{krate} depends on {}: {path}", path_end(&path)));
        }
    }
    assert!(
        found.is_empty(),
        "Sans-IO crates reach forbidden crates through normal dependencies \
         (move the code that needs them into the `tern` binary, or put it \
         behind a feature that is off by default):\n  {}",
        found.join("\n  ")
    );
}

/// The check itself fails when a forbidden crate is there, with the path.
#[test]
fn a_forbidden_crate_is_reported_with_the_path_to_it() {
    let tree = "0tern-sfu v0.1.0 (/w/sfu)\n\
                1str0m v0.25.0\n\
                1tern-relay v0.1.0 (/w/relay)\n\
                2tern-proto v0.1.0 (/w/proto)\n\
                3prost v0.14.1\n\
                3tonic v0.14.2\n\
                4hyper v1.7.0\n\
                5tokio v1.54.0\n\
                4tokio v1.54.0\n\
                1thiserror v2.0.17\n";
    assert_eq!(
        forbidden_paths(tree),
        vec![
            "tern-sfu -> tern-relay -> tern-proto -> tonic",
            "tern-sfu -> tern-relay -> tern-proto -> tonic -> hyper",
            "tern-sfu -> tern-relay -> tern-proto -> tonic -> hyper -> tokio",
            "tern-sfu -> tern-relay -> tern-proto -> tonic -> tokio",
        ]
    );
    assert!(forbidden_paths("0tern-focus v0.1.0\n1thiserror v2.0.17\n").is_empty());
}

/// `cargo tree` of one workspace crate, normal edges only, each line
/// prefixed with its depth so the path to a crate can be rebuilt. Offline:
/// the lock file already pins everything, and the test must not need a
/// network.
fn normal_tree(krate: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            manifest,
            "-p",
            krate,
        ])
        .args(["-e", "normal", "--prefix", "depth", "--charset", "ascii"])
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each occurrence of a forbidden crate in a depth-prefixed tree, as the
/// chain of crate names from the root to it (`a -> b -> tokio`).
fn forbidden_paths(tree: &str) -> Vec<String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut paths = Vec::new();
    for line in tree.lines() {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let Some(name) = line[digits..].split_whitespace().next() else {
            continue;
        };
        stack.truncate(depth);
        stack.push(name);
        if FORBIDDEN.contains(&name) {
            paths.push(stack.join(" -> "));
        }
    }
    paths
}

fn path_end(path: &str) -> &str {
    path.rsplit(" -> ").next().unwrap_or(path)
}

/// What a Sans-IO core must not call: the time comes in as an argument, and
/// it has no sockets or threads of its own.
const FORBIDDEN_CALLS: &[&str] = &[
    "Instant::now()",
    "SystemTime::now()",
    "thread::spawn",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
];

#[test]
fn sans_io_crates_read_no_clock_and_open_no_socket_or_thread() {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in [
        "sfu/src",
        "relay/src",
        "mixer/src",
        "record/src",
        "focus/src",
        "proto/src",
        "tests/peer/src",
    ] {
        let mut stack = vec![ws.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("source dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                // `tests.rs` and `*_tests.rs` files are `#[cfg(test)] mod
                // tests;` (or `fleet_tests`, ...): test code, which may read
                // the clock to get an `Instant` to start from.
                if p.extension().is_none_or(|x| x != "rs")
                    || p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
                {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("source file");
                // Unit tests (a `#[cfg(test)]` module at the end of a file)
                // may use a real clock to make up times.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for (n, line) in code.lines().enumerate() {
                    let l = line.trim_start();
                    if l.starts_with("//") {
                        continue;
                    }
                    for call in FORBIDDEN_CALLS {
                        if l.contains(call) {
                            found.push(format!("{}:{}: {call}", p.display(), n + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "Sans-IO code reads a clock or opens a socket or thread (pass time in; let the shell do I/O):\n  {}",
        found.join("\n  ")
    );
}

/// `str0m_aws_lc_rs::dangerously_seeded_provider` (patches/) makes every
/// DTLS handshake draw the same "random" values: right for a simulation
/// that must replay exactly, a hole anywhere a real client connects. Only
/// the simulation (and the fuzz harness built on it) may name it.
#[test]
fn only_the_simulation_seeds_dtls_randomness() {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = ["tests/sim", "patches", "fuzz", "target", ".git"];
    let this_file = ws.join(file!());
    let needle = ["dangerously", "seeded_provider"].join("_");
    let mut found = Vec::new();
    let mut stack = vec![ws.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("source dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(ws).unwrap_or(&p);
            if allowed.iter().any(|a| rel.starts_with(a)) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && p != this_file {
                let text = std::fs::read_to_string(&p).expect("source file");
                if text.contains(&needle) {
                    found.push(rel.display().to_string());
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "only tests/sim may seed DTLS randomness; also used in:\n  {}",
        found.join("\n  ")
    );
}
