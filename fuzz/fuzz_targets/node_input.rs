//! A whole bridge node (two shards, a focus link, relay peers) fed arbitrary
//! bytes as media datagrams, signalling, relay control and datagrams, and
//! focus commands (`tern_sim::node_input` decodes them into inputs).
#![no_main]

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use tern_sfu::node::Node;

struct State {
    node: Node,
    now: Instant,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let now = Instant::now();
        Mutex::new(State {
            node: tern_sim::node_input::node(now),
            now,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
    // A fresh node per input keeps crashes reproducible from the input alone.
    let now = s.now;
    s.node = tern_sim::node_input::node(now);
    let State { node, now } = &mut *s;
    *now = tern_sim::node_input::drive(node, *now, data);
});
