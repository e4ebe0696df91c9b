//! Participant tokens: JWT (HS256) scoped to one room and one participant.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tern_sfu::signal::{ErrorCode, Rejection};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub room: String,
    /// Participant id.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    /// The conference's video codec ("vp8", "h264"), when whoever placed
    /// the participant chose one (the focus's Allocate). Checked by the
    /// bridge at join (`codec`), not here: an unknown name gets a precise
    /// refusal rather than "invalid token".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// `false`: a viewer, who receives but may not publish (an offer
    /// declaring sources, or a WHIP publish, is refused). Absent: may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    /// A mixed conference at this sample rate (Hz): the participant sends
    /// one stream and receives one mix. Absent: a forwarding conference.
    /// The bridge checks it against the conference's mode at join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<u32>,
    /// A mixed conference's composite, when not the bridge's grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix_video: Option<MixVideoClaim>,
    /// `true`: may start and stop the room's recording (the focus's
    /// `/recording`). Absent: may not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderator: Option<bool>,
}

/// The composite a mixed conference's token asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixVideoClaim {
    /// "grid" or "speaker".
    pub layout: String,
    /// 0 x 0: the bridge's size.
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

impl Claims {
    /// The codec this token names, if any; a name this build does not
    /// know is refused with the reason.
    pub fn video_codec(&self) -> Result<Option<tern_sfu::CodecName>, Rejection> {
        match self.codec.as_deref() {
            None | Some("") => Ok(None),
            Some(name) => tern_sfu::CodecName::video_from_name(name)
                .map(Some)
                .ok_or_else(|| {
                    Rejection::new(
                        ErrorCode::UnsupportedCodec,
                        format!(
                            "the token names video codec {name:?}; this bridge knows \"vp8\", \"vp9\", \"h264\" and \"av1\""
                        ),
                    )
                }),
        }
    }

    /// The composite the token asks for (the bridge's grid when it names
    /// none); a layout this build does not know is refused with the reason.
    pub fn composite(&self) -> Result<tern_mixer::video::CompositeSpec, Rejection> {
        let Some(v) = &self.mix_video else {
            return Ok(Default::default());
        };
        let layout = tern_mixer::video::Layout::from_name(&v.layout).ok_or_else(|| {
            Rejection::new(
                ErrorCode::ConferenceMode,
                format!(
                    "the token names composite layout {:?}; this bridge knows \"grid\" and \"speaker\"",
                    v.layout
                ),
            )
        })?;
        Ok(tern_mixer::video::CompositeSpec {
            layout,
            width: v.width,
            height: v.height,
        })
    }

    /// Whether the token lets its participant publish.
    pub fn may_publish(&self) -> bool {
        self.publish != Some(false)
    }
}

#[derive(Clone)]
pub struct TokenKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            enc: EncodingKey::from_secret(secret.as_bytes()),
            dec: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, room: &str, participant: &str, name: Option<&str>, ttl_secs: u64) -> String {
        self.mint_with_codec(room, participant, name, ttl_secs, None)
    }

    /// [`Self::mint`] naming the conference's video codec.
    pub fn mint_with_codec(
        &self,
        room: &str,
        participant: &str,
        name: Option<&str>,
        ttl_secs: u64,
        codec: Option<&str>,
    ) -> String {
        self.mint_claims(&Claims {
            room: room.to_string(),
            sub: participant.to_string(),
            name: name.map(str::to_string),
            exp: unix_now() + ttl_secs,
            codec: codec.map(str::to_string),
            publish: None,
            mix: None,
            mix_video: None,
            moderator: None,
        })
    }

    /// A token carrying exactly `claims`.
    pub fn mint_claims(&self, claims: &Claims) -> String {
        // Encoding a struct of strings with HS256 cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.enc).unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Rejection::new(ErrorCode::TokenExpired, "token has expired")
                }
                ErrorKind::InvalidSignature => {
                    Rejection::new(ErrorCode::InvalidToken, "token signature is invalid")
                }
                ErrorKind::InvalidAlgorithm => {
                    Rejection::new(ErrorCode::InvalidToken, "token must be signed with HS256")
                }
                _ => Rejection::new(ErrorCode::InvalidToken, format!("token is invalid: {e}")),
            },
        )?;
        let c = data.claims;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        };
        if !ok(&c.room) {
            return Err(Rejection::new(
                ErrorCode::InvalidToken,
                "token room must be 1-128 characters of [A-Za-z0-9-_.@]",
            ));
        }
        if !ok(&c.sub) {
            return Err(Rejection::new(
                ErrorCode::InvalidToken,
                "token sub (participant id) must be 1-128 characters of [A-Za-z0-9-_.@]",
            ));
        }
        Ok(c)
    }
}

/// A fresh participant id for a display name: a slug of the name plus 24
/// random bits (`alice-3f9a1c`), valid as a token `sub`.
pub fn new_participant_id(name: &str) -> String {
    let slug: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect::<String>()
        .to_ascii_lowercase();
    let slug = if slug.is_empty() {
        "guest".into()
    } else {
        slug
    };
    format!("{slug}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #[test]
    fn turn_credentials_follow_the_rest_scheme_coturn_checks() {
        let turn = crate::config::TurnConfig {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: "north".into(),
            ttl_secs: 86_400,
        };
        let s =
            super::turn_credentials(&turn, "alice", 1_600_000_000 - 86_400).expect("configured");
        assert_eq!(s.username, "1600000000:alice");
        // Python: base64.b64encode(hmac.new(b"north", b"1600000000:alice",
        // hashlib.sha1).digest())
        assert_eq!(s.credential, "gq98pTOhhHaAu0we9aV79kOVVv0=");
        assert_eq!(s.urls, turn.urls);
        let none = crate::config::TurnConfig::default();
        assert_eq!(super::turn_credentials(&none, "alice", 0), None);
    }

    use super::*;

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let k = TokenKeys::new("secret");
        let t = k.mint("room1", "alice", Some("Alice"), 60);
        let c = k.verify(&t).expect("valid");
        assert_eq!((c.room.as_str(), c.sub.as_str()), ("room1", "alice"));
        assert_eq!(c.name.as_deref(), Some("Alice"));
    }

    #[test]
    fn wrong_secret_expired_and_garbage_are_refused_with_reasons() {
        let k = TokenKeys::new("secret");
        let other = TokenKeys::new("other").mint("r", "a", None, 60);
        let e = k.verify(&other).expect_err("wrong secret");
        assert_eq!(e.code, ErrorCode::InvalidToken);
        assert!(e.message.contains("signature"), "{}", e.message);

        let claims = Claims {
            room: "r".into(),
            sub: "a".into(),
            name: None,
            exp: unix_now() - 3600,
            codec: None,
            publish: None,
            mix: None,
            mix_video: None,
            moderator: None,
        };
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("encode");
        assert_eq!(
            k.verify(&expired).map_err(|e| e.code),
            Err(ErrorCode::TokenExpired)
        );

        assert_eq!(
            k.verify("not.a.jwt").map_err(|e| e.code),
            Err(ErrorCode::InvalidToken)
        );
        assert_eq!(
            k.verify("").map_err(|e| e.code),
            Err(ErrorCode::InvalidToken)
        );
    }

    #[test]
    fn generated_participant_ids_are_valid_token_subjects() {
        let k = TokenKeys::new("s");
        for name in ["Alice Smith", "", "ü!?", &"x".repeat(200)] {
            let id = new_participant_id(name);
            assert!(k.verify(&k.mint("r", &id, None, 60)).is_ok(), "{id}");
        }
        assert!(new_participant_id("Alice Smith").starts_with("alicesmith-"));
        assert_ne!(new_participant_id("a"), new_participant_id("a"));
    }

    #[test]
    fn room_with_path_characters_is_refused() {
        let k = TokenKeys::new("s");
        let t = k.mint("../etc", "a", None, 60);
        assert_eq!(
            k.verify(&t).map_err(|e| e.code),
            Err(ErrorCode::InvalidToken)
        );
    }
}

/// One ICE server as `RTCPeerConnection`'s `iceServers` takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Credentials for the configured TURN servers, valid for `turn.ttl_secs`
/// from `now_unix` (TURN REST: username `<expiry>:<participant>`, password
/// base64(HMAC-SHA1(secret, username)), what coturn checks with
/// `use-auth-secret`). None when no TURN server is configured.
pub fn turn_credentials(
    turn: &crate::config::TurnConfig,
    participant: &str,
    now_unix: u64,
) -> Option<IceServer> {
    use aws_lc_rs::hmac;
    use base64::Engine;
    if turn.urls.is_empty() {
        return None;
    }
    let username = format!("{}:{participant}", now_unix + turn.ttl_secs);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, turn.secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    Some(IceServer {
        urls: turn.urls.clone(),
        username,
        credential: base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    })
}
