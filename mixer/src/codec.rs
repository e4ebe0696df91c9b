//! The seam between mixing and a codec.
//!
//! The mixer decodes every input and encodes every receiver's mix through
//! these traits, so the mixing itself (jitter, mix-minus, limiting) is
//! tested exactly with [`Pcm16`] and the codec separately. Mono, one 20 ms
//! frame per call.

use crate::MixerError;

/// Decodes one participant's stream.
pub trait AudioDecoder {
    /// Decode `packet` into `pcm` (one frame at the decoder's rate), or
    /// conceal a lost frame when `packet` is `None`. Returns the samples
    /// written.
    fn decode(&mut self, packet: Option<&[u8]>, pcm: &mut [i16]) -> Result<usize, MixerError>;
}

/// Encodes one receiver's mix.
pub trait AudioEncoder {
    /// Encode one frame of `pcm`, replacing `out`'s contents.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MixerError>;
}

/// Makes decoders and encoders at a conference's sample rate.
pub trait AudioCodec {
    type Decoder: AudioDecoder;
    type Encoder: AudioEncoder;
    fn decoder(&self, rate: u32) -> Result<Self::Decoder, MixerError>;
    fn encoder(&self, rate: u32) -> Result<Self::Encoder, MixerError>;
}

/// Raw 16-bit little-endian samples as the "codec": what goes in comes
/// out, so tests can check a mix sample by sample. A lost frame is
/// concealed as silence; a payload of an odd length is refused, as a real
/// decoder refuses a corrupt packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pcm16;

#[derive(Debug)]
pub struct Pcm16Decoder;

#[derive(Debug)]
pub struct Pcm16Encoder;

impl AudioDecoder for Pcm16Decoder {
    fn decode(&mut self, packet: Option<&[u8]>, pcm: &mut [i16]) -> Result<usize, MixerError> {
        let Some(p) = packet else {
            pcm.fill(0);
            return Ok(pcm.len());
        };
        if p.len() % 2 != 0 || p.len() / 2 > pcm.len() {
            return Err(MixerError::Codec(format!(
                "pcm16 payload of {} bytes for a {}-sample frame",
                p.len(),
                pcm.len()
            )));
        }
        for (s, b) in pcm.iter_mut().zip(p.chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        Ok(p.len() / 2)
    }
}

impl AudioEncoder for Pcm16Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MixerError> {
        out.clear();
        out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        Ok(())
    }
}

impl AudioCodec for Pcm16 {
    type Decoder = Pcm16Decoder;
    type Encoder = Pcm16Encoder;
    fn decoder(&self, _rate: u32) -> Result<Pcm16Decoder, MixerError> {
        Ok(Pcm16Decoder)
    }
    fn encoder(&self, _rate: u32) -> Result<Pcm16Encoder, MixerError> {
        Ok(Pcm16Encoder)
    }
}

/// `pcm` as a [`Pcm16`] payload (tests and tools).
pub fn pcm16_payload(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}
