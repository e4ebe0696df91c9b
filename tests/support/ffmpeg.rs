//! Reading recorded files with Debian's FFmpeg (`ffprobe`, `ffmpeg`), for
//! the recording tests (browser and native): the packets a stream holds,
//! whether every frame decodes without a word, the audio as samples, and
//! how strong a tone is in it.
#![allow(dead_code)] // Not every test crate uses every helper.

use std::f64::consts::PI;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// The sample rate [`pcm`] decodes to.
pub const RATE: u32 = 48_000;

pub fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The first and last packet times of a file's one stream (s), as ffprobe
/// reads them.
pub fn packet_span(file: &Path) -> Result<(f64, f64, usize)> {
    packet_span_of(file, "0")
}

/// [`packet_span`] of one stream (`-select_streams`: `0`, `v:0`, `a:0`).
pub fn packet_span_of(file: &Path, stream: &str) -> Result<(f64, f64, usize)> {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file))?;
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let (Some(first), Some(last)) = (
        times.iter().copied().reduce(f64::min),
        times.iter().copied().reduce(f64::max),
    ) else {
        bail!("{}: ffprobe found no packets", file.display());
    };
    Ok((first, last, times.len()))
}

/// Decode every frame; FFmpeg at `-v error` says nothing about a clean file.
/// Every decoded frame goes through with the file's own times
/// (`-fps_mode passthrough`, in the file's millisecond time base): FFmpeg's
/// default converts a variable frame rate to the rate it guesses, and two
/// frames a browser encoded under 33 ms apart (it does, on a busy machine)
/// then share a tick and it complains about its own rounding.
pub fn decodes_cleanly(file: &Path) -> Result<()> {
    let out = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ]))?;
    let errors = String::from_utf8_lossy(&out.stderr);
    ensure!(
        errors.trim().is_empty(),
        "{}: decoding complained: {errors}",
        file.display()
    );
    Ok(())
}

/// The file's audio as 48 kHz mono samples.
pub fn pcm(file: &Path) -> Result<Vec<f64>> {
    let out = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"]))?;
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect())
}

/// Power (dB) of `hz` in `x` (Goertzel).
pub fn power_db(x: &[f64], hz: f64) -> f64 {
    let w = 2.0 * PI * hz / f64::from(RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    10.0 * (p / x.len().max(1) as f64 + 1e-12).log10()
}

/// Frames FFmpeg decodes from a file's first stream, and what it said
/// while decoding.
pub fn decoded_frames(file: &Path) -> Result<(u64, String)> {
    decoded_frames_of(file, "0")
}

/// [`decoded_frames`] of one stream (`-select_streams`).
pub fn decoded_frames_of(file: &Path, stream: &str) -> Result<(u64, String)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            stream,
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .with_context(|| format!("ffprobe {}", file.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    let n = said.trim().trim_end_matches(',').parse().with_context(|| {
        format!(
            "{}: ffprobe counted no frames: {said:?} ({})",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((n, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// What FFmpeg warns of while decoding `file`, and its first packets
/// (time, flags, size), for a failure message.
pub fn explain(file: &Path) -> String {
    let warned = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_else(|e| e.to_string());
    let first = Command::new("ffprobe")
        .args([
            "-v",
            "warning",
            "-show_entries",
            "stream=codec_name,width,height:packet=pts_time,flags,size",
            "-read_intervals",
            "%+#6",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_else(|e| e.to_string());
    let head: Vec<String> = warned.lines().take(12).map(str::to_owned).collect();
    format!(
        "FFmpeg warned: {:?}; first packets: {:?}",
        head.join(" | "),
        first.trim()
    )
}
