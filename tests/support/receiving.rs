//! What browser participants receive from each other: decoded video and
//! heard audio, checked through their WebRTC statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Check, Participant, wait_until};

/// How long a browser may take to see another participant.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long media may take to flow once it does.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until `p` decodes video from, and hears, every participant in
/// `from` (name -> id): frames decoded and audio energy above zero and still
/// growing, and a non-zero audio level seen at least once (the fake
/// microphone beeps, so a level of zero means silence is arriving).
pub fn wait_receiving(
    p: &Participant,
    from: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    #[derive(Default)]
    struct Seen {
        first_frames: Option<u64>,
        first_energy: Option<f64>,
        frames: u64,
        energy: f64,
        max_level: f64,
        height: u32,
    }
    let mut seen: BTreeMap<&str, Seen> =
        from.keys().map(|n| (n.as_str(), Seen::default())).collect();
    let done = |s: &Seen| {
        s.first_frames.is_some_and(|f| s.frames > f)
            && s.first_energy.is_some_and(|e| s.energy > e)
            && s.max_level > 0.0
    };
    wait_until(
        &format!("{} receives video and audio from {:?}", p.name, from.keys()),
        timeout,
        || {
            let stats = p.stats()?;
            for (name, id) in from {
                let s = seen.get_mut(name.as_str()).context("name")?;
                let Some(peer) = stats.get(id) else { continue };
                if let Some(v) = &peer.video {
                    s.frames = v.frames_decoded;
                    s.height = v.frame_height;
                    if v.frames_decoded > 0 && s.first_frames.is_none() {
                        s.first_frames = Some(v.frames_decoded);
                    }
                }
                if let Some(a) = &peer.audio {
                    s.energy = a.total_audio_energy;
                    s.max_level = s.max_level.max(a.audio_level);
                    if a.total_audio_energy > 0.0 && s.first_energy.is_none() {
                        s.first_energy = Some(a.total_audio_energy);
                    }
                }
            }
            if seen.values().all(done) {
                return Ok(Check::Done(()));
            }
            let state: Vec<String> = seen
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{n}: frames {} (h {}), energy {:.4}, max level {:.4}",
                        s.frames, s.height, s.energy, s.max_level
                    )
                })
                .collect();
            Ok(Check::NotYet(format!(
                "{}; raw stats: {stats:?}",
                state.join("; ")
            )))
        },
    )?;
    for (n, s) in &seen {
        println!(
            "{} <- {n}: frames {} (h {}), audio energy {:.4}, max level {:.4}",
            p.name, s.frames, s.height, s.energy, s.max_level
        );
    }
    Ok(())
}

/// Everyone in `group` sees everyone else and receives their media.
pub fn all_see_and_hear_each_other(group: &[&Participant]) -> Result<()> {
    for p in group {
        let others: Vec<&str> = group
            .iter()
            .filter(|o| o.name != p.name)
            .map(|o| o.name.as_str())
            .collect();
        let ids = p.wait_sees(&others, CONNECT_TIMEOUT)?;
        wait_receiving(p, &ids, MEDIA_TIMEOUT)?;
    }
    Ok(())
}
