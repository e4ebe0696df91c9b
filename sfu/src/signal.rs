//! Signalling protocol v1 message types (see `docs/signalling.md`).
//!
//! The core produces and consumes these; the shell only moves them over a
//! WebSocket. Parsing lives here so the rules (size, version, fields) are
//! enforced in one place and can be fuzzed without a socket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this bridge speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest signalling message accepted, in bytes. SDP offers with a full slot
/// pool are ~20 KiB; anything near this limit is abuse.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Join {
        version: u32,
        token: String,
    },
    Offer {
        sdp: String,
        #[serde(default)]
        sources: Vec<SourceDecl>,
    },
    SourceState {
        name: String,
        muted: bool,
    },
    /// Receiver constraints. Fields left out keep their last value, except
    /// `max_height`, which is replaced whole (as in v1 before last-N).
    Constraints {
        #[serde(default)]
        default_max_height: Option<u32>,
        #[serde(default)]
        max_height: BTreeMap<String, u32>,
        /// Show at most this many video sources; -1: as many as slots.
        #[serde(default)]
        last_n: Option<i32>,
        /// Source ids always shown.
        #[serde(default)]
        selected: Option<Vec<String>>,
        /// Source ids always shown, at `on_stage_max_height`.
        #[serde(default)]
        on_stage: Option<Vec<String>>,
        #[serde(default)]
        on_stage_max_height: Option<u32>,
    },
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audio,
    Video,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDecl {
    pub mid: String,
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub layers: Vec<LayerDecl>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerDecl {
    pub rid: String,
    pub height: u32,
}

/// One tile of a mixed conference's composite video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeTile {
    pub participant: String,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        version: u32,
        room: String,
        participant: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        /// A mixed conference's sample rate: the first audio receive slot
        /// carries the mix of everyone else, no slot carries a participant's
        /// audio. Absent: a forwarding conference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mix_rate: Option<u32>,
    },
    Answer {
        sdp: String,
    },
    /// A mixed conference's composite video: its size and who is in which
    /// tile (join order), sent when anyone joins or leaves.
    Composite {
        width: u32,
        height: u32,
        tiles: Vec<CompositeTile>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        id: String,
    },
    Sources {
        participant: String,
        sources: Vec<SourceInfo>,
    },
    Slots {
        slots: Vec<SlotInfo>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Reconnect elsewhere: re-join through the focus (same participant id).
    /// The bridge closes the socket right after.
    Move {
        reason: String,
    },
    /// Send only the layers of your source `source` (its name) whose
    /// declared height is at most `max_height`; 0: send none. Until told,
    /// send every layer.
    SenderConstraints {
        source: String,
        max_height: u32,
    },
    /// Who dominates the conversation (`None`: nobody has spoken for a
    /// while) and who spoke recently, most recent first (at most 10).
    DominantSpeaker {
        participant: Option<String>,
        recent: Vec<String>,
    },
    /// Who is speaking now, with how loud, sent when it changes and at most
    /// every 300 ms; an empty list: nobody.
    Speaking {
        levels: Vec<SpeakingLevel>,
    },
    /// The most each layer of your camera (source named anything but
    /// "screen") and of your screen share (named "screen") may send, in
    /// bits per second; the bridge does not forward a layer well above it.
    /// Sent once after `joined`.
    SendLimits {
        camera_max_bps: u64,
        screen_max_bps: u64,
    },
    /// The room is being recorded (`active`, as `recording_id`), or no
    /// longer: sent when that changes and after `joined` while it is.
    Recording {
        active: bool,
        recording_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakingLevel {
    pub participant: String,
    /// 0..=127, louder higher (127 minus the RFC 6464 level, with the
    /// participant's noise floor taken out).
    pub level: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: String,
    pub name: String,
    pub sources: Vec<SourceInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub id: String,
    pub participant: String,
    pub name: String,
    pub kind: Kind,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub mid: String,
    pub source: Option<String>,
    /// Why the slot's source is not being sent although it is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
}

/// Why a wanted source is paused for a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suspension {
    /// Even its lowest layer does not fit the receiver's estimated
    /// bandwidth next to the sources ranked above it.
    Bandwidth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    MessageTooLarge,
    InvalidToken,
    TokenExpired,
    UnsupportedVersion,
    NotJoined,
    AlreadyJoined,
    BadOffer,
    RoomFull,
    Replaced,
    ShuttingDown,
    ConferenceEnded,
    /// The bridge is behind with its media and takes no one new for now.
    Overloaded,
    /// A room data channel message over the size limit (dropped).
    DataTooLarge,
    /// A binary or non-UTF-8 room data channel message (dropped).
    DataNotText,
    /// Room data channel messages over the rate limit (dropped).
    DataRateLimited,
    /// The token names a video codec this bridge does not offer, or not
    /// the one its conference already uses.
    UnsupportedCodec,
    /// A viewer's token (`publish: false`) and an offer declaring sources
    /// (not fatal: an offer without sources receives).
    PublishNotAllowed,
    /// More signalling messages than the connection's budget
    /// (`limits::SIGNAL_RATE`, burst `SIGNAL_BURST`): dropped, not fatal.
    RateLimited,
    /// The client's address holds as many signalling connections as the
    /// bridge allows (`bridge.max_signal_connections_per_ip`).
    TooManyConnections,
    /// The token asks for a mixed conference and the conference forwards,
    /// or the other way round, or for another sample rate than it mixes at.
    ConferenceMode,
}

impl ErrorCode {
    /// Every code (metrics register each at zero).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadOffer,
        ErrorCode::RoomFull,
        ErrorCode::Replaced,
        ErrorCode::ShuttingDown,
        ErrorCode::ConferenceEnded,
        ErrorCode::Overloaded,
        ErrorCode::DataTooLarge,
        ErrorCode::DataNotText,
        ErrorCode::DataRateLimited,
        ErrorCode::UnsupportedCodec,
        ErrorCode::PublishNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::ConferenceMode,
    ];

    /// Errors after which the bridge closes the socket.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidToken
                | ErrorCode::TokenExpired
                | ErrorCode::UnsupportedVersion
                | ErrorCode::MessageTooLarge
                | ErrorCode::RoomFull
                | ErrorCode::Replaced
                | ErrorCode::ShuttingDown
                | ErrorCode::ConferenceEnded
                | ErrorCode::Overloaded
                | ErrorCode::UnsupportedCodec
                | ErrorCode::TooManyConnections
                | ErrorCode::ConferenceMode
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::BadOffer => "bad_offer",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Replaced => "replaced",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::ConferenceEnded => "conference_ended",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::DataTooLarge => "data_too_large",
            ErrorCode::DataNotText => "data_not_text",
            ErrorCode::DataRateLimited => "data_rate_limited",
            ErrorCode::UnsupportedCodec => "unsupported_codec",
            ErrorCode::PublishNotAllowed => "publish_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ConferenceMode => "conference_mode",
        }
    }
}

/// Why a client message was refused before it reached a conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn into_message(self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message,
        }
    }
}

/// Parse one client message, enforcing the size limit and naming what is wrong.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, Rejection> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                text.len()
            ),
        ));
    }
    let msg: ClientMessage = serde_json::from_str(text)
        .map_err(|e| Rejection::new(ErrorCode::BadMessage, format!("invalid message: {e}")))?;
    match &msg {
        ClientMessage::Offer { sources, .. } => validate_sources(sources)?,
        ClientMessage::Constraints {
            last_n,
            selected,
            on_stage,
            ..
        } => validate_view(*last_n, selected, on_stage)?,
        _ => {}
    }
    Ok(msg)
}

/// Sources a receiver may name as selected or on stage.
pub const MAX_CHOSEN: usize = 64;

fn validate_view(
    last_n: Option<i32>,
    selected: &Option<Vec<String>>,
    on_stage: &Option<Vec<String>>,
) -> Result<(), Rejection> {
    let bad = |m: String| Err(Rejection::new(ErrorCode::BadMessage, m));
    if let Some(n) = last_n
        && n < -1
    {
        return bad(format!(
            "constraints: last_n {n}: must be -1 (no limit) or more"
        ));
    }
    for (field, list) in [("selected", selected), ("on_stage", on_stage)] {
        if let Some(l) = list
            && l.len() > MAX_CHOSEN
        {
            return bad(format!(
                "constraints: {field} names {} sources, at most {MAX_CHOSEN}",
                l.len()
            ));
        }
    }
    Ok(())
}

/// Source names become part of ids (`participant/name`) and metric-free log
/// fields, so keep them short and boring.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn validate_sources(sources: &[SourceDecl]) -> Result<(), Rejection> {
    const MAX_SOURCES: usize = 8;
    const MAX_LAYERS: usize = 3;
    let bad = |m: String| Err(Rejection::new(ErrorCode::BadMessage, m));
    if sources.len() > MAX_SOURCES {
        return bad(format!("at most {MAX_SOURCES} sources per participant"));
    }
    for (i, s) in sources.iter().enumerate() {
        if !valid_name(&s.name) {
            return bad(format!(
                "source {i}: name must be 1-64 characters of [A-Za-z0-9._-]"
            ));
        }
        if s.mid.is_empty() || s.mid.len() > 16 {
            return bad(format!("source {}: mid must be 1-16 characters", s.name));
        }
        if sources[..i]
            .iter()
            .any(|o| o.name == s.name || o.mid == s.mid)
        {
            return bad(format!("source {}: duplicate name or mid", s.name));
        }
        if s.layers.len() > MAX_LAYERS {
            return bad(format!(
                "source {}: at most {MAX_LAYERS} simulcast layers",
                s.name
            ));
        }
        if s.kind == Kind::Audio && !s.layers.is_empty() {
            return bad(format!("source {}: audio has no layers", s.name));
        }
        for l in &s.layers {
            if l.rid.is_empty() || l.rid.len() > 16 || !valid_name(&l.rid) {
                return bad(format!("source {}: invalid rid", s.name));
            }
            if l.height == 0 || l.height > 4320 {
                return bad(format!("source {}: layer height out of range", s.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_join_and_rejects_unknown_fields_with_reason() {
        let m = parse_client_message(r#"{"type":"join","version":1,"token":"t"}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Join {
                version: 1,
                token: "t".into()
            })
        );
        let e = parse_client_message(r#"{"type":"join","version":1,"token":"t","x":1}"#)
            .expect_err("unknown field must be refused");
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert!(e.message.contains("unknown field `x`"), "{}", e.message);
    }

    #[test]
    fn constraints_take_last_n_and_stage_and_stay_compatible() {
        // A v1 client from before last-N: the new fields are optional.
        let m = parse_client_message(r#"{"type":"constraints","default_max_height":180}"#);
        assert!(matches!(
            m,
            Ok(ClientMessage::Constraints {
                last_n: None,
                on_stage: None,
                ..
            })
        ));
        let m = parse_client_message(
            r#"{"type":"constraints","last_n":6,"on_stage":["a/camera"],"on_stage_max_height":720}"#,
        );
        assert!(matches!(
            m,
            Ok(ClientMessage::Constraints {
                last_n: Some(6),
                ..
            })
        ));
        let e = parse_client_message(r#"{"type":"constraints","last_n":-2}"#).expect_err("-2");
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert!(e.message.contains("last_n -2"), "{}", e.message);
        let many: Vec<String> = (0..=MAX_CHOSEN)
            .map(|i| format!("\"p{i}/camera\""))
            .collect();
        let text = format!(
            r#"{{"type":"constraints","selected":[{}]}}"#,
            many.join(",")
        );
        let e = parse_client_message(&text).expect_err("too many");
        assert!(e.message.contains("selected names 65"), "{}", e.message);
    }

    #[test]
    fn rejects_oversized_message() {
        let big = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(
            parse_client_message(&big).map_err(|e| e.code),
            Err(ErrorCode::MessageTooLarge)
        );
    }

    #[test]
    fn rejects_unknown_type_and_garbage() {
        for text in ["{}", "nope", r#"{"type":"dance"}"#, "[1,2]", ""] {
            let e = parse_client_message(text).expect_err(text);
            assert_eq!(e.code, ErrorCode::BadMessage, "{text}");
        }
    }

    #[test]
    fn rejects_bad_source_declarations() {
        let cases = [
            r#"[{"mid":"0","name":"a b","kind":"audio"}]"#,
            r#"[{"mid":"0","name":"a","kind":"audio"},{"mid":"0","name":"b","kind":"video"}]"#,
            r#"[{"mid":"0","name":"a","kind":"audio","layers":[{"rid":"q","height":180}]}]"#,
            r#"[{"mid":"0","name":"a","kind":"video","layers":[{"rid":"q","height":0}]}]"#,
        ];
        for sources in cases {
            let text = format!(r#"{{"type":"offer","sdp":"","sources":{sources}}}"#);
            let e = parse_client_message(&text).expect_err(sources);
            assert_eq!(e.code, ErrorCode::BadMessage, "{sources}");
        }
    }
}
