//! H.264 through OpenH264 (Cisco's, BSD-2; the `openh264` crate builds it
//! from its bundled source with the C++ compiler: ARCHITECTURE.md,
//! "Dependencies and why"). Behind the `openh264` feature, which the `tern`
//! binary turns on: the seam ([`super::VideoCodec`]) compiles without it.

#[cfg(feature = "openh264")]
mod imp {
    use openh264::OpenH264API;
    use openh264::decoder::Decoder;
    use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, UsageType};
    use openh264::formats::{YUVBuffer, YUVSource};

    use crate::MixerError;
    use crate::video::layout::Picture;
    use crate::video::{VideoCodec, VideoConfig, VideoDecoder, VideoEncoder};

    /// OpenH264 for the composite: decoders for publishers, an encoder
    /// for the grid (camera real-time mode; rate control may skip a frame,
    /// which the mixer notices and makes up with the next).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct OpenH264;

    pub struct OpenH264Decoder(Decoder);
    pub struct OpenH264Encoder {
        encoder: Encoder,
        buffer: Vec<u8>,
    }

    fn err(e: openh264::Error) -> MixerError {
        MixerError::Codec(e.to_string())
    }

    impl VideoCodec for OpenH264 {
        type Decoder = OpenH264Decoder;
        type Encoder = OpenH264Encoder;

        fn decoder(&self) -> Result<OpenH264Decoder, MixerError> {
            Decoder::new().map(OpenH264Decoder).map_err(err)
        }

        fn encoder(&self, cfg: &VideoConfig) -> Result<OpenH264Encoder, MixerError> {
            let config = EncoderConfig::new()
                .bitrate(BitRate::from_bps(cfg.bitrate_bps))
                .max_frame_rate(FrameRate::from_hz(cfg.fps as f32))
                .usage_type(UsageType::CameraVideoRealTime)
                .skip_frames(true);
            let encoder =
                Encoder::with_api_config(OpenH264API::from_source(), config).map_err(err)?;
            Ok(OpenH264Encoder {
                encoder,
                buffer: Vec::new(),
            })
        }
    }

    impl VideoDecoder for OpenH264Decoder {
        fn decode(&mut self, annexb: &[u8]) -> Result<Option<Picture>, MixerError> {
            let Some(yuv) = self.0.decode(annexb).map_err(err)? else {
                return Ok(None);
            };
            let (w, h) = yuv.dimensions();
            let (sy, su, sv) = yuv.strides();
            let (w2, h2) = (w / 2, h / 2);
            let copy = |plane: &[u8], stride: usize, w: usize, h: usize| -> Vec<u8> {
                (0..h)
                    .flat_map(|row| {
                        plane
                            .get(row * stride..row * stride + w)
                            .unwrap_or(&[])
                            .iter()
                            .copied()
                    })
                    .collect()
            };
            let (w, h) = (w & !1, h & !1);
            Ok(Some(Picture {
                width: w as u32,
                height: h as u32,
                y: copy(yuv.y(), sy, w, h),
                u: copy(yuv.u(), su, w2, h2),
                v: copy(yuv.v(), sv, w2, h2),
            }))
        }
    }

    impl VideoEncoder for OpenH264Encoder {
        fn encode(&mut self, p: &Picture, keyframe: bool) -> Result<Vec<u8>, MixerError> {
            self.buffer.clear();
            self.buffer.extend_from_slice(&p.y);
            self.buffer.extend_from_slice(&p.u);
            self.buffer.extend_from_slice(&p.v);
            let yuv = YUVBuffer::from_vec(
                std::mem::take(&mut self.buffer),
                p.width as usize,
                p.height as usize,
            );
            if keyframe {
                self.encoder.force_intra_frame();
            }
            let out = self.encoder.encode(&yuv).map_err(err)?.to_vec();
            Ok(out)
        }
    }
}

#[cfg(feature = "openh264")]
pub use imp::{OpenH264, OpenH264Decoder, OpenH264Encoder};
