//! What a peer sends: its generators' audio and video (synthetic VP8
//! simulcast, or real H.264 with a pattern), written to its connection
//! at once or through a browser-like pacer.

use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};

use super::{Pacing, Peer, pt_of};
use crate::synth::GenPacket;

impl Peer {
    pub(super) fn generate(&mut self, now: Instant) {
        if !self.state.connected {
            return;
        }
        let mut sent = 0;
        if let Some(g) = self.video.as_mut() {
            self.pending_keyframes.retain(|&(at, layer)| {
                let due = at <= now;
                if due {
                    g.request_keyframe(layer);
                }
                !due
            });
        }
        if let Some(g) = self.pattern.as_mut() {
            let due = self.pending_keyframes.iter().any(|&(at, _)| at <= now);
            self.pending_keyframes.retain(|&(at, _)| at > now);
            if due {
                g.request_keyframe();
            }
            if let (Some(mid), Some(pt)) = (self.video_mid, pt_of(&self.rtc, Codec::H264)) {
                self.gen_buf.clear();
                g.poll(now, &mut self.gen_buf);
                let mut gen_buf = std::mem::take(&mut self.gen_buf);
                for p in gen_buf.drain(..) {
                    sent += u64::from(self.write_video(now, mid, pt, p));
                }
                self.gen_buf = gen_buf;
            }
        }
        if let (Some(g), Some(mid), Some(pt)) = (
            self.video.as_mut(),
            self.video_mid,
            pt_of(&self.rtc, Codec::Vp8),
        ) {
            self.gen_buf.clear();
            g.poll(now, &mut self.gen_buf);
            // Captured now, sent once encoded (at once without a latency).
            self.encoding
                .extend(self.gen_buf.drain(..).map(|p| (now, p)));
            let latency = self.cfg.video_latency;
            while self
                .encoding
                .front()
                .is_some_and(|&(at, _)| at + latency <= now)
            {
                let Some((at, p)) = self.encoding.pop_front() else {
                    break;
                };
                if self.cfg.pacing.is_some() {
                    self.paced.push_back((at, p));
                } else {
                    sent += u64::from(self.write_video(at, mid, pt, p));
                }
            }
            if let Some(pacing) = self.cfg.pacing {
                sent += self.pace(now, pacing, mid, pt);
            }
        }
        if let (Some(g), Some(mid), Some(pt)) = (
            self.audio.as_mut(),
            self.audio_mid,
            pt_of(&self.rtc, Codec::Opus),
        ) {
            self.gen_buf.clear();
            g.poll(now, &mut self.gen_buf);
            for p in self.gen_buf.drain(..) {
                let level = p.audio_level.unwrap_or(g.level).min(127);
                let ext = ExtensionValues {
                    audio_level: Some(-(level as i8)),
                    voice_activity: Some(level < 127),
                    ..Default::default()
                };
                if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                    tx.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, now, p.payload)
                            .marker(p.marker)
                            .ext_vals(ext.clone()),
                    );
                    sent += 1;
                }
            }
        }
        self.state.packets_sent += sent;
    }

    /// Write one generated video packet; `at` is when it was generated
    /// (its capture time for the RTCP sender report mapping).
    fn write_video(&mut self, at: Instant, mid: Mid, pt: Pt, p: GenPacket) -> bool {
        let Some(rid) = self.rids.get(p.layer) else {
            return false;
        };
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, Some(*rid)) else {
            return false;
        };
        // The wallclock says when it was captured (for sender reports).
        let at = at.checked_sub(self.cfg.video_clock_behind).unwrap_or(at);
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, at, p.payload)
                .marker(p.marker)
                .nackable(true),
        );
        let by_layer = &mut self.state.video_sent_by_layer;
        if by_layer.len() <= p.layer {
            by_layer.resize(p.layer + 1, 0);
        }
        by_layer[p.layer] += 1;
        true
    }

    /// Serve the pacer queue: refill the budget for the time since the last
    /// turn (at most one interval's worth, so an idle sender cannot save up
    /// a burst), then send while the budget lasts. Returns packets written.
    fn pace(&mut self, now: Instant, pacing: Pacing, mid: Mid, pt: Pt) -> u64 {
        let bitrate = self.video.as_ref().map_or(0, |g| g.enabled_bitrate_bps());
        let rate = pacing.factor * f64::from(bitrate) / 8.0;
        let cap = rate * pacing.interval.as_secs_f64();
        let elapsed = self
            .pace_last
            .map_or(pacing.interval, |t| now.saturating_duration_since(t));
        self.pace_budget = (self.pace_budget + rate * elapsed.as_secs_f64()).min(cap);
        self.pace_last = Some(now);
        let mut sent = 0;
        // A packet may overdraw the budget (libwebrtc's does too): the next
        // turn pays it back. With nothing enabled (rate 0) the queue drains
        // at once rather than stalling.
        while self.pace_budget > 0.0 || rate == 0.0 {
            let Some((at, p)) = self.paced.pop_front() else {
                break;
            };
            self.pace_budget -= p.payload.len() as f64;
            sent += u64::from(self.write_video(at, mid, pt, p));
        }
        sent
    }
}
