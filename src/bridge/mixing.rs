//! The mixing workers: threads of their own, off the forwarding shards'
//! packet path, each running a `tern_mixer::host::MixHost` for the mixed
//! conferences hashed to it. Shards send them `MixCommand`s (the core's
//! `Output::Mix`); what a host produces goes back to the conference's shard
//! as `ShardInput::Mixed`. Decoding and encoding Opus costs a thousand
//! times what forwarding a packet does, so it must not hold a shard, and a
//! worker is a plain thread because a tick of a large conference is
//! milliseconds of CPU that would stall a tokio worker.
//!
//! This file decides nothing: which worker is a fixed hash of the room,
//! what to mix is the host's business.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tern_mixer::audio::MixConfig;
use tern_mixer::host::{MixCommand, MixHost};
use tern_mixer::opus::Opus;
use tern_mixer::video::VideoConfig;
use tern_mixer::video::openh264::OpenH264;
use tern_sfu::node::{ShardInput, shard_of_room};
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::msg::ShardMsg;

/// Commands queued per worker: about a second of audio from 50 publishers.
/// Past it, packets are dropped (counted) and joins and leaves wait.
const QUEUE: usize = 2_500;

/// The handle shards send through (cheap to clone).
#[derive(Clone)]
pub struct Mixing {
    workers: Vec<SyncSender<MixCommand>>,
    dropped: metrics::Counter,
    /// Microseconds each worker spent mixing, since it started: what the
    /// bridge tells the focus (its mixing load).
    busy: Arc<Vec<AtomicU64>>,
}

impl Mixing {
    /// Start `workers` threads (at least one) mixing audio at `bitrate`
    /// bits/s per receiver and, with `video`, composing; their output goes
    /// to `shards`.
    pub fn start(
        workers: usize,
        bitrate: u32,
        video: Option<VideoConfig>,
        shards: Vec<mpsc::Sender<ShardMsg>>,
    ) -> Self {
        let n = workers.max(1);
        let busy: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            let shards = shards.clone();
            let span = tracing::info_span!("mixer", worker = i);
            let b = busy.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tern-mixer-{i}"))
                .spawn(move || span.in_scope(|| run(i, rx, shards, bitrate, video, &b[i])));
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a mixing worker");
                continue;
            }
            senders.push(tx);
        }
        Self {
            workers: senders,
            dropped: metrics::counter!("tern_mixer_commands_dropped_total"),
            busy,
        }
    }

    /// How many worker threads mix.
    pub fn workers(&self) -> usize {
        self.busy.len()
    }

    /// Time all workers together spent mixing since they started.
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy.iter().map(|b| b.load(Ordering::Relaxed)).sum())
    }

    /// Hand a command to its conference's worker. Packets are dropped when
    /// the worker is a second behind; membership changes wait for room.
    pub fn send(&self, cmd: MixCommand) {
        if self.workers.is_empty() {
            self.dropped.increment(1);
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cmd.room().hash(&mut h);
        let w = &self.workers[(h.finish() % self.workers.len() as u64) as usize];
        let result = match cmd {
            MixCommand::Packet { .. } => w.try_send(cmd),
            other => w.send(other).map_err(|e| TrySendError::Disconnected(e.0)),
        };
        if result.is_err() {
            self.dropped.increment(1);
        }
    }
}

struct WorkerMetrics {
    busy: metrics::Counter,
    load: metrics::Gauge,
    conferences: metrics::Gauge,
    participants: metrics::Gauge,
    decoded: metrics::Counter,
    concealed: metrics::Counter,
    encoded: metrics::Counter,
    decode_errors: metrics::Counter,
    dropped_participants: metrics::Counter,
    refused: metrics::Counter,
    to_shard_dropped: metrics::Counter,
    composites: metrics::Counter,
    composite_decoded: metrics::Counter,
    composite_keyframe_requests: metrics::Counter,
    panics: metrics::Counter,
}

impl WorkerMetrics {
    fn new(worker: usize) -> Self {
        let w = worker.to_string();
        Self {
            busy: metrics::counter!("tern_mixer_busy_microseconds_total", "worker" => w.clone()),
            load: metrics::gauge!("tern_mixer_load", "worker" => w.clone()),
            conferences: metrics::gauge!("tern_mixer_conferences", "worker" => w.clone()),
            participants: metrics::gauge!("tern_mixer_participants", "worker" => w.clone()),
            decoded: metrics::counter!("tern_mixer_frames_total", "worker" => w.clone(), "kind" => "decoded"),
            concealed: metrics::counter!("tern_mixer_frames_total", "worker" => w.clone(), "kind" => "concealed"),
            encoded: metrics::counter!("tern_mixer_frames_total", "worker" => w.clone(), "kind" => "encoded"),
            decode_errors: metrics::counter!("tern_mixer_decode_errors_total", "worker" => w.clone()),
            dropped_participants: metrics::counter!("tern_mixer_dropped_participants_total", "worker" => w.clone()),
            refused: metrics::counter!("tern_mixer_commands_refused_total", "worker" => w.clone()),
            to_shard_dropped: metrics::counter!("tern_mixer_frames_dropped_total", "worker" => w.clone()),
            composites: metrics::counter!("tern_mixer_composite_frames_total", "worker" => w.clone()),
            composite_decoded: metrics::counter!("tern_mixer_video_units_decoded_total", "worker" => w.clone()),
            composite_keyframe_requests: metrics::counter!("tern_mixer_video_keyframe_requests_total", "worker" => w.clone()),
            panics: metrics::counter!("tern_mixer_panics_total", "worker" => w),
        }
    }
}

fn run(
    worker: usize,
    rx: Receiver<MixCommand>,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    bitrate: u32,
    video: Option<VideoConfig>,
    busy_out: &AtomicU64,
) {
    let codec = Opus {
        bitrate,
        ..Opus::default()
    };
    let mut host = MixHost::with_video(codec, MixConfig::default(), video.map(|v| (OpenH264, v)));
    let m = WorkerMetrics::new(worker);
    let mut busy = Duration::ZERO;
    let mut to_shard_dropped = 0u64;
    let mut next_export = Instant::now();
    let mut exported_busy = Duration::ZERO;
    loop {
        let wait = host
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(next_export.saturating_duration_since(Instant::now()));
        let first = match rx.recv_timeout(wait) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let started = Instant::now();
        // A bug in a mixer must not end mixing for good: the host is made
        // anew and the shards tell it again who is where.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(c) = first {
                host.handle_command(started, c);
                // Whatever else is queued, before the tick that may be due.
                for c in rx.try_iter().take(QUEUE) {
                    host.handle_command(started, c);
                }
            }
            host.handle_timeout(Instant::now());
            std::iter::from_fn(|| host.poll_output()).collect::<Vec<_>>()
        }));
        match step {
            Ok(outputs) => {
                for (room, output) in outputs {
                    let shard = shard_of_room(&room, shards.len());
                    let msg = ShardMsg::Core(ShardInput::Mixed { room, output });
                    if shards[shard].try_send(msg).is_err() {
                        to_shard_dropped += 1;
                    }
                }
            }
            Err(_) => {
                error!("a mixing worker panicked: its conferences are mixed afresh");
                m.panics.increment(1);
                host =
                    MixHost::with_video(codec, MixConfig::default(), video.map(|v| (OpenH264, v)));
                for s in &shards {
                    // Delivered when there is room: a lost restart would
                    // leave conferences unmixed.
                    let _ = s.blocking_send(ShardMsg::Core(ShardInput::MixerRestarted));
                }
            }
        }
        busy += started.elapsed();
        busy_out.store(busy.as_micros() as u64, Ordering::Relaxed);
        let now = Instant::now();
        if now >= next_export {
            let s = host.stats();
            m.busy.absolute(busy.as_micros() as u64);
            // Share of the last second spent mixing.
            m.load.set((busy - exported_busy).as_secs_f64());
            exported_busy = busy;
            m.conferences.set(s.conferences as f64);
            m.participants.set(s.participants as f64);
            m.decoded.absolute(s.mix.frames_decoded);
            m.concealed.absolute(s.mix.frames_concealed);
            m.encoded.absolute(s.mix.frames_encoded);
            m.decode_errors.absolute(s.mix.decode_errors);
            m.dropped_participants.absolute(s.dropped_participants);
            m.refused
                .absolute(s.refused_unknown + s.refused_sample_rate + s.refused_other);
            m.to_shard_dropped.absolute(to_shard_dropped);
            m.composites.absolute(s.video.frames_composed);
            m.composite_decoded.absolute(s.video.units_decoded);
            m.composite_keyframe_requests
                .absolute(s.video.keyframe_requests);
            next_export = now + Duration::from_secs(1);
        }
    }
}
