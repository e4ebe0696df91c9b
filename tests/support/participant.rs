//! One person in a call: a browser on the Tern client, seen through the
//! client's test hooks (`window.tern`, see src/web/tern.js).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use super::wait::{Check, wait_until};
use super::webdriver::Browser;

/// `window.tern.state()`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TernState {
    pub joined: bool,
    pub participant_id: Option<String>,
    pub ws: String,
    pub pc: String,
    /// "focus", "standalone", or None before the first join attempt answered.
    #[serde(default)]
    pub mode: Option<String>,
    /// The bridge the focus placed us on (focus mode only).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Completed re-joins after a lost session.
    #[serde(default)]
    pub reconnects: u32,
    #[serde(default)]
    pub reconnect_attempts: u32,
    #[serde(default)]
    pub reconnecting: bool,
    /// Our own sources (with the id of the track each sends).
    #[serde(default)]
    pub local: Vec<LocalSource>,
    #[serde(default)]
    pub remote: Vec<RemoteParticipant>,
    /// Receive slot mid -> the source it carries now.
    #[serde(default)]
    pub slots: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub errors: Vec<Value>,
    /// Sender constraints the bridge gave us: source name -> max height.
    #[serde(default)]
    pub sending_up_to: BTreeMap<String, u32>,
    /// The bridge's `send_limits` (None until told).
    #[serde(default)]
    pub send_limits: Option<SendLimits>,
    /// Receive slots the bridge paused for us: mid -> reason ("bandwidth").
    #[serde(default)]
    pub suspended: BTreeMap<String, String>,
    /// The dominant speaker the bridge named last (`dominant_speaker`).
    #[serde(default)]
    pub dominant_speaker: Option<String>,
    /// Who spoke recently, most recent first (`dominant_speaker`).
    #[serde(default)]
    pub recent_speakers: Vec<String>,
    /// Who speaks now (`speaking`).
    #[serde(default)]
    pub speaking: Vec<SpeakingLevel>,
    /// "grid" or "speaker".
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub pinned: Option<String>,
    /// The participant on the large tile of the speaker view.
    #[serde(default)]
    pub featured: Option<String>,
}

/// `send_limits` as the client keeps them: bits per second per encoding.
#[derive(Debug, Clone, Deserialize)]
pub struct SendLimits {
    pub camera: Option<u64>,
    pub screen: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpeakingLevel {
    pub participant: String,
    pub level: u8,
}

/// One participant's tile as the page shows it (read from the DOM, not from
/// the client's state).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tile {
    /// `data-participant` (None until the page knows the id).
    pub participant: Option<String>,
    pub name: String,
    pub classes: Vec<String>,
    /// The placeholder's text when it is displayed instead of video.
    pub placeholder: Option<String>,
    /// Whether the "dominant speaker" badge is displayed.
    pub dominant_badge: bool,
    /// The "paused: low bandwidth" label's text while it is displayed.
    #[serde(default)]
    pub bandwidth_paused: Option<String>,
}

impl Tile {
    pub fn has(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }
}

impl TernState {
    pub fn is_speaking(&self, participant: &str) -> bool {
        self.speaking.iter().any(|l| l.participant == participant)
    }

    pub fn remote_named(&self, name: &str) -> Option<&RemoteParticipant> {
        self.remote.iter().find(|p| p.name == name)
    }

    /// Slots (mids) that currently carry a source of `participant`.
    pub fn slots_of(&self, participant: &str) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, src)| {
                src.as_deref()
                    .is_some_and(|s| s.starts_with(&format!("{participant}/")))
            })
            .map(|(mid, _)| mid.clone())
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalSource {
    pub name: String,
    pub kind: String,
    pub mid: Option<String>,
    pub muted: bool,
    pub active: bool,
    pub track_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemoteParticipant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub sources: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoStats {
    pub frames_decoded: u64,
    pub frame_height: u32,
    pub frame_width: u32,
    pub freeze_count: u64,
    pub total_freezes_duration: f64,
    #[serde(default)]
    pub mid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioStats {
    pub audio_level: f64,
    pub total_audio_energy: f64,
    pub packets_received: u64,
    #[serde(default)]
    pub mid: String,
}

/// What one participant receives from one remote participant
/// (`window.tern.stats()[id]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeerStats {
    pub video: Option<VideoStats>,
    pub audio: Option<AudioStats>,
    pub screen: Option<VideoStats>,
}

/// One receive slot (`window.tern.slotStats()`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotStats {
    pub mid: String,
    pub kind: String,
    pub source: Option<String>,
    pub packets_received: u64,
    pub frames_decoded: u64,
    pub frame_height: u32,
    pub total_audio_energy: f64,
}

pub struct Participant {
    pub name: String,
    pub browser: Browser,
}

impl Participant {
    pub fn new(name: &str, browser: Browser) -> Participant {
        Participant {
            name: name.to_string(),
            browser,
        }
    }

    fn hook<T: serde::de::DeserializeOwned>(&self, expr: &str) -> Result<T> {
        let v = self.browser.eval(expr)?;
        serde_json::from_value(v.clone())
            .with_context(|| format!("{}: unexpected result of {expr}: {v}", self.name))
    }

    pub fn state(&self) -> Result<TernState> {
        self.hook("window.tern.state()")
    }

    /// Per remote participant id.
    pub fn stats(&self) -> Result<BTreeMap<String, PeerStats>> {
        self.hook("window.tern.stats()")
    }

    /// The mime types of the page's inbound and outbound `kind` ("audio",
    /// "video") streams that carried something, as getStats names them.
    pub fn codecs(&self, kind: &str) -> Result<(Vec<String>, Vec<String>)> {
        let v = self.browser.execute(
            r#"return (async () => {
            const stats = await window.tern.pc().getStats();
            const inbound = [], outbound = [];
            stats.forEach((r) => {
                if (r.kind !== arguments[0] || !r.codecId) return;
                const c = stats.get(r.codecId);
                if (!c) return;
                if (r.type === 'inbound-rtp' && (r.packetsReceived || 0) > 0) inbound.push(c.mimeType);
                if (r.type === 'outbound-rtp' && (r.packetsSent || 0) > 0) outbound.push(c.mimeType);
            });
            return [inbound, outbound];
        })();"#,
            vec![serde_json::json!(kind)],
        )?;
        let list = |i: usize| -> Vec<String> {
            v[i].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok((list(0), list(1)))
    }

    pub fn slot_stats(&self) -> Result<Vec<SlotStats>> {
        self.hook("window.tern.slotStats()")
    }

    /// Every participant tile on the page, as the DOM shows it.
    pub fn tiles(&self) -> Result<Vec<Tile>> {
        self.hook(
            "[...document.querySelectorAll('#grid .tile')].map((t) => {\n\
               const ph = t.querySelector('.placeholder');\n\
               const badge = t.querySelector('.dominant-badge');\n\
               const paused = t.querySelector('.bandwidth-paused');\n\
               return {\n\
                 participant: t.dataset.participant || null,\n\
                 name: t.querySelector('.name').textContent,\n\
                 classes: [...t.classList],\n\
                 placeholder: getComputedStyle(ph).display === 'none' ? null : ph.textContent,\n\
                 dominantBadge: getComputedStyle(badge).display !== 'none',\n\
                 bandwidthPaused: paused && getComputedStyle(paused).display !== 'none' ? paused.textContent : null,\n\
               };\n\
             })",
        )
    }

    /// The tile of participant `id`.
    pub fn tile(&self, id: &str) -> Result<Tile> {
        self.tiles()?
            .into_iter()
            .find(|t| t.participant.as_deref() == Some(id))
            .with_context(|| format!("{}: no tile for {id}", self.name))
    }

    /// Outbound RTP per layer, as the browser reports it (diagnostics).
    pub fn publish_stats(&self) -> Result<Value> {
        self.browser.eval("window.tern.publishStats()")
    }

    /// `None`: the default for every source.
    pub fn set_max_height(&self, source: Option<&str>, height: u32) -> Result<()> {
        self.browser.execute(
            "return window.tern.setMaxHeight(arguments[0], arguments[1]);",
            vec![json!(source), json!(height)],
        )?;
        Ok(())
    }

    /// Closes the page's signalling socket as a network failure would
    /// (`window.tern.dropSignalling()`); the client must rejoin on its own.
    pub fn drop_signalling(&self) -> Result<()> {
        self.browser
            .execute("window.tern.dropSignalling();", vec![])?;
        Ok(())
    }

    pub fn leave(&self) -> Result<()> {
        self.browser.execute("window.tern.leave();", vec![])?;
        Ok(())
    }

    /// Our participant id, once joined with media connected.
    pub fn wait_connected(&self, timeout: Duration) -> Result<String> {
        wait_until(
            &format!("{} joined with media connected", self.name),
            timeout,
            || {
                let st = match self
                    .browser
                    .eval("window.tern ? window.tern.state() : null")?
                {
                    Value::Null => {
                        return Ok(Check::NotYet("page not loaded (no window.tern)".into()));
                    }
                    v => serde_json::from_value::<TernState>(v)?,
                };
                if !st.errors.is_empty() && st.ws == "closed" {
                    anyhow::bail!("{}: the bridge refused us: {:?}", self.name, st.errors);
                }
                match (&st.participant_id, st.joined && st.pc == "connected") {
                    (Some(id), true) => Ok(Check::Done(id.clone())),
                    _ => Ok(Check::NotYet(format!(
                        "joined={} ws={} pc={} errors={:?}",
                        st.joined, st.ws, st.pc, st.errors
                    ))),
                }
            },
        )
    }

    /// Waits until `names` are all present; returns name -> id.
    pub fn wait_sees(&self, names: &[&str], timeout: Duration) -> Result<BTreeMap<String, String>> {
        wait_until(&format!("{} sees {names:?}", self.name), timeout, || {
            let st = self.state()?;
            let found: BTreeMap<String, String> = names
                .iter()
                .filter_map(|n| st.remote_named(n).map(|p| (n.to_string(), p.id.clone())))
                .collect();
            if found.len() == names.len() {
                Ok(Check::Done(found))
            } else {
                let seen: Vec<&str> = st.remote.iter().map(|p| p.name.as_str()).collect();
                Ok(Check::NotYet(format!("sees {seen:?}")))
            }
        })
    }
}
