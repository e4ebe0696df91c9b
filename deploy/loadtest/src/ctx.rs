//! What every participant task of a run shares: the parameters, the
//! measurement window, progress counters, publishers' clocks and where the
//! focus placed participants ([`Ctx`]); and what one participant is to do
//! ([`Spec`]). Plain shared state: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::MintToken;
use crate::args::Args;
use crate::janus;

/// Shared by every participant task of a run.
pub struct Ctx {
    pub(crate) args: Args,
    pub(crate) mint: MintToken,
    pub(crate) server: SocketAddr,
    pub(crate) base_path: String,
    /// Each publisher's generator start, by participant id: the zero of the
    /// send timestamps it embeds (all participants share this process's clock).
    pub(crate) starts: Mutex<HashMap<String, Instant>>,
    pub(crate) window: (Instant, Instant),
    pub(crate) progress: Progress,
    /// Janus target: feeds that are up, and the first room id of this run.
    pub(crate) directory: Arc<janus::Directory>,
    pub(crate) janus_room_base: u64,
    /// Bridges the focus placed participants on: id → (region, HTTP address).
    pub(crate) placements: Mutex<BTreeMap<String, (String, Option<SocketAddr>)>>,
}

#[derive(Default)]
pub(crate) struct Progress {
    pub(crate) joined: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rx_packets: AtomicU64,
}

impl Ctx {
    /// Where a room's media goes. Today: the one server given. With a focus,
    /// this asks it which bridge hosts the room.
    pub(crate) fn bridge_for(&self, _room: &str) -> SocketAddr {
        self.server
    }

    /// What a participant does in its Janus room.
    pub(crate) fn janus_plan(&self, spec: &Spec) -> janus::Plan {
        janus::Plan {
            room: self.janus_room_base + spec.room_index as u64,
            publish: spec.publish,
            room_publishers: spec.room_publishers,
            audio_slots: self.args.audio_slots,
            video_slots: self.args.video_slots,
            substream: self.args.wanted_layer(),
        }
    }

    pub(crate) fn start_of(&self, source: &str) -> Option<Instant> {
        let participant = source.split('/').next()?;
        lock(&self.starts).get(participant).copied()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only a panicking participant task can poison it; its data is still fine.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One participant to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) room: String,
    pub(crate) room_index: usize,
    /// Publishers in this participant's room.
    pub(crate) room_publishers: usize,
    pub(crate) publish: bool,
    pub(crate) receive: bool,
    /// Counts SRTP datagrams instead of decrypting them (`--count-only`).
    pub(crate) count_only: bool,
    pub(crate) start_at: Instant,
    pub(crate) seed: u64,
}
