//! Datagrams at the media port of a bridge node (see `tern_fuzz::Bridge`):
//! the node's routing (address table, STUN ufrag to shard), each shard's
//! demux and whatever str0m is handed, next to a participant whose session
//! is up.
//!
//! An input is a batch of records `[sel][len: u16 BE][bytes]`, read together
//! as the shell's reader hands them over. `sel` picks the source address:
//! 127.0.0.{1 + sel % 3}:{5000 + sel >> 6}; 127.0.0.2:5000 is the connected
//! participant's (bound to its shard: the bytes reach its str0m session),
//! the others are bound to nothing (only STUN naming a shard's ufrag gets
//! in). Then a millisecond passes and every output is polled.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tern_fuzz::Bridge;
use tern_sfu::node::Input;

fn bridge() -> &'static Mutex<Bridge> {
    static B: OnceLock<Mutex<Bridge>> = OnceLock::new();
    B.get_or_init(|| Mutex::new(Bridge::new(false)))
}

fuzz_target!(|data: &[u8]| {
    let mut b = bridge().lock().unwrap_or_else(|e| e.into_inner());
    if !b.healthy() {
        *b = Bridge::new(false);
    }
    let mut batch = Vec::new();
    let mut rest = data;
    while let [sel, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let src: SocketAddr = format!("127.0.0.{}:{}", 1 + sel % 3, 5000 + u16::from(sel >> 6))
            .parse()
            .expect("addr");
        batch.push((src, bytes.to_vec().into()));
    }
    if batch.is_empty() {
        return;
    }
    let local = b.bridge_addr();
    b.input(Input::Datagrams { local, batch });
    b.advance(Duration::from_millis(1));
});
