//! A worker shard: owns one `Core` (and so every conference hashed to it) and
//! moves its inputs and outputs. It decides nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use metrics::{Counter, Gauge};
use tern_sfu::node::ShardInput;
use tern_sfu::signal::{ErrorCode, Rejection, ServerMessage};
use tern_sfu::{Core, DataDrop, DropReason, EndpointId, Output, SfuError};
use tokio::sync::mpsc;

use super::bandwidth::ReceiverBandwidth;
use super::msg::ShardMsg;
use super::send::{Datagram, Egress, SEND_BATCH};

/// What a shard last said about itself (once a second): read by the focus
/// link, never on the media path.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    /// When the shard published this: the bridge's health watchdog
    /// (bridge/status.rs) calls a shard whose snapshot is old stalled.
    pub at: Option<Instant>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub endpoints: usize,
    pub conferences: Vec<(String, Vec<String>)>,
    pub recordings: Vec<tern_sfu::RecordingReport>,
}

pub type Snapshots = std::sync::Arc<Vec<std::sync::Mutex<ShardSnapshot>>>;

struct ShardMetrics {
    packets_in: Counter,
    bytes_in: Counter,
    packets_out: Counter,
    bytes_out: Counter,
    forwarded: Counter,
    polls_timer: Counter,
    polls_other: Counter,
    keyframes_sent: Counter,
    keyframes_throttled: Counter,
    layer_switches: Counter,
    repairs_sent: Counter,
    repairs_expired: Counter,
    repairs_capped: Counter,
    repairs_unneeded: Counter,
    repair_copies_kept: Counter,
    repair_copies_released: Counter,
    repair_cache_bytes: Gauge,
    svc_skipped: Counter,
    sender_constraints: Counter,
    silence_suppressed: Counter,
    red_in: Counter,
    red_out: Counter,
    red_out_primary: Counter,
    audio_slot_switches: Counter,
    video_slot_switches: Counter,
    dominant_speaker_changes: Counter,
    joins: Counter,
    joins_refused_overloaded: Counter,
    joins_refused_room_full: Counter,
    joins_refused_codec: Counter,
    joins_refused_mode: Counter,
    recordings_started: Counter,
    recordings_failed: Counter,
    recording_unsupported: Counter,
    recording_by_arrival: Counter,
    recorded_packets: Counter,
    dropped: Vec<Counter>,
    data_in: Counter,
    data_out: Counter,
    data_dropped: Vec<Counter>,
    endpoints: Gauge,
    conferences: Gauge,
    relay: Vec<RelayCounter>,
}

/// A relay counter and how to read it from the core's stats.
type RelayCounter = (Counter, fn(&tern_sfu::RelayStats) -> u64);

impl ShardMetrics {
    fn new(shard: u8) -> Self {
        let s = shard.to_string();
        Self {
            packets_in: metrics::counter!("tern_packets_received_total", "shard" => s.clone()),
            bytes_in: metrics::counter!("tern_bytes_received_total", "shard" => s.clone()),
            packets_out: metrics::counter!("tern_packets_sent_total", "shard" => s.clone()),
            bytes_out: metrics::counter!("tern_bytes_sent_total", "shard" => s.clone()),
            forwarded: metrics::counter!("tern_rtp_forwarded_total", "shard" => s.clone()),
            polls_timer: metrics::counter!("tern_connection_polls_total", "shard" => s.clone(), "cause" => "timer"),
            polls_other: metrics::counter!("tern_connection_polls_total", "shard" => s.clone(), "cause" => "other"),
            keyframes_sent: metrics::counter!("tern_keyframe_requests_total", "shard" => s.clone(), "outcome" => "sent"),
            keyframes_throttled: metrics::counter!("tern_keyframe_requests_total", "shard" => s.clone(), "outcome" => "throttled"),
            layer_switches: metrics::counter!("tern_layer_switches_total", "shard" => s.clone()),
            repairs_sent: metrics::counter!("tern_video_repairs_total", "shard" => s.clone(), "outcome" => "sent"),
            repairs_expired: metrics::counter!("tern_video_repairs_total", "shard" => s.clone(), "outcome" => "expired"),
            repairs_capped: metrics::counter!("tern_video_repairs_total", "shard" => s.clone(), "outcome" => "capped"),
            repairs_unneeded: metrics::counter!("tern_video_repairs_total", "shard" => s.clone(), "outcome" => "unneeded"),
            repair_copies_kept: metrics::counter!("tern_video_repair_copies_total", "shard" => s.clone(), "outcome" => "kept"),
            repair_copies_released: metrics::counter!("tern_video_repair_copies_total", "shard" => s.clone(), "outcome" => "released"),
            repair_cache_bytes: metrics::gauge!("tern_repair_cache_bytes", "shard" => s.clone()),
            svc_skipped: metrics::counter!("tern_svc_packets_skipped_total", "shard" => s.clone()),
            sender_constraints: metrics::counter!("tern_sender_constraints_total", "shard" => s.clone()),
            silence_suppressed: metrics::counter!("tern_silence_suppressed_packets_total", "shard" => s.clone()),
            red_in: metrics::counter!("tern_audio_red_packets_total", "shard" => s.clone(), "direction" => "in"),
            red_out: metrics::counter!("tern_audio_red_packets_total", "shard" => s.clone(), "direction" => "out_red"),
            red_out_primary: metrics::counter!("tern_audio_red_packets_total", "shard" => s.clone(), "direction" => "out_primary"),
            audio_slot_switches: metrics::counter!("tern_slot_switches_total", "shard" => s.clone(), "kind" => "audio"),
            video_slot_switches: metrics::counter!("tern_slot_switches_total", "shard" => s.clone(), "kind" => "video"),
            dominant_speaker_changes: metrics::counter!("tern_dominant_speaker_changes_total", "shard" => s.clone()),
            joins: metrics::counter!("tern_joins_total", "shard" => s.clone()),
            joins_refused_overloaded: metrics::counter!("tern_joins_refused_total", "shard" => s.clone(), "reason" => "overloaded"),
            joins_refused_room_full: metrics::counter!("tern_joins_refused_total", "shard" => s.clone(), "reason" => "room_full"),
            joins_refused_codec: metrics::counter!("tern_joins_refused_total", "shard" => s.clone(), "reason" => "codec"),
            joins_refused_mode: metrics::counter!("tern_joins_refused_total", "shard" => s.clone(), "reason" => "conference_mode"),
            recordings_started: metrics::counter!("tern_recordings_started_total", "shard" => s.clone()),
            recordings_failed: metrics::counter!("tern_recordings_failed_total", "shard" => s.clone()),
            recording_unsupported: metrics::counter!("tern_recording_sources_unsupported_total", "shard" => s.clone()),
            recording_by_arrival: metrics::counter!("tern_recording_tracks_by_arrival_total", "shard" => s.clone()),
            recorded_packets: metrics::counter!("tern_recorded_packets_total", "shard" => s.clone()),
            dropped: DropReason::ALL
                .iter()
                .map(|r| {
                    metrics::counter!("tern_packets_dropped_total", "shard" => s.clone(), "reason" => r.as_str())
                })
                .collect(),
            data_in: metrics::counter!("tern_data_messages_total", "shard" => s.clone(), "direction" => "in"),
            data_out: metrics::counter!("tern_data_messages_total", "shard" => s.clone(), "direction" => "out"),
            data_dropped: DataDrop::ALL
                .iter()
                .map(|r| {
                    metrics::counter!("tern_data_messages_dropped_total", "shard" => s.clone(), "reason" => r.as_str())
                })
                .collect(),
            endpoints: metrics::gauge!("tern_endpoints", "shard" => s.clone()),
            conferences: metrics::gauge!("tern_conferences", "shard" => s.clone()),
            relay: relay_counters(&s),
        }
    }

    fn export(&self, core: &Core) {
        let st = core.stats();
        self.packets_in.absolute(st.packets_in);
        self.bytes_in.absolute(st.bytes_in);
        self.packets_out.absolute(st.packets_out);
        self.bytes_out.absolute(st.bytes_out);
        self.forwarded.absolute(st.rtp_forwarded);
        self.polls_timer.absolute(st.timer_polls);
        self.polls_other
            .absolute(st.polls.saturating_sub(st.timer_polls));
        self.keyframes_sent.absolute(st.keyframe_requests_sent);
        self.keyframes_throttled
            .absolute(st.keyframe_requests_throttled);
        self.layer_switches.absolute(st.layer_switches);
        self.repairs_sent.absolute(st.repairs_sent);
        self.repairs_expired.absolute(st.repairs_expired);
        self.repairs_capped.absolute(st.repairs_capped);
        self.repairs_unneeded.absolute(st.repairs_unneeded);
        self.repair_copies_kept.absolute(st.repair_copies_kept);
        self.repair_copies_released
            .absolute(st.repair_copies_released);
        self.repair_cache_bytes
            .set(core.repair_payload_bytes() as f64);
        self.svc_skipped.absolute(st.svc_skipped);
        self.sender_constraints.absolute(st.sender_constraints);
        self.silence_suppressed.absolute(st.silence_suppressed);
        self.red_in.absolute(st.red_in);
        self.red_out.absolute(st.red_out);
        self.red_out_primary.absolute(st.red_out_primary);
        self.audio_slot_switches.absolute(st.audio_slot_switches);
        self.video_slot_switches.absolute(st.video_slot_switches);
        self.dominant_speaker_changes
            .absolute(st.dominant_speaker_changes);
        self.joins.absolute(st.joins);
        self.joins_refused_overloaded
            .absolute(st.joins_refused_overloaded);
        self.joins_refused_room_full
            .absolute(st.joins_refused_room_full);
        self.joins_refused_codec.absolute(st.joins_refused_codec);
        self.joins_refused_mode.absolute(st.joins_refused_mode);
        self.recordings_started.absolute(st.recordings_started);
        self.recordings_failed.absolute(st.recordings_failed);
        self.recording_unsupported
            .absolute(st.recording_unsupported);
        self.recorded_packets.absolute(st.recorded_packets);
        self.recording_by_arrival
            .absolute(st.recording_tracks_by_arrival);
        for (c, r) in self.dropped.iter().zip(DropReason::ALL) {
            c.absolute(st.dropped(r));
        }
        self.data_in.absolute(st.data_in);
        self.data_out.absolute(st.data_out);
        for (c, r) in self.data_dropped.iter().zip(DataDrop::ALL) {
            c.absolute(st.data_dropped(r));
        }
        self.endpoints.set(core.endpoint_count() as f64);
        self.conferences.set(core.conference_count() as f64);
        let rs = core.relay_stats();
        for (c, f) in &self.relay {
            c.absolute(f(rs));
        }
    }
}

/// The core's relay counters as Prometheus series.
fn relay_counters(shard: &str) -> Vec<RelayCounter> {
    let s = || shard.to_string();
    vec![
        (
            metrics::counter!("tern_relay_datagrams_total", "shard" => s(), "direction" => "out"),
            |r| r.datagrams_out,
        ),
        (
            metrics::counter!("tern_relay_datagrams_total", "shard" => s(), "direction" => "in"),
            |r| r.datagrams_in,
        ),
        (
            metrics::counter!("tern_relay_bytes_total", "shard" => s(), "direction" => "out"),
            |r| r.bytes_out,
        ),
        (
            metrics::counter!("tern_relay_bytes_total", "shard" => s(), "direction" => "in"),
            |r| r.bytes_in,
        ),
        (
            metrics::counter!("tern_relay_retransmissions_total", "shard" => s()),
            |r| r.retransmissions,
        ),
        (
            metrics::counter!("tern_relay_nacks_total", "shard" => s()),
            |r| r.nacks_sent,
        ),
        (
            metrics::counter!("tern_relay_holes_total", "shard" => s(), "outcome" => "repaired"),
            |r| r.repaired,
        ),
        (
            metrics::counter!("tern_relay_holes_total", "shard" => s(), "outcome" => "lost"),
            |r| r.lost,
        ),
        (
            metrics::counter!("tern_relay_datagrams_dropped_total", "shard" => s(), "reason" => "malformed"),
            |r| r.dropped_malformed,
        ),
        (
            metrics::counter!("tern_relay_datagrams_dropped_total", "shard" => s(), "reason" => "unknown_source"),
            |r| r.dropped_unknown,
        ),
        (
            metrics::counter!("tern_relay_datagrams_dropped_total", "shard" => s(), "reason" => "duplicate"),
            |r| r.dropped_duplicate,
        ),
        (
            metrics::counter!("tern_relay_control_unknown_total", "shard" => s()),
            |r| r.control_unknown,
        ),
        (
            metrics::counter!("tern_relay_control_refused_total", "shard" => s()),
            |r| r.control_refused,
        ),
    ]
}

pub struct Shard {
    pub index: u8,
    pub core: Core,
    pub rx: mpsc::Receiver<ShardMsg>,
    pub demux: Arc<DashMap<SocketAddr, u8>>,
    pub local_addr: SocketAddr,
    pub snapshots: Snapshots,
    /// The datagrams of a flush and how they leave (bridge/send.rs).
    pub egress: Egress,
    /// Endpoints whose signalling queue overflowed during this flush.
    pub kicked: Vec<EndpointId>,
    /// `tern_signal_backlog_drops_total`: clients dropped for not reading.
    pub signal_backlog: metrics::Counter,
    /// Relay connections, when the bridge is in a mesh.
    pub relay: Option<Arc<super::relay::RelayShared>>,
    /// ICE-TCP connections' writers (bridge/tcp.rs).
    pub tcp_writers: super::tcp::TcpWriters,
    /// The mixing workers, for mixed conferences.
    pub mixing: super::mixing::Mixing,
    /// The recordings directory's writer.
    pub recorder: super::recorder::Recorder,
}

impl Shard {
    /// Run in the shard's span (the caller instruments it).
    pub async fn run(mut self) {
        let metrics = ShardMetrics::new(self.index);
        let mut bandwidth = ReceiverBandwidth::new(self.index);
        let mut loss = super::loss::Loss::new(self.index);
        let mut sessions: HashMap<EndpointId, mpsc::Sender<Box<ServerMessage>>> = HashMap::new();
        let mut next_export = Instant::now();
        let mut shutting_down = false;
        loop {
            // Wake at least for the export, so an idle shard still
            // publishes and the watchdog can tell idle from stalled.
            let deadline = self.core.poll_timeout().min(next_export);
            tokio::select! {
                biased;
                input = self.rx.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input, &mut sessions, &mut shutting_down);
                    // Take whatever else is queued before flushing: fewer
                    // wakeups under load, same order.
                    for _ in 0..64 {
                        match self.rx.try_recv() {
                            Ok(input) => self.handle(input, &mut sessions, &mut shutting_down),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            self.flush(&mut sessions).await;
            let now = Instant::now();
            if now >= next_export {
                metrics.export(&self.core);
                bandwidth.export(&self.core);
                loss.export(&mut self.core);
                self.egress.export();
                self.publish_snapshot();
                next_export = now + Duration::from_secs(1);
            }
            if shutting_down && self.core.endpoint_count() == 0 && sessions.is_empty() {
                metrics.export(&self.core);
            }
        }
    }

    fn publish_snapshot(&self) {
        let st = self.core.stats();
        let snap = ShardSnapshot {
            at: Some(Instant::now()),
            packets_in: st.packets_in,
            packets_out: st.packets_out,
            endpoints: self.core.endpoint_count(),
            conferences: self.core.conferences(),
            recordings: self.core.recordings(),
        };
        if let Some(slot) = self.snapshots.get(usize::from(self.index)) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
        }
    }

    fn handle(
        &mut self,
        input: ShardMsg,
        sessions: &mut HashMap<EndpointId, mpsc::Sender<Box<ServerMessage>>>,
        shutting_down: &mut bool,
    ) {
        let now = Instant::now();
        match input {
            ShardMsg::TcpDatagrams { local, batch } => {
                self.drain(sessions);
                self.core.handle_tcp_datagrams(
                    now,
                    local,
                    batch.iter().map(|(src, data)| (*src, &data[..])),
                );
                self.drain(sessions);
            }
            ShardMsg::Datagrams(batch) => {
                // Outputs of earlier inputs first, so that what this batch
                // produces is one range of `transmits`.
                self.drain(sessions);
                let received = batch.iter().filter_map(|(_, _, t)| *t).min();
                // How far behind this shard is: what admission control
                // reads (the core decides).
                if let (Some(received), Ok(wall)) = (
                    received,
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH),
                ) {
                    self.core
                        .handle_ingress_lag(now, wall.saturating_sub(received));
                }
                let start = self.egress.queue.len();
                self.core.handle_datagrams(
                    now,
                    self.local_addr,
                    batch.iter().map(|(src, data, _)| (*src, &data[..])),
                );
                self.drain(sessions);
                if received.is_some() {
                    for d in &mut self.egress.queue[start..] {
                        d.received = received;
                    }
                }
                // What is ready leaves now, rather than after the rest of the
                // queued input is processed.
                // (Handing the core smaller slices of a batch, down to one
                // datagram, did not lower the delay measurably at fan-out 70
                // and cost up to 60 % more CPU: a burst's last packet waits
                // for the copies of the ones before it either way.)
                if self.egress.pending() >= SEND_BATCH {
                    let core = &mut self.core;
                    self.egress.send_ready(|buf| core.recycle(buf));
                }
            }
            ShardMsg::Join { req, tx, reply } => {
                if *shutting_down {
                    let _ = reply.send(Err(Rejection::new(
                        ErrorCode::ShuttingDown,
                        "the bridge is shutting down",
                    )));
                    return;
                }
                let id = req.id;
                // Register first: the core answers the join with messages.
                sessions.insert(id, tx);
                let result = match self.core.handle_join(now, req) {
                    Ok(()) => Ok(()),
                    Err(SfuError::Refused(r)) => Err(r),
                    Err(e) => Err(Rejection::new(ErrorCode::BadMessage, e.to_string())),
                };
                if result.is_err() {
                    sessions.remove(&id);
                }
                let _ = reply.send(result);
            }
            ShardMsg::Core(input) => {
                let changes_hosting =
                    matches!(input, ShardInput::Move { .. } | ShardInput::End { .. });
                input.apply(&mut self.core, now);
                if changes_hosting {
                    self.publish_snapshot();
                }
            }
            ShardMsg::Shutdown => {
                *shutting_down = true;
                let ids: Vec<EndpointId> = sessions.keys().copied().collect();
                for id in ids {
                    if let Some(tx) = sessions.get(&id) {
                        let _ = tx.try_send(Box::new(ServerMessage::Error {
                            code: ErrorCode::ShuttingDown,
                            message: "the bridge is shutting down".into(),
                        }));
                    }
                    self.core.handle_leave(now, id);
                }
            }
        }
    }

    async fn flush(
        &mut self,
        sessions: &mut HashMap<EndpointId, mpsc::Sender<Box<ServerMessage>>>,
    ) {
        loop {
            self.drain(sessions);
            let core = &mut self.core;
            self.egress.flush(|buf| core.recycle(buf)).await;
            if self.kicked.is_empty() {
                return;
            }
            let now = Instant::now();
            for id in std::mem::take(&mut self.kicked) {
                self.signal_backlog.increment(1);
                ShardInput::SignalBacklog { id }.apply(&mut self.core, now);
            }
        }
    }

    /// Everything the core has to say: datagrams are collected for the next
    /// send, the rest is acted on at once.
    fn drain(&mut self, sessions: &mut HashMap<EndpointId, mpsc::Sender<Box<ServerMessage>>>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit {
                    destination,
                    contents,
                    tcp: false,
                } => self.egress.queue.push(Datagram {
                    to: destination,
                    data: contents,
                    received: None,
                }),
                Output::Transmit {
                    destination,
                    contents,
                    tcp: true,
                } => {
                    let sent = super::tcp::fits_a_frame(&contents)
                        && self
                            .tcp_writers
                            .get(&destination)
                            .is_some_and(|w| w.try_send(contents).is_ok());
                    if !sent {
                        metrics::counter!("tern_ice_tcp_dropped_total", "reason" => "write_queue_full_or_closed")
                            .increment(1);
                    }
                }
                Output::Signal { endpoint, message } => {
                    if let ServerMessage::Error { code, .. } = &*message {
                        super::msg::count_error(*code);
                    }
                    if let Some(tx) = sessions.get(&endpoint)
                        && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(message)
                    {
                        self.kicked.push(endpoint);
                    }
                    // Closed: its WebSocket is gone and the leave that
                    // follows removes it; that is not a client that fails
                    // to read (the soak test caught one counted as such
                    // when the leave had not reached the shard yet).
                }
                Output::Bind { addr } => {
                    self.demux.insert(addr, self.index);
                }
                Output::Unbind { addr } => {
                    self.demux.remove_if(&addr, |_, s| *s == self.index);
                }
                Output::Closed { endpoint } => {
                    sessions.remove(&endpoint);
                }
                Output::RelayControl { peer, msg } => {
                    if let Some(r) = &self.relay {
                        r.send_control(&peer, msg);
                    }
                }
                Output::RelayDatagram { peer, datagram } => {
                    if let Some(r) = &self.relay {
                        r.send_datagram(&peer, datagram);
                    }
                }
                Output::Mix(cmd) => self.mixing.send(cmd),
                Output::Record(r) => self.recorder.send(r),
            }
        }
    }
}
