//! Opus for the mixer, through `opus-pure` (pure Rust, no C, no build
//! script; ARCHITECTURE.md says why this crate).
//!
//! Decoders conceal a lost frame with Opus's own concealment. Encoders are
//! set for a conversation: VoIP application, the configured bitrate, and
//! in-band FEC with a modest expected loss, so a receiver's decoder can
//! rebuild a lost mixed frame from the next one.

use opus_pure::{Application, MAX_PACKET_BYTES, OpusDecoder, OpusEncoder};

use crate::MixerError;
use crate::codec::{AudioCodec, AudioDecoder, AudioEncoder};

/// Opus at the conference's rate, mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opus {
    /// Bits per second of each receiver's mix.
    pub bitrate: u32,
    /// 0-10: encoder effort (opus-pure's default is 9).
    pub complexity: u8,
}

impl Default for Opus {
    fn default() -> Self {
        Self {
            bitrate: 32_000,
            complexity: 9,
        }
    }
}

pub struct OpusIn {
    decoder: OpusDecoder,
}

pub struct OpusOut {
    encoder: OpusEncoder,
    packet: Box<[u8; MAX_PACKET_BYTES]>,
}

fn codec_error(e: opus_pure::Error) -> MixerError {
    MixerError::Codec(e.to_string())
}

impl AudioCodec for Opus {
    type Decoder = OpusIn;
    type Encoder = OpusOut;

    fn decoder(&self, rate: u32) -> Result<OpusIn, MixerError> {
        let rate = i32::try_from(rate).map_err(|_| MixerError::SampleRate(rate))?;
        Ok(OpusIn {
            decoder: OpusDecoder::new(rate, 1).map_err(codec_error)?,
        })
    }

    fn encoder(&self, rate: u32) -> Result<OpusOut, MixerError> {
        let rate = i32::try_from(rate).map_err(|_| MixerError::SampleRate(rate))?;
        let mut encoder = OpusEncoder::new(rate, 1, Application::Voip).map_err(codec_error)?;
        encoder.bitrate_bps = i32::try_from(self.bitrate).unwrap_or(i32::MAX);
        encoder.complexity = i32::from(self.complexity.min(10));
        encoder.use_inband_fec = true;
        encoder.packet_loss_perc = 5;
        Ok(OpusOut {
            encoder,
            packet: Box::new([0; MAX_PACKET_BYTES]),
        })
    }
}

impl AudioDecoder for OpusIn {
    fn decode(&mut self, packet: Option<&[u8]>, pcm: &mut [i16]) -> Result<usize, MixerError> {
        // An empty packet asks Opus to conceal the frame.
        let input = packet.unwrap_or(&[]);
        self.decoder
            .decode_s16(input, pcm.len(), pcm)
            .map_err(codec_error)
    }
}

impl AudioEncoder for OpusOut {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MixerError> {
        let n = self
            .encoder
            .encode_s16(pcm, pcm.len(), &mut self.packet[..])
            .map_err(codec_error)?;
        out.clear();
        out.extend_from_slice(&self.packet[..n.min(MAX_PACKET_BYTES)]);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
