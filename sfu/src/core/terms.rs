//! The terms a conference is held on, as its first joiner's token set
//! them: forwarding or mixed (at a rate, with a composite of a layout and
//! size), and its one video codec. A later join must ask for the same, or
//! is refused with what differs (`conference_mode`, `unsupported_codec`).

use tern_mixer::video::CompositeSpec;

use super::Core;
use crate::signal::{ErrorCode, Rejection};
use crate::{CodecName, SfuError};

impl Core {
    /// The conference's mixing rate (`None`: forwarding) and video codec for
    /// a join to `room` asking for these, or why the join is refused.
    pub(super) fn conference_terms(
        &mut self,
        room: &str,
        video_codec: Option<CodecName>,
        mix_rate: Option<u32>,
        composite: CompositeSpec,
    ) -> Result<(Option<u32>, Option<CodecName>), SfuError> {
        let mixed = match self.conferences.get(room) {
            Some(c) if c.mixed != mix_rate => {
                self.stats.joins_refused_mode += 1;
                let mode = |m: Option<u32>| match m {
                    Some(rate) => format!("mixed at {rate} Hz"),
                    None => "forwarding".to_string(),
                };
                return Err(SfuError::Refused(Rejection::new(
                    ErrorCode::ConferenceMode,
                    format!(
                        "conference {room} is {}; this token asks for {}",
                        mode(c.mixed),
                        mode(mix_rate)
                    ),
                )));
            }
            Some(c) if c.mixed.is_some() && c.composite != composite => {
                self.stats.joins_refused_mode += 1;
                let spec = |s: CompositeSpec| {
                    format!(
                        "a {} composite of {}x{}",
                        s.layout.as_str(),
                        s.width,
                        s.height
                    )
                };
                return Err(SfuError::Refused(Rejection::new(
                    ErrorCode::ConferenceMode,
                    format!(
                        "conference {room} has {} (0x0: the bridge's size); this token asks for {}",
                        spec(c.composite),
                        spec(composite)
                    ),
                )));
            }
            Some(c) => c.mixed,
            None => match mix_rate {
                Some(rate) if !tern_mixer::SAMPLE_RATES.contains(&rate) => {
                    self.stats.joins_refused_mode += 1;
                    return Err(SfuError::Refused(Rejection::new(
                        ErrorCode::ConferenceMode,
                        format!(
                            "a mixed conference's sample rate is 8000, 12000, 16000, 24000 or 48000 Hz, not {rate}"
                        ),
                    )));
                }
                rate => rate,
            },
        };
        // A composite is H.264 (the one codec the mixer decodes and
        // encodes): a mixed conference negotiates nothing else.
        let video_codec = match (mixed.is_some() && self.cfg.composite, video_codec) {
            (true, None | Some(CodecName::H264)) => Some(CodecName::H264),
            (true, Some(other)) => {
                self.stats.joins_refused_mode += 1;
                return Err(SfuError::Refused(Rejection::new(
                    ErrorCode::ConferenceMode,
                    format!(
                        "a mixed conference's video is H.264 (the composite's codec); this token asks for {}",
                        other.sdp_name()
                    ),
                )));
            }
            (false, c) => c,
        };
        let conference_codec = match self.conferences.get(room) {
            Some(c) => match (c.video_codec, video_codec) {
                (Some(uses), Some(asked)) if uses != asked => {
                    self.stats.joins_refused_codec += 1;
                    return Err(SfuError::Refused(Rejection::new(
                        ErrorCode::UnsupportedCodec,
                        format!(
                            "conference {room} uses {}; this token asks for {}",
                            uses.sdp_name(),
                            asked.sdp_name()
                        ),
                    )));
                }
                (uses, _) => uses,
            },
            None => match video_codec {
                Some(asked)
                    if asked == CodecName::Opus
                        || !(self.cfg.codecs.contains(&asked) || mixed.is_some()) =>
                {
                    self.stats.joins_refused_codec += 1;
                    let offered: Vec<&str> = self
                        .cfg
                        .codecs
                        .iter()
                        .filter(|c| **c != CodecName::Opus)
                        .map(|c| c.sdp_name())
                        .collect();
                    return Err(SfuError::Refused(Rejection::new(
                        ErrorCode::UnsupportedCodec,
                        format!(
                            "this bridge offers video codecs {offered:?}, not {}",
                            asked.sdp_name()
                        ),
                    )));
                }
                asked => asked,
            },
        };
        Ok((mixed, conference_codec))
    }
}
