//! The Janus VideoRoom target (`--target janus`): the same participants,
//! driven through Janus 1.1's HTTP API instead of Tern signalling.
//!
//! One Janus session per participant, one `janus.plugin.videoroom` handle in
//! it. Requests are `POST`s (`{base}`, `{base}/{session}`,
//! `{base}/{session}/{handle}`); everything asynchronous (a join's result, an
//! SDP, `webrtcup`, `hangup`) comes back on the session's long poll
//! (`GET {base}/{session}`), which a background task keeps open and feeds
//! into a channel. Janus destroys a session after 60 s without a request, so
//! a second task sends a keepalive every 25 s.
//!
//! - **Publisher:** create the room if it does not exist yet (every
//!   publisher of a room tries; "already exists" is fine), `join` as
//!   `publisher`, then `publish` with the `Peer`'s usual offer (audio plus VP8
//!   simulcast, rids listed lowest first, hence `rid_order: "lmh"`); Janus
//!   answers in a `configured` event. On `webrtcup` the publisher enters its
//!   feed id and mids in the [`Directory`].
//! - **Subscriber:** waits in the [`Directory`] until every publisher of its
//!   room is up (Janus can only subscribe to feeds that exist), then `join`s
//!   as `subscriber` with one stream per slot (the first `--audio-slots`
//!   microphones and `--video-slots` cameras, like Tern's receive slots) and
//!   one `substream` for all video: Janus forwards exactly one simulcast
//!   layer to a subscriber. Janus offers, the `Peer` answers (`start`).
//!
//! The directory is shared by the participants of this one process: the load
//! tool only subscribes to its own publishers, so it needs no Janus API to
//! discover them, and a subscriber joins exactly when Janus can serve it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_peer::Peer;
use tern_sfu::signal::{ClientMessage, Kind, ServerMessage, SlotInfo};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::http;

const PLUGIN: &str = "janus.plugin.videoroom";
/// Janus drops a session after `session_timeout` (60 s by default) without a
/// request; a keepalive every 25 s leaves room for a slow one.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Janus answers a long poll after at most 30 s (with a `keepalive` event);
/// no answer after 40 s means it is gone.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Events fetched per long poll.
const LONG_POLL_MAX_EVENTS: usize = 16;
/// Any other request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a subscriber waits for every publisher of its room to be up
/// before it subscribes to those that are (none up by then is an error).
const PUBLISHERS_WAIT: Duration = Duration::from_secs(10);
/// VideoRoom error codes (janus_videoroom.c).
const ERROR_NO_SUCH_ROOM: i64 = 426;
const ERROR_ROOM_EXISTS: i64 = 427;

/// What one participant does in its Janus room.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Numeric VideoRoom id (Janus rooms are numbers unless `string_ids`).
    pub room: u64,
    pub publish: bool,
    /// Publishers the load puts in this room (the room's capacity, and what
    /// a subscriber waits for).
    pub room_publishers: usize,
    pub audio_slots: usize,
    pub video_slots: usize,
    /// The simulcast layer (0 = lowest) every subscriber asks for.
    pub substream: u8,
}

/// A publisher's feed, once its PeerConnection is up.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Its display name: the load tool's participant name (`pub0`).
    pub display: String,
    pub id: u64,
    pub audio_mid: Option<String>,
    pub video_mid: Option<String>,
}

/// Feeds that are up, by room: publishers write, subscribers wait on it.
#[derive(Debug, Default)]
pub struct Directory {
    rooms: Mutex<HashMap<u64, Vec<Feed>>>,
}

impl Directory {
    fn add(&self, room: u64, feed: Feed) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let feeds = rooms.entry(room).or_default();
        feeds.retain(|f| f.id != feed.id);
        feeds.push(feed);
    }

    fn feeds(&self, room: u64) -> Vec<Feed> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let mut feeds = rooms.get(&room).cloned().unwrap_or_default();
        // Deterministic slot order: by participant name, as numbered.
        feeds.sort_by_key(|f| (f.display.len(), f.display.clone()));
        feeds
    }

    /// Waits until `expected` feeds of `room` are up (or `wait` passed, then
    /// takes what there is, if anything).
    async fn wait_for(&self, room: u64, expected: usize, wait: Duration) -> Result<Vec<Feed>> {
        let deadline = Instant::now() + wait;
        loop {
            let feeds = self.feeds(room);
            if feeds.len() >= expected {
                return Ok(feeds);
            }
            if Instant::now() >= deadline {
                if feeds.is_empty() {
                    return Err(Error::Timeout {
                        what: format!("no publisher of Janus room {room} came up"),
                        limit: wait,
                    });
                }
                return Ok(feeds);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A Janus event from the session's long poll, for [`Session::handle`].
pub type Event = Value;

pub struct Session {
    server: SocketAddr,
    base: String,
    session: u64,
    handle: u64,
    name: String,
    plan: Plan,
    directory: Arc<Directory>,
    events: mpsc::UnboundedReceiver<Result<Value>>,
    /// Events read while waiting for a particular one, not handled yet.
    stash: VecDeque<Value>,
    tasks: Vec<JoinHandle<()>>,
    next_transaction: u64,
    /// Publisher: its feed id (from `joined`) and mids (from its offer).
    feed_id: Option<u64>,
    audio_mid: Option<String>,
    video_mid: Option<String>,
    listed: bool,
    closed: bool,
}

impl Session {
    /// Creates a Janus session (with its long poll and keepalive) and
    /// attaches the VideoRoom plugin.
    pub async fn open(
        server: SocketAddr,
        base: &str,
        name: &str,
        plan: Plan,
        directory: Arc<Directory>,
    ) -> Result<Session> {
        let created = post(
            server,
            base,
            json!({"janus": "create", "transaction": format!("{name}-create")}),
        )
        .await?;
        let session = created["data"]["id"].as_u64().ok_or_else(|| {
            Error::JanusProtocol(format!(
                "Janus `create` answered without a session id: {created}"
            ))
        })?;
        let (tx, events) = mpsc::unbounded_channel();
        let session_path = format!("{base}/{session}");
        let tasks = vec![
            tokio::spawn(long_poll(server, session_path.clone(), tx)),
            tokio::spawn(keepalive(server, session_path)),
        ];
        // From here on, dropping the session stops its tasks.
        let mut s = Session {
            server,
            base: base.to_string(),
            session,
            handle: 0,
            name: name.to_string(),
            plan,
            directory,
            events,
            stash: VecDeque::new(),
            tasks,
            next_transaction: 0,
            feed_id: None,
            audio_mid: None,
            video_mid: None,
            listed: false,
            closed: false,
        };
        let attached = s
            .post_session(json!({"janus": "attach", "plugin": PLUGIN}))
            .await?;
        s.handle = attached["data"]["id"].as_u64().ok_or_else(|| {
            Error::JanusProtocol(format!(
                "Janus `attach` ({PLUGIN}) answered without a handle id: {attached}"
            ))
        })?;
        Ok(s)
    }

    /// Joins the room: a publisher makes its offer (it leaves through
    /// [`Session::send`]), a subscriber gets Janus's offer and answers it.
    pub async fn start(&mut self, peer: &mut Peer, now: Instant) -> Result<()> {
        let room = self.plan.room;
        if self.plan.publish {
            self.ensure_room().await?;
            let body = json!({
                "request": "join",
                "ptype": "publisher",
                "room": room,
                "display": self.name,
            });
            self.message(body, None).await?;
            let joined = self.wait_plugin_event("joined").await?;
            self.feed_id = joined["plugindata"]["data"]["id"].as_u64();
            if self.feed_id.is_none() {
                return Err(Error::JanusProtocol(format!(
                    "Janus `joined` without a publisher id: {joined}"
                )));
            }
            peer.start_offer(now);
        } else {
            let feeds = self
                .directory
                .wait_for(room, self.plan.room_publishers, PUBLISHERS_WAIT)
                .await?;
            let streams = subscriptions(&feeds, &self.plan);
            if streams.is_empty() {
                return Err(Error::NothingToSubscribe { room });
            }
            let body = json!({
                "request": "join",
                "ptype": "subscriber",
                "room": room,
                "streams": streams,
            });
            self.message(body, None).await?;
            let attached = self.wait_plugin_event("attached").await?;
            self.on_offer(peer, Instant::now(), &attached).await?;
        }
        Ok(())
    }

    /// What the `Peer` wants to tell the server.
    pub async fn send(&mut self, _peer: &mut Peer, m: ClientMessage) -> Result<()> {
        match m {
            ClientMessage::Offer { sdp, sources } => {
                for s in &sources {
                    match s.kind {
                        Kind::Audio => self.audio_mid = Some(s.mid.clone()),
                        Kind::Video => self.video_mid = Some(s.mid.clone()),
                    }
                }
                let body = json!({"request": "publish", "audiocodec": "opus", "videocodec": "vp8"});
                // str0m lists simulcast rids in the order they were added,
                // lowest first; Janus assumes highest first unless told.
                let jsep = json!({"type": "offer", "sdp": sdp, "rid_order": "lmh"});
                self.message(body, Some(jsep)).await?;
                self.trickle_done().await
            }
            // Leaving is destroying the session (`close`); Tern-only
            // messages (constraints, mute) have no Janus counterpart here.
            _ => Ok(()),
        }
    }

    /// The next event from Janus; `None` once the long poll ended.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        if let Some(e) = self.stash.pop_front() {
            return Ok(Some(e));
        }
        match self.events.recv().await {
            Some(Ok(e)) => Ok(Some(e)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Acts on an event: SDP into the peer, `webrtcup` into the directory,
    /// `hangup` and plugin errors as errors.
    pub async fn handle(&mut self, peer: &mut Peer, now: Instant, e: Event) -> Result<()> {
        match e["janus"].as_str().unwrap_or("") {
            "event" => {
                if let Some((code, reason)) = plugin_error(&e) {
                    return Err(Error::VideoRoom {
                        room: self.plan.room,
                        doing: "in".into(),
                        code,
                        reason,
                    });
                }
                match e["jsep"]["type"].as_str() {
                    Some("answer") => {
                        let sdp = e["jsep"]["sdp"].as_str().unwrap_or_default().to_string();
                        peer.handle_signal(now, ServerMessage::Answer { sdp });
                    }
                    // A renegotiation (`updated`): Janus offers again.
                    Some("offer") => self.on_offer(peer, now, &e).await?,
                    _ => {}
                }
            }
            // Subscribers may join this publisher's feed from now on.
            "webrtcup" if self.plan.publish && !self.listed => {
                self.listed = true;
                if let Some(id) = self.feed_id {
                    self.directory.add(
                        self.plan.room,
                        Feed {
                            display: self.name.clone(),
                            id,
                            audio_mid: self.audio_mid.clone(),
                            video_mid: self.video_mid.clone(),
                        },
                    );
                }
            }
            "hangup" => {
                return Err(Error::JanusEnded(format!(
                    "Janus hung up the PeerConnection: {}",
                    e["reason"].as_str().unwrap_or("no reason given")
                )));
            }
            "detached" => {
                return Err(Error::JanusEnded(
                    "Janus detached the VideoRoom handle".to_string(),
                ));
            }
            "error" => {
                return Err(janus_error(
                    format!("an event on {}'s Janus session", self.name),
                    &e,
                ));
            }
            // keepalive, media, slowlink, trickle (Janus puts its candidates
            // in the SDP: half-trickle), ack.
            _ => {}
        }
        Ok(())
    }

    /// Destroys the session on Janus (which closes its PeerConnections).
    pub async fn close(&mut self) {
        // Stop polling first: a long poll on a destroyed session is an error
        // in Janus's log.
        for t in &self.tasks {
            t.abort();
        }
        if !self.closed {
            self.closed = true;
            let _ = self.post_session(json!({"janus": "destroy"})).await;
        }
    }

    async fn on_offer(&mut self, peer: &mut Peer, now: Instant, e: &Value) -> Result<()> {
        let sdp = e["jsep"]["sdp"]
            .as_str()
            .filter(|_| e["jsep"]["type"] == "offer")
            .ok_or_else(|| {
                Error::JanusProtocol(format!("Janus sent no SDP offer to the subscriber: {e}"))
            })?;
        // Name what each offered mid carries, as Tern's `slots` would.
        let slots: Vec<SlotInfo> = e["plugindata"]["data"]["streams"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let mid = s["mid"].as_str()?;
                let source = match s["type"].as_str()? {
                    "audio" => "mic",
                    "video" => "camera",
                    _ => return None,
                };
                let display = s["feed_display"].as_str()?;
                Some(SlotInfo {
                    mid: mid.to_string(),
                    source: Some(format!("{display}/{source}")),
                    suspended: None,
                })
            })
            .collect();
        peer.handle_signal(now, ServerMessage::Slots { slots });
        let answer = peer
            .accept_offer(now, sdp)
            .map_err(|source| Error::Negotiation {
                what: "answering Janus's offer",
                source,
            })?;
        let jsep = json!({"type": "answer", "sdp": answer});
        self.message(json!({"request": "start"}), Some(jsep))
            .await?;
        self.trickle_done().await
    }

    /// Creates the room unless it exists (every publisher of a room tries).
    async fn ensure_room(&mut self) -> Result<()> {
        let body = json!({
            "request": "create",
            "room": self.plan.room,
            "description": format!("tern loadtest {}", self.plan.room),
            "publishers": self.plan.room_publishers.max(1),
            "audiocodec": "opus",
            "videocodec": "vp8",
            // No bitrate cap (REMB), no periodic keyframe requests: Tern
            // does neither, and the publishers send a keyframe every 10 s.
            "bitrate": 0,
            "fir_freq": 0,
            "notify_joining": false,
        });
        let r = self.message(body, None).await?;
        match plugin_error(&r) {
            None => Ok(()),
            Some((ERROR_ROOM_EXISTS, _)) => Ok(()),
            Some((code, reason)) => Err(Error::VideoRoom {
                room: self.plan.room,
                doing: "creating".into(),
                code,
                reason,
            }),
        }
    }

    /// Waits for the plugin event `videoroom: what`; other events wait in
    /// the stash for [`Session::next`].
    async fn wait_plugin_event(&mut self, what: &str) -> Result<Value> {
        loop {
            let e = match self.events.recv().await {
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::JanusEnded(format!(
                        "Janus's event stream ended while waiting for `{what}`"
                    )));
                }
            };
            if e["janus"] == "event" {
                if let Some((code, reason)) = plugin_error(&e) {
                    if code == ERROR_NO_SUCH_ROOM {
                        return Err(Error::NoSuchJanusRoom {
                            room: self.plan.room,
                        });
                    }
                    return Err(Error::VideoRoom {
                        room: self.plan.room,
                        doing: format!("waiting for `{what}` in"),
                        code,
                        reason,
                    });
                }
                if e["plugindata"]["data"]["videoroom"] == what {
                    return Ok(e);
                }
            }
            if e["janus"] == "hangup" || e["janus"] == "detached" {
                return Err(Error::JanusEnded(format!(
                    "Janus ended the handle while waiting for `{what}`: {e}"
                )));
            }
            self.stash.push_back(e);
        }
    }

    /// A message to the plugin; synchronous requests answer with
    /// `plugindata`, asynchronous ones with an `ack` (their result is an
    /// event).
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let path = format!("{}/{}/{}", self.base, self.session, self.handle);
        self.with_transaction(&mut m);
        post(self.server, &path, m).await
    }

    async fn trickle_done(&mut self) -> Result<()> {
        // Our candidates are in the SDP; say there are no more.
        let mut m = json!({"janus": "trickle", "candidate": {"completed": true}});
        let path = format!("{}/{}/{}", self.base, self.session, self.handle);
        self.with_transaction(&mut m);
        post(self.server, &path, m).await.map(|_| ())
    }

    async fn post_session(&mut self, mut m: Value) -> Result<Value> {
        self.with_transaction(&mut m);
        let path = format!("{}/{}", self.base, self.session);
        post(self.server, &path, m).await
    }

    fn with_transaction(&mut self, m: &mut Value) {
        self.next_transaction += 1;
        m["transaction"] = json!(format!("{}-{}", self.name, self.next_transaction));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The `streams` of a subscriber's join: the first `audio_slots` microphones
/// and `video_slots` cameras, all video on one substream.
fn subscriptions(feeds: &[Feed], plan: &Plan) -> Vec<Value> {
    let mut streams = Vec::new();
    for f in feeds.iter().take(plan.audio_slots) {
        if let Some(mid) = &f.audio_mid {
            streams.push(json!({"feed": f.id, "mid": mid}));
        }
    }
    for f in feeds.iter().take(plan.video_slots) {
        if let Some(mid) = &f.video_mid {
            streams.push(json!({"feed": f.id, "mid": mid, "substream": plan.substream}));
        }
    }
    streams
}

/// `(error_code, error)` of a VideoRoom answer or event, if it is an error.
fn plugin_error(v: &Value) -> Option<(i64, String)> {
    let data = &v["plugindata"]["data"];
    let code = data["error_code"].as_i64()?;
    Some((code, data["error"].as_str().unwrap_or("").to_string()))
}

/// POSTs a Janus request; a Janus-level error (`"janus": "error"`) is an Err.
async fn post(server: SocketAddr, path: &str, m: Value) -> Result<Value> {
    let request = format!(
        "Janus `{}` at {path}",
        m["janus"].as_str().unwrap_or("request")
    );
    let (status, body) = http::request(server, "POST", path, Some(&m.to_string()), REQUEST_TIMEOUT)
        .await
        .map_err(|e| Error::JanusRequest {
            request: request.clone(),
            source: Box::new(e),
        })?;
    if status != 200 {
        return Err(Error::HttpStatus {
            request,
            status,
            hint: "",
            body: body.trim().to_string(),
        });
    }
    let v: Value = serde_json::from_str(&body).map_err(|source| Error::BadAnswer {
        from: request.clone(),
        expected: "JSON",
        source,
    })?;
    if v["janus"] == "error" {
        return Err(janus_error(request, &v));
    }
    Ok(v)
}

/// A Janus-level error answer (`{"janus": "error", "error": {code, reason}}`)
/// to `request`.
fn janus_error(request: String, v: &Value) -> Error {
    Error::Janus {
        request,
        code: v["error"]["code"].as_i64(),
        reason: v["error"]["reason"].as_str().unwrap_or("").to_string(),
    }
}

/// The session's event channel: long polls, one after the other, until
/// Janus or the receiver goes away (an error is the last thing sent).
async fn long_poll(
    server: SocketAddr,
    session_path: String,
    tx: mpsc::UnboundedSender<Result<Value>>,
) {
    let path = format!("{session_path}?maxev={LONG_POLL_MAX_EVENTS}");
    let request = || format!("Janus long poll at {path}");
    loop {
        let r = http::request(server, "GET", &path, None, LONG_POLL_TIMEOUT).await;
        let events = match r {
            Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                // With `maxev` Janus answers with an array.
                Ok(Value::Array(events)) => events,
                Ok(v) if v["janus"] == "error" => {
                    let _ = tx.send(Err(janus_error(request(), &v)));
                    return;
                }
                Ok(v) => vec![v],
                Err(source) => {
                    let _ = tx.send(Err(Error::BadAnswer {
                        from: request(),
                        expected: "JSON",
                        source,
                    }));
                    return;
                }
            },
            Ok((status, body)) => {
                let _ = tx.send(Err(Error::HttpStatus {
                    request: request(),
                    status,
                    hint: "",
                    body: body.trim().to_string(),
                }));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(Error::JanusRequest {
                    request: request(),
                    source: Box::new(e),
                }));
                return;
            }
        };
        for e in events {
            if tx.send(Ok(e)).is_err() {
                return;
            }
        }
    }
}

async fn keepalive(server: SocketAddr, session_path: String) {
    let mut tick = tokio::time::interval(KEEPALIVE_EVERY);
    tick.tick().await;
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let m = json!({"janus": "keepalive", "transaction": format!("keepalive-{n}")});
        // A failure shows up on the long poll too; nothing to do here.
        let _ = post(server, &session_path, m).await;
    }
}

/// Destroys the rooms a run created (best effort, through a session of its
/// own): Janus keeps rooms in memory until told otherwise.
pub async fn destroy_rooms(server: SocketAddr, base: &str, rooms: &[u64]) -> Result<()> {
    let created = post(
        server,
        base,
        json!({"janus": "create", "transaction": "cleanup"}),
    )
    .await?;
    let session = created["data"]["id"].as_u64().ok_or_else(|| {
        Error::JanusProtocol(format!(
            "Janus `create` answered without a session id: {created}"
        ))
    })?;
    let session_path = format!("{base}/{session}");
    let attached = post(
        server,
        &session_path,
        json!({"janus": "attach", "plugin": PLUGIN, "transaction": "cleanup-attach"}),
    )
    .await?;
    let handle = attached["data"]["id"].as_u64().ok_or_else(|| {
        Error::JanusProtocol(format!(
            "Janus `attach` ({PLUGIN}) answered without a handle id: {attached}"
        ))
    })?;
    for (i, room) in rooms.iter().enumerate() {
        let m = json!({
            "janus": "message",
            "transaction": format!("cleanup-{i}"),
            "body": {"request": "destroy", "room": room},
        });
        let _ = post(server, &format!("{session_path}/{handle}"), m).await;
    }
    post(
        server,
        &session_path,
        json!({"janus": "destroy", "transaction": "cleanup-destroy"}),
    )
    .await?;
    Ok(())
}

/// Checks that `GET {base}/info` came from a Janus with the VideoRoom plugin.
pub fn check_info(body: &str) -> Result<String> {
    let v: Value = serde_json::from_str(body).map_err(|source| Error::BadAnswer {
        from: "/info".to_string(),
        expected: "JSON",
        source,
    })?;
    if v["janus"] != "server_info" {
        return Err(Error::JanusProtocol(
            "the /info answer is not Janus's server_info".to_string(),
        ));
    }
    if v["plugins"].get(PLUGIN).is_none() {
        return Err(Error::JanusProtocol(format!("Janus runs without {PLUGIN}")));
    }
    Ok(v["version_string"].as_str().unwrap_or("?").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_follow_the_slots_and_the_substream() {
        let feed = |i: u64| Feed {
            display: format!("pub{i}"),
            id: 100 + i,
            audio_mid: Some("0".into()),
            video_mid: Some("1".into()),
        };
        let plan = Plan {
            room: 1,
            publish: false,
            room_publishers: 3,
            audio_slots: 1,
            video_slots: 2,
            substream: 1,
        };
        let s = subscriptions(&[feed(0), feed(1), feed(2)], &plan);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], json!({"feed": 100, "mid": "0"}));
        assert_eq!(s[2], json!({"feed": 101, "mid": "1", "substream": 1}));
    }

    #[test]
    fn plugin_errors_and_server_info_are_recognised() {
        let e = json!({"janus": "success", "plugindata": {"plugin": PLUGIN, "data": {"videoroom": "event", "error_code": 427, "error": "Room 5 already exists"}}});
        assert_eq!(
            plugin_error(&e),
            Some((427, "Room 5 already exists".into()))
        );
        assert_eq!(plugin_error(&json!({"janus": "ack"})), None);
        let info =
            json!({"janus": "server_info", "version_string": "1.1.2", "plugins": {PLUGIN: {}}});
        assert_eq!(check_info(&info.to_string()).expect("janus"), "1.1.2");
        assert!(check_info("{\"janus\":\"server_info\",\"plugins\":{}}").is_err());
        assert!(check_info("<html>").is_err());
    }

    #[test]
    fn feeds_come_out_in_participant_order() {
        let d = Directory::default();
        for name in ["pub10", "pub2", "pub1"] {
            d.add(
                7,
                Feed {
                    display: name.into(),
                    id: name.len() as u64 * 1000 + name.as_bytes()[name.len() - 1] as u64,
                    audio_mid: None,
                    video_mid: None,
                },
            );
        }
        let names: Vec<String> = d.feeds(7).into_iter().map(|f| f.display).collect();
        assert_eq!(names, ["pub1", "pub2", "pub10"]);
    }
}
