//! How a load run fails ([`Error`]): one variant per kind of failure, each
//! naming what was being done and with what (the flag, the request, the
//! file or socket, the Janus room), the lower error as its source. Errors
//! only: nothing here does I/O.

use std::net::AddrParseError;
use std::time::Duration;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line parameter is impossible, contradicts another, or does
    /// not fit the server it points at: the flag, and why (`why` follows
    /// the flag in the message).
    #[error("{flag} {why}")]
    BadArgument { flag: &'static str, why: String },

    /// `--server` is not an address the tool can use.
    #[error("server {server:?}: {why}")]
    BadServer {
        server: String,
        why: &'static str,
        #[source]
        source: Option<AddrParseError>,
    },

    /// Nothing answered at `--server` when a run began.
    #[error("server {server} is unreachable")]
    Unreachable {
        server: String,
        #[source]
        source: Box<Error>,
    },

    /// `--target janus`, but `--server` is not a Janus with the VideoRoom
    /// plugin.
    #[error("{server} is not a usable Janus")]
    NotJanus {
        server: String,
        #[source]
        source: Box<Error>,
    },

    /// A socket, file or thread operation failed: `what` says which
    /// operation on which socket or file.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// Something awaited did not happen in time: `what` is what did not
    /// happen (e.g. "could not join").
    #[error("{what} within {limit:?}")]
    Timeout { what: String, limit: Duration },

    /// An HTTP request was answered with a status that does not serve: the
    /// request (method and URL, or the Janus request), a hint at the likely
    /// cause (empty or starting with a space) and the answer's body.
    #[error("{request}: HTTP {status}{hint}{}", colon_then(body))]
    HttpStatus {
        request: String,
        status: u16,
        hint: &'static str,
        body: String,
    },

    /// An answer to an HTTP request that is not HTTP/1.1 as this client
    /// reads it.
    #[error("{request}: malformed HTTP response ({why})")]
    MalformedHttp { request: String, why: String },

    /// An answer (HTTP body or signalling message) that does not parse as
    /// what it should be: where it came from, and what was expected.
    #[error("{from}: the answer is not {expected}")]
    BadAnswer {
        from: String,
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// Something could not be written as JSON.
    #[error("writing {what} as JSON")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// Tern signalling (a WebSocket) failed: what was being done, and at
    /// which URL.
    #[error("{doing} {url}")]
    WebSocket {
        doing: &'static str,
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },

    /// A participant's session failed with a code: the server's (e.g. a
    /// join the bridge refused) or its peer's own (`answer`, `rtc`, `move`).
    #[error("{code}: {message}")]
    Session { code: String, message: String },

    /// The server closed a participant's connection (`what`: the
    /// connection, or its signalling) before the run ended.
    #[error("the server closed the {what}")]
    Closed { what: &'static str },

    /// A Janus request failed below Janus (no answer, not HTTP): which
    /// request (its `janus` verb and path).
    #[error("{request}")]
    JanusRequest {
        request: String,
        #[source]
        source: Box<Error>,
    },

    /// Janus answered a request, or its long poll, with an error.
    #[error("{request}: error {}: {reason}", code_text(*code))]
    Janus {
        request: String,
        code: Option<i64>,
        reason: String,
    },

    /// The VideoRoom plugin answered with an error while `doing` something
    /// in `room`.
    #[error("{doing} Janus room {room}: VideoRoom error {code}: {reason}")]
    VideoRoom {
        room: u64,
        doing: String,
        code: i64,
        reason: String,
    },

    /// A subscriber's Janus room does not exist (its publishers never
    /// created it).
    #[error("Janus room {room} does not exist")]
    NoSuchJanusRoom { room: u64 },

    /// A Janus subscriber has no stream to ask for (no slots, or feeds
    /// without media).
    #[error("nothing to subscribe to in Janus room {room} (no slots?)")]
    NothingToSubscribe { room: u64 },

    /// Janus answered outside its protocol (an id or an SDP missing, not
    /// Janus's server info): what was wrong, with what it sent.
    #[error("{0}")]
    JanusProtocol(String),

    /// Janus ended a participant's session, handle or PeerConnection
    /// before the run did: how, with what it sent.
    #[error("{0}")]
    JanusEnded(String),

    /// The participant's peer could not take the server's SDP.
    #[error("{what}")]
    Negotiation {
        what: &'static str,
        #[source]
        source: tern_peer::PeerError,
    },

    /// The ceiling's reader thread could not be pinned to its core.
    #[error("pinning the ceiling's reader to core {core}")]
    CpuAffinity {
        core: usize,
        #[source]
        source: nix::errno::Errno,
    },

    /// The ceiling's reader thread panicked.
    #[error("the ceiling's reader thread panicked")]
    ReaderPanicked,

    /// A participant's task panicked or was cancelled.
    #[error("a participant task failed")]
    TaskFailed(#[source] tokio::task::JoinError),

    /// A /proc file of a measured process that does not read as Linux
    /// writes it.
    #[error("malformed {path}")]
    MalformedProc { path: String },

    /// The run itself worked, but some receiver got no media or some
    /// participant failed (the summary has been printed).
    #[error(
        "{receivers_with_media} of {expected_receivers} receivers got media, {failed} participants failed"
    )]
    RunFailed {
        receivers_with_media: usize,
        expected_receivers: usize,
        failed: usize,
    },
}

impl Error {
    /// This error and its causes, outermost first, joined by ": " (for a
    /// participant's error in the summary, and for warnings).
    pub fn with_causes(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }
}

/// `: body`, or nothing for an empty body.
fn colon_then(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// A Janus error code, or `?` when Janus sent none.
fn code_text(code: Option<i64>) -> String {
    code.map_or_else(|| "?".to_string(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed_and_carry_their_causes() {
        let e = Error::Unreachable {
            server: "http://127.0.0.1:1".into(),
            source: Box::new(Error::Io {
                what: "connecting to http://127.0.0.1:1".into(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            }),
        };
        assert_eq!(e.to_string(), "server http://127.0.0.1:1 is unreachable");
        assert_eq!(
            e.with_causes(),
            "server http://127.0.0.1:1 is unreachable: connecting to http://127.0.0.1:1: connection refused"
        );
        let e = Error::HttpStatus {
            request: "GET http://127.0.0.1:8080/health".into(),
            status: 404,
            hint: "",
            body: String::new(),
        };
        assert_eq!(e.to_string(), "GET http://127.0.0.1:8080/health: HTTP 404");
        let e = Error::Janus {
            request: "Janus long poll at /janus/1".into(),
            code: None,
            reason: "gone".into(),
        };
        assert_eq!(e.to_string(), "Janus long poll at /janus/1: error ?: gone");
    }
}
