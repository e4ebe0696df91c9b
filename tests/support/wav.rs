//! WAV files for Chromium's fake microphone
//! (`--use-file-for-fake-audio-capture`, which loops the file).

use std::path::Path;

use anyhow::{Context, Result};

/// A 16-bit PCM mono WAV file at `rate` Hz.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> Result<()> {
    let data_len = u32::try_from(samples.len() * 2).context("WAV too long")?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The Chromium flag that makes `wav` the fake microphone.
pub fn fake_mic(wav: &Path) -> String {
    format!("--use-file-for-fake-audio-capture={}", wav.display())
}
