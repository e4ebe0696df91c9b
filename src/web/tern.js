// Tern browser client. Plain JavaScript, no build step.
//
// Protocol: docs/signalling.md. In short: one WebSocket to /signal, `join`
// first, then this client is always the offerer. The first offer carries our
// sendonly transceivers (mic, camera with simulcast) and a fixed pool of
// recvonly "receive slots"; the bridge tells us in `slots` which remote source
// each slot carries, so remote participants come and go without renegotiation.
//
// Two ways in (docs/signalling.md, "Focus mode and reconnection"): behind a
// focus, `GET /join` names the bridge to connect to and hands out a token; a
// standalone `tern dev` bridge has no /join (404), so the client falls back
// to `/dev/token` and the same-origin `/signal`. Either way a lost session
// (socket closed, `move`, media failed) is re-joined with backoff, keeping
// the local camera and microphone.
//
// Speech (docs/signalling.md, "Who is heard"): the bridge says who dominates
// the conversation (`dominant_speaker`) and who speaks now (`speaking`).
// Every participant has a tile, with or without a video slot ("not shown");
// tiles mark who speaks and who dominates. Two layouts: a grid, and a
// speaker view with one large tile (the pinned participant, else the
// dominant speaker) over a strip of thumbnails. Pinning is local to the page.
//
// Bandwidth (docs/signalling.md, "Bandwidth"): the bridge says how much each
// camera and screen-share encoding may send (`send_limits`), which we apply
// with setParameters to every video sender, now and later; and it marks the
// receive slots it paused because our downlink does not fit them
// (`slots[].suspended`), which the tile shows as "paused: low bandwidth".
"use strict";

(() => {
  // ---------------------------------------------------------------------------
  // Configuration from the URL
  // ---------------------------------------------------------------------------

  const params = new URLSearchParams(location.search);

  function intParam(name, fallback, min, max) {
    const raw = params.get(name);
    if (raw === null || raw.trim() === "") return fallback;
    const n = Number.parseInt(raw, 10);
    return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
  }

  function roomFromPath() {
    const m = location.pathname.match(/^\/room\/([^/]+)\/?$/);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return null;
    }
  }

  function randomName() {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    return "guest-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const config = {
    room: roomFromPath(),
    name: params.get("name") || randomName(),
    token: params.get("token"),
    // Focus mode: the region to prefer (passed to /join).
    region: params.get("region"),
    // Focus mode: the conference's video codec ("vp8", "vp9", "h264",
    // "av1"; passed to /join, which puts it in the token).
    codec: params.get("codec"),
    // "viewer": join to watch only (the token /join hands out may not
    // publish; no camera or microphone is asked for).
    viewer: params.get("role") === "viewer",
    // "moderator": may start and stop the room's recording (focus mode;
    // a demo setting: /join hands anyone who asks a moderator's token).
    moderator: params.get("role") === "moderator",
    // "mixed": create the room as a mixed conference (focus mode): one mix
    // of everyone's audio is received instead of a stream per speaker.
    // A room that already exists keeps its mode.
    mixed: params.get("mode") === "mixed",
    // A mixed room's audio sample rate (Hz; the focus's default 16000).
    rate: params.get("rate"),
    // A mixed room's composite: "grid" (the default) or "speaker".
    composite: params.get("composite"),
    simulcast: params.get("simulcast") !== "0",
    // VP9 as SVC (one stream, three spatial layers) rather than simulcast;
    // ?svc=0 keeps simulcast.
    svc: params.get("svc") !== "0",
    slots: intParam("slots", 9, 0, 64),
    maxHeight: intParam("maxh", 360, 0, 4320),
    // "speaker": start in the speaker view (one large tile); else the grid.
    layout: params.get("layout") === "speaker" ? "speaker" : "grid",
    // "off": join with the microphone muted.
    micOff: params.get("mic") === "off",
    // "1": media only through the TURN servers /join hands out
    // (iceTransportPolicy "relay"), to try a TURN setup.
    relayOnly: params.get("relay") === "1",
  };

  // Simulcast layers for the camera, lowest first. The heights we announce in
  // `sources` are derived from the real capture height (see cameraLayers()).
  const SIMULCAST_ENCODINGS = [
    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: "f", maxBitrate: 1500000 },
  ];
  // VP9 as SVC (see applyScalability): one encoding carries all three
  // layers, so it may send what the three simulcast encodings would.
  const SVC_MODE = "L3T3_KEY";
  const SVC_MAX_BITRATE = SIMULCAST_ENCODINGS.reduce((sum, e) => sum + e.maxBitrate, 0);

  const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 } };

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------

  function newNegotiation() {
    return { inFlight: false, again: false, answerWaiter: null, answered: false };
  }

  const state = {
    ws: null,
    wsState: "idle", // idle | connecting | open | reconnecting | closed
    pc: null,
    joined: false,
    // A mixed room's sample rate, from `joined` (null: forwarding).
    mixRate: null,
    // Its composite's layout (the last `composite` message).
    composite: null,
    // TURN servers (with credentials) from the last placement.
    iceServers: [],
    left: false,
    participantId: null,
    // "focus" (GET /join works), "standalone" (/dev/token) or null (not known yet).
    mode: null,
    // The bridge /join placed us on (focus mode), else null.
    bridge: null,
    // Set once a fatal error ended the call: no more reconnecting.
    fatal: null,
    // Reconnection: consecutive failed attempts (the backoff index), whether
    // a reconnection is under way, completed re-joins, attempts made, and the
    // pending retry timer.
    failures: 0,
    reconnecting: false,
    // Whether any session reached `joined` yet (later losses are reconnections).
    hadSession: false,
    reconnects: 0,
    reconnectAttempts: 0,
    retryTimer: null,
    // Join watchdog, then media watchdog, of the current session.
    sessionTimer: null,
    // One token re-fetch is allowed after a token error, until the next join.
    tokenRetried: false,
    // Resolves to the local MediaStream (asked for once per page).
    media: null,
    // Remote participants: id -> { id, name, sources: [Source], tile }
    remote: new Map(),
    // Every known remote source: "alice/camera" -> Source
    sources: new Map(),
    // Receive slots: mid -> { transceiver, track, source: string|null }
    slots: new Map(),
    // The last `slots` list from the bridge, re-applied when our slots appear.
    lastSlots: [],
    // Our own sources: name -> { name, kind, transceiver, track, muted, active }
    local: new Map(),
    localStream: null,
    selfTile: null,
    captureHeight: 0,
    // Receiver constraints, always sent complete.
    constraints: { default_max_height: config.maxHeight, max_height: {} },
    // Sender constraints from the bridge: source name -> max height we send.
    sendingUpTo: new Map(),
    // Send limits from the bridge (`send_limits`), bits per second per
    // encoding: { camera, screen }, or null until told. Kept across sessions
    // (the next bridge tells its own) and applied to every video sender.
    sendLimits: null,
    // Speech, as the bridge tells it (docs/signalling.md): the dominant
    // speaker (participant id or null), who spoke recently (most recent
    // first), and who speaks now: participant id -> level 0..127.
    dominant: null,
    recent: [],
    speaking: new Map(),
    // The last remote participant who was dominant: the speaker view keeps
    // showing them while we ourselves are the dominant speaker.
    lastRemoteDominant: null,
    // Layout: "grid" or "speaker" (one large tile, the others in a strip).
    layout: config.layout,
    // The participant pinned to the large tile (UI only), or null.
    pinned: null,
    // Offer/answer bookkeeping: the client is always the offerer, one offer in
    // flight at a time. A new object per session, so a late continuation of
    // an old session cannot disturb the next one.
    negotiation: newNegotiation(),
    errors: [],
    log: [],
  };

  function log(...args) {
    const line = args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");
    state.log.push(`${new Date().toISOString()} ${line}`);
    if (state.log.length > 300) state.log.shift();
    console.log("[tern]", ...args);
  }

  // ---------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function showSection(name) {
    for (const id of ["lobby", "call", "left"]) $(id).hidden = id !== name;
  }

  function showError(code, message) {
    const text = code ? `${code}: ${message}` : message;
    state.errors.push({ code: code || null, message });
    log("error", text);
    const li = document.createElement("li");
    li.textContent = text;
    const list = $("errors");
    list.appendChild(li);
    while (list.children.length > 5) list.firstElementChild.remove();
  }

  function updateStatus() {
    const pcState = state.pc ? state.pc.connectionState : "none";
    const status = $("status");
    if (state.reconnecting) {
      status.textContent = `reconnecting… (attempt ${state.failures + 1})`;
    } else {
      const where = state.bridge ? ` · bridge ${state.bridge}` : "";
      status.textContent = `signalling: ${state.wsState} · media: ${pcState}${where}`;
    }
    status.dataset.ok = String(state.wsState === "open" && pcState === "connected");
    status.dataset.reconnecting = String(state.reconnecting);
  }

  function newTile(label) {
    const fragment = $("tile-template").content.cloneNode(true);
    const tile = {
      root: fragment.querySelector(".tile"),
      camera: fragment.querySelector("video.camera"),
      screen: fragment.querySelector("video.screen"),
      audio: fragment.querySelector("audio"),
      name: fragment.querySelector(".name"),
      placeholder: fragment.querySelector(".placeholder"),
      paused: fragment.querySelector(".bandwidth-paused"),
      pin: fragment.querySelector("button.pin"),
      badges: {
        mic: fragment.querySelector(".mic-off"),
        camera: fragment.querySelector(".camera-off"),
        screen: fragment.querySelector(".sharing"),
        dominant: fragment.querySelector(".dominant-badge"),
        pinned: fragment.querySelector(".pinned-badge"),
      },
      // Which slot mid currently feeds each element, so a late detach of an
      // old slot does not blank an element that a newer slot already took.
      feeding: { camera: null, screen: null, audio: null },
    };
    tile.name.textContent = label;
    tile.pin.onclick = () => {
      const id = tile.root.dataset.participant;
      if (id) togglePin(id);
    };
    $("grid").appendChild(fragment);
    return tile;
  }

  // ---------------------------------------------------------------------------
  // Tiles: who speaks, who dominates, who is pinned, who has no video slot,
  // and the layout. Everything is derived from the state in renderTiles().
  // ---------------------------------------------------------------------------

  // Every tile with the participant id it shows (ours once we know our id).
  function tiles() {
    const out = [];
    if (state.selfTile) out.push([state.participantId, state.selfTile]);
    for (const entry of state.remote.values()) out.push([entry.id, entry.tile]);
    return out;
  }

  // Whether a receive slot carries a video source of `id` now.
  function hasVideoSlot(id) {
    for (const slot of state.slots.values()) {
      if (!slot.source || sourceOwner(slot.source) !== id) continue;
      if (slot.track.kind === "video") return true;
    }
    return false;
  }

  // Whether the bridge paused a video source of `id` for us for lack of
  // bandwidth (a slot that carries it is `suspended`).
  function bandwidthPaused(id) {
    for (const slot of state.slots.values()) {
      if (!slot.source || !slot.suspended || sourceOwner(slot.source) !== id) continue;
      if (slot.track.kind === "video") return true;
    }
    return false;
  }

  // The participant on the large tile of the speaker view: the pinned one,
  // else the dominant speaker (while that is us: the last remote one who
  // was), else whoever spoke most recently, else the first to arrive.
  function featured() {
    const present = (id) => id !== null && (state.remote.has(id) || (id === state.participantId && state.selfTile));
    if (present(state.pinned)) return state.pinned;
    if (state.dominant !== state.participantId && present(state.dominant)) return state.dominant;
    if (present(state.lastRemoteDominant)) return state.lastRemoteDominant;
    for (const id of state.recent) if (id !== state.participantId && present(id)) return id;
    const first = state.remote.keys().next();
    if (!first.done) return first.value;
    return state.participantId;
  }

  function renderTiles() {
    const grid = $("grid");
    const speakerView = state.layout === "speaker";
    grid.classList.toggle("layout-speaker", speakerView);
    grid.classList.toggle("layout-grid", !speakerView);
    grid.dataset.layout = state.layout;
    const big = speakerView ? featured() : null;
    for (const [id, tile] of tiles()) {
      const root = tile.root;
      if (id) root.dataset.participant = id;
      const level = id === null ? undefined : state.speaking.get(id);
      const speaking = level !== undefined;
      root.classList.toggle("speaking", speaking);
      if (speaking) {
        root.dataset.level = String(level);
        root.style.setProperty("--level", String(Math.min(1, level / 127)));
      } else {
        delete root.dataset.level;
        root.style.removeProperty("--level");
      }
      const dominant = id !== null && id === state.dominant;
      root.classList.toggle("dominant", dominant);
      tile.badges.dominant.hidden = !dominant;
      const pinned = id !== null && id === state.pinned;
      root.classList.toggle("pinned", pinned);
      tile.badges.pinned.hidden = !pinned;
      tile.pin.textContent = pinned ? "Unpin" : "Pin";
      tile.pin.setAttribute("aria-pressed", String(pinned));
      tile.pin.disabled = !id;
      root.classList.toggle("featured", big !== null && id === big);
      // Our own tile is the local preview: always "shown".
      const notShown = tile !== state.selfTile && !hasVideoSlot(id);
      root.classList.toggle("not-shown", notShown);
      const paused = tile !== state.selfTile && bandwidthPaused(id);
      root.classList.toggle("bandwidth-paused", paused);
      tile.paused.hidden = !paused;
      tile.placeholder.textContent = root.classList.contains("camera-is-off") ? "camera off" : "not shown";
    }
  }

  function togglePin(id) {
    pin(state.pinned === id ? null : id);
  }

  // Pin `id` to the large tile of the speaker view (null: unpin). Pinning
  // switches to the speaker view, where the pin shows, and puts the
  // participant's camera on stage at the bridge: always given a video
  // slot, at up to 720p while the thumbnails stay small.
  function pin(id) {
    state.pinned = id || null;
    if (state.pinned && state.layout !== "speaker") state.layout = "speaker";
    log(state.pinned ? `pinned ${state.pinned}` : "unpinned");
    sendConstraints();
    renderTiles();
    updateButtons();
  }

  function setLayout(layout) {
    if (layout !== "grid" && layout !== "speaker") throw new Error(`unknown layout ${layout}`);
    state.layout = layout;
    renderTiles();
    updateButtons();
  }

  function onDominantSpeaker(msg) {
    state.dominant = typeof msg.participant === "string" ? msg.participant : null;
    state.recent = Array.isArray(msg.recent) ? msg.recent.filter((id) => typeof id === "string") : [];
    if (state.dominant !== null && state.dominant !== state.participantId) state.lastRemoteDominant = state.dominant;
    log("dominant speaker", state.dominant, "recent", state.recent);
    renderTiles();
  }

  function onSpeaking(msg) {
    state.speaking = new Map();
    for (const l of Array.isArray(msg.levels) ? msg.levels : []) {
      if (l && typeof l.participant === "string") {
        state.speaking.set(l.participant, Number.isFinite(l.level) ? l.level : 0);
      }
    }
    renderTiles();
  }

  // ---------------------------------------------------------------------------
  // Remote participants and sources
  // ---------------------------------------------------------------------------

  function upsertParticipant(p) {
    if (!p || p.id === state.participantId) return null;
    let entry = state.remote.get(p.id);
    if (!entry) {
      entry = { id: p.id, name: p.name || p.id, sources: [], tile: newTile(p.name || p.id) };
      entry.tile.root.dataset.participant = p.id;
      state.remote.set(p.id, entry);
      log("participant", p.id, "present");
    } else if (p.name && p.name !== entry.name) {
      entry.name = p.name;
      entry.tile.name.textContent = p.name;
    }
    if (Array.isArray(p.sources)) setSources(p.id, p.sources);
    renderTiles();
    return entry;
  }

  function removeParticipant(id) {
    const entry = state.remote.get(id);
    if (!entry) return;
    // The bridge also sends `slots`, but detach right away so nothing of a
    // departed participant keeps playing in between.
    for (const [mid, slot] of state.slots) {
      if (slot.source && sourceOwner(slot.source) === id) assignSlot(mid, null);
    }
    for (const s of entry.sources) state.sources.delete(s.id);
    entry.tile.root.remove();
    state.remote.delete(id);
    state.speaking.delete(id);
    if (state.pinned === id) {
      state.pinned = null;
      sendConstraints();
    }
    log("participant", id, "left");
    renderTiles();
  }

  function setSources(participantId, sources) {
    if (participantId === state.participantId) return;
    const entry = state.remote.get(participantId) || upsertParticipant({ id: participantId, name: participantId });
    for (const s of entry.sources) state.sources.delete(s.id);
    entry.sources = sources.map((s) => ({ ...s, participant: s.participant || participantId }));
    for (const s of entry.sources) state.sources.set(s.id, s);
    renderBadges(entry);
    // A slot may already carry a source that was unknown until now.
    for (const [mid, slot] of state.slots) {
      if (slot.source && sourceOwner(slot.source) === participantId) attachSlot(mid);
    }
  }

  function sourceOwner(sourceId) {
    const known = state.sources.get(sourceId);
    if (known) return known.participant;
    const cut = sourceId.lastIndexOf("/");
    return cut > 0 ? sourceId.slice(0, cut) : sourceId;
  }

  function sourceName(sourceId) {
    const known = state.sources.get(sourceId);
    if (known) return known.name;
    return sourceId.slice(sourceId.lastIndexOf("/") + 1);
  }

  function renderBadges(entry) {
    const byName = new Map(entry.sources.map((s) => [s.name, s]));
    const mic = byName.get("mic");
    const camera = byName.get("camera");
    const screen = byName.get("screen");
    entry.tile.badges.mic.hidden = !(mic ? mic.muted : true);
    const cameraOff = camera ? camera.muted : true;
    entry.tile.badges.camera.hidden = !cameraOff;
    entry.tile.root.classList.toggle("camera-is-off", cameraOff);
    entry.tile.badges.screen.hidden = !(screen && !screen.muted);
    renderTiles();
  }

  // ---------------------------------------------------------------------------
  // Receive slots
  // ---------------------------------------------------------------------------

  function registerSlot(transceiver) {
    const mid = transceiver.mid;
    if (mid === null || state.slots.has(mid)) return;
    state.slots.set(mid, { transceiver, track: transceiver.receiver.track, source: null, suspended: null });
  }

  function applySlots(list) {
    state.lastSlots = list;
    const wanted = new Map();
    const suspended = new Map();
    for (const s of list) {
      if (!s || typeof s.mid !== "string") continue;
      wanted.set(s.mid, s.source ?? null);
      if (s.source && typeof s.suspended === "string") suspended.set(s.mid, s.suspended);
    }
    for (const [mid, slot] of state.slots) {
      const next = wanted.has(mid) ? wanted.get(mid) : null;
      assignSlot(mid, next);
      const reason = suspended.get(mid) ?? null;
      if (slot.suspended !== reason) log("slot", mid, reason ? `suspended (${reason})` : "resumed");
      slot.suspended = reason;
    }
    for (const mid of wanted.keys()) {
      if (state.slots.size > 0 && !state.slots.has(mid)) log("slots: unknown mid", mid);
    }
    renderTiles();
  }

  function assignSlot(mid, sourceId) {
    const slot = state.slots.get(mid);
    if (!slot || slot.source === sourceId) return;
    if (slot.source) detachSlot(mid);
    slot.source = sourceId;
    if (sourceId) attachSlot(mid);
  }

  function elementFor(tile, kind, name) {
    if (kind === "audio") return ["audio", tile.audio];
    if (name === "screen") return ["screen", tile.screen];
    return ["camera", tile.camera];
  }

  function attachSlot(mid) {
    const slot = state.slots.get(mid);
    if (!slot || !slot.source || !slot.track) return;
    const owner = sourceOwner(slot.source);
    if (owner === state.participantId) return;
    // `slots` can overtake `participant_joined`/`sources`: make a tile now,
    // the name follows.
    const entry = state.remote.get(owner) || upsertParticipant({ id: owner, name: owner });
    const [role, el] = elementFor(entry.tile, slot.track.kind, sourceName(slot.source));
    if (entry.tile.feeding[role] === mid && el.srcObject) return;
    entry.tile.feeding[role] = mid;
    el.srcObject = new MediaStream([slot.track]);
    if (role === "screen") el.hidden = false;
    el.play().catch((err) => {
      // Autoplay with sound can be refused until the user interacts.
      log("play() refused for", slot.source, String(err));
      if (role === "audio") $("btn-audio").hidden = false;
    });
    log("slot", mid, "->", slot.source);
  }

  function detachSlot(mid) {
    const slot = state.slots.get(mid);
    if (!slot || !slot.source) return;
    const entry = state.remote.get(sourceOwner(slot.source));
    if (entry) {
      for (const role of ["camera", "screen", "audio"]) {
        if (entry.tile.feeding[role] !== mid) continue;
        entry.tile.feeding[role] = null;
        const el = entry.tile[role];
        el.srcObject = null;
        if (role === "screen") el.hidden = true;
      }
    }
    log("slot", mid, "-> (none)");
  }

  // ---------------------------------------------------------------------------
  // Local media
  // ---------------------------------------------------------------------------

  async function getLocalMedia() {
    if (config.viewer) return new MediaStream();
    // Fall back step by step so somebody without a camera (or who refused
    // one of the two) can still join.
    const attempts = [
      { audio: true, video: CAMERA_CONSTRAINTS },
      { audio: true, video: false },
      { audio: false, video: CAMERA_CONSTRAINTS },
    ];
    let lastError = null;
    for (const constraints of attempts) {
      try {
        return await navigator.mediaDevices.getUserMedia(constraints);
      } catch (err) {
        lastError = err;
      }
    }
    showError("media", `no camera or microphone available (${lastError}); joining to watch only`);
    return new MediaStream();
  }

  function cameraLayers() {
    const h = state.captureHeight || 720;
    // Same order and factors as SIMULCAST_ENCODINGS.
    return [
      { rid: "q", height: Math.round(h / 4) },
      { rid: "h", height: Math.round(h / 2) },
      { rid: "f", height: h },
    ];
  }

  function describeSources() {
    const sources = [];
    for (const src of state.local.values()) {
      const mid = src.transceiver ? src.transceiver.mid : null;
      if (!src.active || mid === null) continue;
      const decl = { mid, name: src.name, kind: src.kind };
      if (src.name === "camera" && src.simulcast) decl.layers = cameraLayers();
      sources.push(decl);
    }
    return sources;
  }

  function selfPreview(stream) {
    if (!state.selfTile) {
      state.selfTile = newTile(`${config.name} (you)`);
      state.selfTile.root.classList.add("self");
    }
    state.selfTile.camera.srcObject = stream;
    state.selfTile.root.classList.toggle("camera-is-off", !stream);
    renderTiles();
  }

  // ---------------------------------------------------------------------------
  // Peer connection and negotiation
  // ---------------------------------------------------------------------------

  // Our sources, from the stream getUserMedia gave us. Done once per page:
  // a reconnection re-sends the same tracks.
  function adoptLocalMedia(stream) {
    state.localStream = stream;
    const mic = stream.getAudioTracks()[0];
    if (mic) {
      // Joining muted (?mic=off): the track sends silence and the bridge is
      // told once the first answer is in (offerOnce).
      if (config.micOff) mic.enabled = false;
      state.local.set("mic", { name: "mic", kind: "audio", transceiver: null, track: mic, muted: config.micOff, active: true });
    }
    const camera = stream.getVideoTracks()[0];
    if (camera) {
      state.captureHeight = camera.getSettings().height || 0;
      state.local.set("camera", {
        name: "camera", kind: "video", transceiver: null, track: camera, muted: false, active: true, simulcast: config.simulcast,
      });
    }
  }

  function sendInit(src) {
    const init = { direction: "sendonly" };
    if (src.track && state.localStream && state.localStream.getTracks().includes(src.track)) init.streams = [state.localStream];
    if (src.simulcast) {
      init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e, maxBitrate: cappedBitrate(src, e.maxBitrate) }));
    }
    return init;
  }

  // A new RTCPeerConnection for this session: a sendonly transceiver per
  // local source we still send (with its current track, none while the
  // camera is off), then the receive-slot pool.
  function createPeerConnection() {
    const pc = new RTCPeerConnection({
      bundlePolicy: "max-bundle",
      iceServers: state.iceServers,
      iceTransportPolicy: config.relayOnly ? "relay" : "all",
    });
    // Which ICE servers it gathered with (placement may bring others).
    pc.iceKey = JSON.stringify(state.iceServers);
    state.pc = pc;
    pc.onconnectionstatechange = () => {
      if (state.pc !== pc) return;
      log("pc", pc.connectionState);
      if (pc.connectionState === "connected") {
        // A working session: the next loss starts the backoff from the beginning.
        state.failures = 0;
      }
      updateStatus();
      if (pc.connectionState === "failed" && !state.left) sessionLost("media connection failed");
    };
    pc.ontrack = (ev) => {
      if (state.pc !== pc) return;
      const mid = ev.transceiver.mid;
      // A mixed room: the first audio receive slot carries the mix, the
      // first video slot the composite.
      if (state.mixRate && mid === firstSlot(pc, ev.track.kind)) {
        if (ev.track.kind === "audio") playMix(ev.track);
        else showComposite(ev.track);
        return;
      }
      const slot = state.slots.get(mid);
      if (!slot) return;
      slot.track = ev.track;
      attachSlot(mid);
    };

    for (const [name, src] of [...state.local]) {
      if (!src.active) {
        // A screen share that ended: no m-line for it in the new session.
        state.local.delete(name);
        continue;
      }
      src.transceiver = pc.addTransceiver(src.track || src.kind, sendInit(src));
      applySendLimits(src);
    }
    // The receive-slot pool: it never changes after the first offer. A
    // mixed room sends one mix on the first audio slot: one of each is all
    // it needs.
    const slots = config.mixed ? 1 : config.slots;
    for (const kind of ["audio", "video"]) {
      for (let i = 0; i < slots; i++) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    // The room data channel (chat.js), after the slots so their mids stay.
    window.TernChat.open(pc);
    updateStatus();
    return pc;
  }

  function waitForIceGathering(pc, timeoutMs) {
    // The protocol has no trickle message: our candidates travel in the SDP.
    // Without ICE servers gathering host candidates takes milliseconds.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        pc.removeEventListener("icegatheringstatechange", check);
        clearTimeout(timer);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, timeoutMs);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  // Thrown by a negotiation step that finds its session replaced by a newer one.
  class StaleSession extends Error {}

  // Asks for a (re)negotiation. Offers never overlap: a request made while
  // one is in flight sends one more offer once the answer is in.
  function negotiate() {
    const neg = state.negotiation;
    const pc = state.pc;
    // Before `joined` there is nobody to offer to; the first offer after it
    // carries everything.
    if (!pc || !state.joined) return;
    if (neg.inFlight) {
      neg.again = true;
      return;
    }
    neg.inFlight = true;
    (async () => {
      try {
        do {
          neg.again = false;
          await offerOnce(pc, neg);
        } while (neg.again && !state.left && state.pc === pc);
      } catch (err) {
        if (err instanceof StaleSession || state.pc !== pc) {
          log("negotiation of a replaced session abandoned");
          return;
        }
        if (!state.left) showError("negotiation", String(err));
        // Back to a stable state so a later offer can start cleanly.
        if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
        }
      } finally {
        neg.inFlight = false;
      }
    })();
  }

  async function offerOnce(pc, neg) {
    const current = () => {
      if (state.pc !== pc || state.left) throw new StaleSession("session replaced");
    };
    // A peer connection made ahead of `joined` (preparePeer) has its first
    // offer ready, candidates gathered.
    if (pc.prepared) {
      await pc.prepared;
      pc.prepared = null;
      current();
    }
    if (pc.signalingState !== "have-local-offer") {
      await pc.setLocalDescription(await pc.createOffer());
      current();
    }
    for (const t of pc.getTransceivers()) {
      if (t.direction === "recvonly") registerSlot(t);
    }
    applySlots(state.lastSlots);
    await waitForIceGathering(pc, 2000);
    current();
    const answer = new Promise((resolve, reject) => {
      neg.answerWaiter = { resolve, reject };
    });
    const sources = describeSources();
    send({ type: "offer", sdp: pc.localDescription.sdp, sources });
    log("offer sent", sources);
    const sdp = await answer;
    current();
    await pc.setRemoteDescription({ type: "answer", sdp });
    current();
    log("answer applied");
    if (!neg.answered) {
      neg.answered = true;
      // A new session (first join or a reconnection): the bridge knows our
      // sources now; tell it which of them are muted.
      for (const src of state.local.values()) {
        if (src.active && src.muted) send({ type: "source_state", name: src.name, muted: true });
      }
    }
    // Slots may have been announced before the answer made their tracks live.
    for (const mid of state.slots.keys()) attachSlot(mid);
    // Limits set before negotiation may not have stuck: make sure (no-op
    // when they are in place).
    for (const src of state.local.values()) applySendLimits(src);
    for (const src of state.local.values()) applyScalability(src);
  }

  // Once the answer has chosen the codec. VP9: one SVC stream, three
  // spatial layers of three temporal ones (L3T3_KEY: the upper layers lean
  // on the lower only at keyframes), on the first encoding, the others off;
  // the bridge finds the layers in the stream and gives each receiver the
  // ones up to its own (docs/signalling.md, "Codecs"). AV1, and VP9 with
  // ?svc=0: simulcast, one spatial layer per encoding (without a
  // scalabilityMode Chromium would send one SVC stream the bridge cannot
  // see into for AV1, which needs the dependency descriptor).
  function applyScalability(src) {
    if (!src.transceiver || !src.simulcast) return;
    const codecs = src.transceiver.sender.getParameters().codecs || [];
    const mime = codecs.length ? codecs[0].mimeType.toLowerCase() : "";
    if (mime !== "video/vp9" && mime !== "video/av1") return;
    src.svc = mime === "video/vp9" && config.svc;
    updateSender(src, (encodings) => {
      let changed = false;
      const set = (e, key, value) => {
        if (e[key] !== value) {
          e[key] = value;
          changed = true;
        }
      };
      encodings.forEach((e, i) => {
        if (!src.svc) return set(e, "scalabilityMode", "L1T3");
        if (i > 0) return set(e, "active", false);
        set(e, "scalabilityMode", SVC_MODE);
        set(e, "scaleResolutionDownBy", 1);
      });
      return changed;
    }).then((changed) => {
      if (changed) log(src.svc ? `one ${SVC_MODE} stream` : "simulcast with one spatial layer per encoding", "for", mime);
    });
  }

  function settleAnswer(sdp, error) {
    const waiter = state.negotiation.answerWaiter;
    state.negotiation.answerWaiter = null;
    if (!waiter) {
      if (sdp) log("answer without an offer in flight: ignored");
      return;
    }
    if (error) waiter.reject(error);
    else waiter.resolve(sdp);
  }

  // ---------------------------------------------------------------------------
  // Signalling
  // ---------------------------------------------------------------------------

  function send(msg) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      log("not sent (socket not open):", msg.type);
      return false;
    }
    state.ws.send(JSON.stringify(msg));
    return true;
  }

  // ---------------------------------------------------------------------------
  // Joining, and joining again (docs/signalling.md, "Focus mode and reconnection")
  // ---------------------------------------------------------------------------

  // Errors after which the call is over: reconnecting cannot help.
  const FATAL_CODES = new Set([
    "invalid_token", "token_expired", "unsupported_version", "room_full", "replaced", "message_too_large", "conference_ended",
  ]);
  const TOKEN_CODES = new Set(["invalid_token", "token_expired"]);
  // Delay before each retry after a lost session or a failed attempt.
  const BACKOFF_MS = [250, 500, 1000, 2000, 3000];
  // A session that has not said `joined` by then is given up and retried.
  const JOIN_TIMEOUT_MS = 10000;
  // Media that has not connected this long after `joined` counts as failed.
  const MEDIA_TIMEOUT_MS = 15000;

  function isFatal(code) {
    // Behind a focus another bridge can take us; a standalone bridge that
    // shuts down is the end of the call.
    if (code === "shutting_down") return state.mode !== "focus";
    return FATAL_CODES.has(code);
  }

  // A refusal that retrying the same request cannot fix.
  class JoinRefused extends Error {}

  function sameOriginSignal() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/signal`;
  }

  async function readJson(res) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }

  // Where to connect and with which token: { url, token, bridge }.
  // Focus mode asks `GET /join` (with our participant id once we have one,
  // so the focus knows it is the same participant moving); a 404 without a
  // JSON error on the first try means a standalone `tern dev` bridge.
  async function placement() {
    if (config.token) return { url: sameOriginSignal(), token: config.token, bridge: null };
    if (state.mode !== "standalone") {
      const q = new URLSearchParams({ room: config.room, name: config.name });
      if (state.participantId) q.set("participant", state.participantId);
      if (config.region) q.set("region", config.region);
      if (config.codec) q.set("codec", config.codec);
      if (config.viewer) q.set("role", "viewer");
      else if (config.moderator) q.set("role", "moderator");
      if (config.mixed) q.set("mode", "mixed");
      if (config.mixed && config.rate) q.set("rate", config.rate);
      if (config.mixed && config.composite) q.set("composite", config.composite);
      const res = await fetch(`/join?${q}`, { cache: "no-store" });
      const body = await readJson(res);
      const reason = body && typeof body.error === "string" ? body.error : `HTTP ${res.status}`;
      if (res.ok) {
        if (!body || typeof body.signal_url !== "string" || typeof body.token !== "string") {
          throw new Error("GET /join: no signal_url or token in the answer");
        }
        if (state.mode === null) log("focus mode: /join answers");
        state.mode = "focus";
        if (typeof body.participant === "string" && body.participant) state.participantId = body.participant;
        const url = new URL(body.signal_url, location.href);
        if (url.protocol === "http:") url.protocol = "ws:";
        if (url.protocol === "https:") url.protocol = "wss:";
        window.TernRecording.attach(body.token);
        return { url: url.href, token: body.token, bridge: typeof body.bridge === "string" ? body.bridge : null, iceServers: iceServersOf(body) };
      }
      if (res.status === 404 && state.mode === null && !(body && typeof body.error === "string")) {
        state.mode = "standalone";
        log("standalone mode: no /join here, using /dev/token");
      } else if ([400, 401, 403].includes(res.status)) {
        throw new JoinRefused(`GET /join answered ${res.status}: ${reason}`);
      } else {
        // 503 (no bridge available) and everything else: retry.
        throw new Error(`GET /join answered ${res.status}: ${reason}`);
      }
    }
    const url = `/dev/token?room=${encodeURIComponent(config.room)}&name=${encodeURIComponent(config.name)}`;
    const res = await fetch(url, { cache: "no-store" });
    if (res.status === 404 || res.status === 400) {
      const text = await res.text().catch(() => "");
      throw new JoinRefused(`GET /dev/token answered ${res.status} ${text.trim()} (is the bridge running as "tern dev"?)`);
    }
    if (!res.ok) throw new Error(`GET /dev/token answered ${res.status}`);
    const body = await readJson(res);
    if (!body || typeof body.token !== "string") throw new Error("GET /dev/token: no token in the answer");
    return { url: sameOriginSignal(), token: body.token, bridge: null, iceServers: iceServersOf(body) };
  }

  // TURN servers with this participant's credentials, as /join and
  // /dev/token hand them out; anything malformed is left out.
  function iceServersOf(body) {
    if (!body || !Array.isArray(body.ice_servers)) return [];
    return body.ice_servers
      .filter((s) => s && Array.isArray(s.urls) && typeof s.username === "string" && typeof s.credential === "string")
      .map((s) => ({ urls: s.urls.filter((u) => typeof u === "string"), username: s.username, credential: s.credential }));
  }

  // One join attempt: placement, then a WebSocket to the bridge. Failures
  // schedule the next attempt.
  async function joinAttempt() {
    state.retryTimer = null;
    if (state.left || state.fatal) return;
    if (state.reconnecting) state.reconnectAttempts++;
    state.wsState = "connecting";
    updateStatus();
    let where;
    try {
      where = await placement();
    } catch (err) {
      if (state.left || state.fatal) return;
      const text = String((err && err.message) || err);
      if (err instanceof JoinRefused) {
        endCall("join", text);
        return;
      }
      log("join attempt failed:", text);
      retryLater(false);
      return;
    }
    if (state.left || state.fatal) return;
    state.bridge = where.bridge;
    if (where.iceServers && JSON.stringify(where.iceServers) !== JSON.stringify(state.iceServers)) {
      // New TURN servers or credentials: a peer connection prepared with
      // the old ones gathered the wrong candidates; make it again.
      state.iceServers = where.iceServers;
      log("ice servers:", where.iceServers.map((s) => s.urls.join(" ")).join(", ") || "none");
      const pc = state.pc;
      if (pc && pc.iceKey !== JSON.stringify(state.iceServers) && !state.joined) {
        state.pc = null;
        pc.onconnectionstatechange = null;
        pc.ontrack = null;
        pc.close();
        preparePeer();
      }
    }
    log("connecting to", where.url, where.bridge ? `(bridge ${where.bridge})` : "");
    connect(where);
  }

  function retryLater(immediate) {
    if (state.left || state.fatal || state.retryTimer !== null) return;
    const delay = immediate ? 0 : BACKOFF_MS[Math.min(state.failures, BACKOFF_MS.length - 1)];
    state.failures++;
    state.wsState = state.hadSession ? "reconnecting" : "connecting";
    log(`next join attempt in ${delay} ms`);
    state.retryTimer = setTimeout(joinAttempt, delay);
    updateStatus();
  }

  // Drops the current session (socket, peer connection, receive slots).
  // Local tracks, remote participants' tiles and our constraints stay.
  function teardown() {
    const ws = state.ws;
    state.ws = null;
    clearTimeout(state.sessionTimer);
    if (ws) {
      ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, "reconnecting");
    }
    settleAnswer(null, new StaleSession("session replaced"));
    state.negotiation = newNegotiation();
    const pc = state.pc;
    state.pc = null;
    if (pc) {
      pc.onconnectionstatechange = null;
      pc.ontrack = null;
      pc.close();
    }
    for (const mid of state.slots.keys()) detachSlot(mid);
    state.slots.clear();
    state.lastSlots = [];
    for (const src of state.local.values()) src.transceiver = null;
    state.joined = false;
    // Who speaks is the bridge's news: the next session tells it again.
    state.dominant = null;
    state.recent = [];
    state.speaking = new Map();
    renderTiles();
    updateButtons();
  }

  // The session is gone without the user leaving: join again.
  // `immediate`: the bridge asked us to move, no reason to wait.
  function sessionLost(reason, immediate = false) {
    if (state.left || state.fatal) return;
    log("session lost:", reason);
    // Before the first `joined` this is still the first join, retried.
    state.reconnecting = state.hadSession;
    // The backoff runs while we tear down and prepare the next session.
    teardown();
    retryLater(immediate);
    preparePeer();
  }

  // Makes the next session's peer connection and its first offer (ICE
  // candidates gathered) while the join flow runs, so `joined` can be
  // answered with an offer at once. Only once the local media is known.
  function preparePeer() {
    if (state.left || state.fatal || state.pc || !state.localStream) return;
    const pc = createPeerConnection();
    // offerOnce waits for this (it never rejects) and makes a fresh offer
    // if this one did not come about.
    pc.prepared = (async () => {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc, 2000);
      if (state.pc === pc) log("next offer prepared");
    })().catch((err) => {
      if (state.pc === pc) log("preparing the offer failed:", String(err));
    });
  }

  // A fatal error: stop, say why, and do not come back.
  function endCall(code, message) {
    state.fatal = code;
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.reconnecting = false;
    showError(code, message);
    teardown();
    state.wsState = "closed";
    updateStatus();
  }

  function connect(where) {
    const ws = new WebSocket(where.url);
    state.ws = ws;
    state.wsState = "connecting";
    updateStatus();
    clearTimeout(state.sessionTimer);
    state.sessionTimer = setTimeout(() => {
      if (state.ws === ws && !state.joined) sessionLost(`no "joined" within ${JOIN_TIMEOUT_MS} ms`);
    }, JOIN_TIMEOUT_MS);

    ws.onopen = () => {
      if (state.ws !== ws) return;
      state.wsState = "open";
      updateStatus();
      send({ type: "join", version: 1, token: where.token });
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.wsState = "closed";
      settleAnswer(null, new Error("signalling closed"));
      if (state.left || state.fatal) {
        updateStatus();
        return;
      }
      sessionLost(`signalling closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
    };
    ws.onerror = () => log("websocket error");
    ws.onmessage = (ev) => {
      if (state.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        log("non-JSON message ignored");
        return;
      }
      handleMessage(msg, ws).catch((err) => {
        if (!(err instanceof StaleSession)) showError("client", String(err));
      });
    };
  }

  // The mid of the first recvonly transceiver of `kind` (the mix's or the
  // composite's slot).
  function firstSlot(pc, kind) {
    const t = pc
      .getTransceivers()
      .find((t) => t.direction === "recvonly" && t.receiver.track.kind === kind);
    return t ? t.mid : null;
  }

  function showComposite(track) {
    const el = $("mix-video");
    el.srcObject = new MediaStream([track]);
    $("composite").hidden = false;
    el.play().catch((err) => log("play() refused for the composite", String(err)));
    log("composite video on", track.id);
  }

  // Who is in which tile of the composite: a name label over each.
  function onComposite(msg) {
    state.composite = msg;
    const labels = $("composite-labels");
    labels.textContent = "";
    for (const t of msg.tiles || []) {
      const entry = state.remote.get(t.participant);
      const name = t.participant === state.participantId ? config.name : entry ? entry.name : t.participant;
      const el = document.createElement("span");
      el.className = "composite-label";
      el.textContent = name;
      el.style.left = `${(100 * t.x) / msg.width}%`;
      el.style.top = `${(100 * (t.y + t.height)) / msg.height}%`;
      labels.appendChild(el);
    }
  }

  function playMix(track) {
    const el = $("mix-audio");
    el.srcObject = new MediaStream([track]);
    el.play().catch((err) => {
      log("play() refused for the mix", String(err));
      $("btn-audio").hidden = false;
    });
    log("mixed audio on", track.id);
  }

  function onJoined(msg, ws) {
    state.joined = true;
    // Mixed room (the token decides, whatever the URL said).
    state.mixRate = msg.mix_rate || null;
    state.hadSession = true;
    state.participantId = (msg.participant && msg.participant.id) || state.participantId;
    state.tokenRetried = false;
    if (state.reconnecting) {
      state.reconnecting = false;
      state.reconnects++;
      log("joined again", msg.room, "as", state.participantId, "after", state.reconnectAttempts, "attempts in all");
    } else {
      log("joined", msg.room, "as", state.participantId);
    }
    // After a reconnection: whoever is not here any more has left.
    const present = new Set((msg.participants || []).map((p) => p && p.id));
    for (const id of [...state.remote.keys()]) if (!present.has(id)) removeParticipant(id);
    for (const p of msg.participants || []) upsertParticipant(p);
    // Our own tile carries our id (speaking, dominant, pin).
    renderTiles();
    sendConstraints();
    return (async () => {
      const stream = await state.media;
      if (state.left || state.ws !== ws) return;
      if (!state.localStream) adoptLocalMedia(stream);
      const pc = state.pc || createPeerConnection();
      updateButtons();
      negotiate();
      clearTimeout(state.sessionTimer);
      state.sessionTimer = setTimeout(() => {
        if (state.pc === pc && pc.connectionState !== "connected") sessionLost(`media not connected within ${MEDIA_TIMEOUT_MS} ms`);
      }, MEDIA_TIMEOUT_MS);
    })();
  }

  async function handleMessage(msg, ws) {
    switch (msg.type) {
      case "joined":
        await onJoined(msg, ws);
        break;
      case "answer":
        // As the bridge wrote it: the browser's remoteDescription is a
        // re-serialisation (a=end-of-candidates, for one, is dropped).
        state.lastAnswer = msg.sdp;
        settleAnswer(msg.sdp, null);
        break;
      case "participant_joined":
        upsertParticipant(msg.participant);
        break;
      case "participant_left":
        removeParticipant(msg.id);
        break;
      case "sources":
        if (Array.isArray(msg.sources)) setSources(msg.participant, msg.sources);
        break;
      case "slots":
        if (Array.isArray(msg.slots)) applySlots(msg.slots);
        break;
      case "composite":
        onComposite(msg);
        break;
      case "dominant_speaker":
        onDominantSpeaker(msg);
        break;
      case "speaking":
        onSpeaking(msg);
        break;
      case "send_limits":
        onSendLimits(msg);
        break;
      case "recording":
        window.TernRecording.notice(msg);
        break;
      case "sender_constraints":
        if (typeof msg.source === "string" && Number.isFinite(msg.max_height)) {
          await applySenderConstraints(msg.source, msg.max_height);
        }
        break;
      case "move":
        // The bridge wants us elsewhere (drain, shutdown); it closes the
        // socket right after this.
        sessionLost(`moved by the bridge: ${msg.reason || "no reason given"}`, true);
        break;
      case "error": {
        const code = msg.code;
        const message = msg.message || "";
        if (TOKEN_CODES.has(code) && state.mode === "focus" && !state.tokenRetried) {
          // One fresh token from the focus before giving up.
          state.tokenRetried = true;
          sessionLost(`${code}: ${message}; fetching a new token`, true);
        } else if (isFatal(code)) {
          endCall(code, message);
        } else if (code === "shutting_down") {
          // Focus mode: the socket closes next and we join elsewhere.
          log("bridge shutting down:", message);
        } else if (code === "overloaded") {
          // Not final: the socket closes next and we join again after the
          // back-off (through the focus: perhaps on another bridge).
          log("bridge overloaded:", message);
        } else {
          showError(code, message);
          if (code === "bad_offer") settleAnswer(null, new Error(`offer refused: ${message}`));
        }
        break;
      }
      default:
        // Unknown message types are ignored (protocol rule).
        break;
    }
  }

  // The bridge says how much of a source anybody wants ("dynacast"): the
  // encodings whose announced height is above `maxHeight` stop (all of them
  // at 0) and resume, starting with a keyframe, when it is raised. Heights
  // are the ones we declared (cameraLayers()); a source without layers is
  // one encoding the bridge counts as 720p.
  async function applySenderConstraints(name, maxHeight) {
    const src = state.local.get(name);
    if (!src || !src.transceiver) return;
    const declared = name === "camera" && src.simulcast ? new Map(cameraLayers().map((l) => [l.rid, l.height])) : null;
    state.sendingUpTo.set(name, maxHeight);
    const changed = await updateSender(src, (encodings) => {
      let changed = false;
      for (const enc of encodings) {
        const h = declared && enc.rid && declared.has(enc.rid) ? Math.max(1, declared.get(enc.rid)) : 720;
        // SVC: the first encoding carries every layer; the bridge leaves
        // out what nobody wants, we stop only when nobody watches at all.
        const active = src.svc ? enc === encodings[0] && maxHeight > 0 : h <= maxHeight;
        if (enc.active !== active) {
          enc.active = active;
          changed = true;
        }
      }
      return changed;
    });
    if (changed) log("sending", name, maxHeight > 0 ? `up to ${maxHeight}p` : "nothing (nobody watches)");
  }

  // `send_limits`: the most each encoding may send, camera and screen share.
  function onSendLimits(msg) {
    const bps = (v) => (Number.isFinite(v) && v > 0 ? Math.floor(v) : null);
    state.sendLimits = { camera: bps(msg.camera_max_bps), screen: bps(msg.screen_max_bps) };
    log("send limits", state.sendLimits);
    for (const src of state.local.values()) applySendLimits(src);
  }

  // The limit for our source `src` in bits per second (the screen share is
  // the source named "screen"; every other video source counts as a
  // camera), or null: none.
  function sendLimit(src) {
    if (!state.sendLimits || src.kind !== "video") return null;
    return src.name === "screen" ? state.sendLimits.screen : state.sendLimits.camera;
  }

  // An encoding's maxBitrate: its default (`fallback`, may be undefined)
  // lowered to the bridge's limit.
  function cappedBitrate(src, fallback) {
    const limit = sendLimit(src);
    if (limit === null) return fallback;
    return fallback === undefined ? limit : Math.min(fallback, limit);
  }

  // Applies the send limits to `src`'s sender (when it has one).
  function applySendLimits(src) {
    if (!src.transceiver || sendLimit(src) === null) return;
    updateSender(src, null).then((changed) => {
      if (changed) log("capped", src.name, "at", sendLimit(src), "bps per encoding");
    });
  }

  // Changes `src`'s sender parameters: `edit(encodings)` (may be null)
  // returns whether it changed anything; every encoding's maxBitrate is set
  // to its default capped by the send limits. One update at a time per
  // source (setParameters wants the parameters of the last getParameters).
  // Resolves to whether setParameters was called and succeeded.
  function updateSender(src, edit) {
    const run = async () => {
      const transceiver = src.transceiver;
      if (!transceiver) return false;
      const sender = transceiver.sender;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) return false;
      let changed = edit ? edit(params.encodings) : false;
      const defaults = src.name === "camera" && src.simulcast ? new Map(SIMULCAST_ENCODINGS.map((e) => [e.rid, e.maxBitrate])) : null;
      for (const enc of params.encodings) {
        const fallback = src.svc ? SVC_MAX_BITRATE : defaults && enc.rid ? defaults.get(enc.rid) : undefined;
        const want = cappedBitrate(src, fallback);
        if (want === undefined || enc.maxBitrate === want) continue;
        enc.maxBitrate = want;
        changed = true;
      }
      if (!changed) return false;
      try {
        await sender.setParameters(params);
        return true;
      } catch (e) {
        log("setParameters failed:", e && e.message ? e.message : String(e));
        return false;
      }
    };
    src.senderUpdate = (src.senderUpdate || Promise.resolve()).then(run, run);
    return src.senderUpdate;
  }

  function sendConstraints() {
    const c = state.constraints;
    return send({
      type: "constraints",
      default_max_height: c.default_max_height,
      max_height: { ...c.max_height },
      on_stage: state.pinned ? [`${state.pinned}/camera`] : [],
      on_stage_max_height: 720,
    });
  }

  // ---------------------------------------------------------------------------
  // Controls
  // ---------------------------------------------------------------------------

  function setSourceMuted(name, muted) {
    const src = state.local.get(name);
    if (!src) return;
    src.muted = muted;
    send({ type: "source_state", name, muted });
    updateButtons();
  }

  function toggleMic() {
    const mic = state.local.get("mic");
    if (!mic) return;
    const muted = !mic.muted;
    mic.track.enabled = !muted;
    setSourceMuted("mic", muted);
  }

  async function toggleCamera() {
    const camera = state.local.get("camera");
    if (!camera) return;
    if (!camera.muted) {
      if (camera.transceiver) await camera.transceiver.sender.replaceTrack(null);
      camera.track.stop();
      camera.track = null;
      selfPreview(null);
      setSourceMuted("camera", true);
      return;
    }
    const stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA_CONSTRAINTS });
    const track = stream.getVideoTracks()[0];
    // While reconnecting there is no transceiver: the next session sends this track.
    if (camera.transceiver) await camera.transceiver.sender.replaceTrack(track);
    camera.track = track;
    selfPreview(stream);
    setSourceMuted("camera", false);
  }

  async function toggleScreen() {
    const screen = state.local.get("screen");
    if (screen && screen.active) {
      stopScreen();
      return;
    }
    if (!state.pc) throw new Error("not connected; share again once the call is back");
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    track.onended = () => stopScreen();
    if (screen) {
      // Reuse the transceiver of an earlier share: no new m-line.
      screen.transceiver.direction = "sendonly";
      await screen.transceiver.sender.replaceTrack(track);
      screen.track = track;
      screen.active = true;
    } else {
      const transceiver = state.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      state.local.set("screen", { name: "screen", kind: "video", transceiver, track, muted: false, active: true });
    }
    applySendLimits(state.local.get("screen"));
    updateButtons();
    negotiate();
  }

  function stopScreen() {
    const screen = state.local.get("screen");
    if (!screen || !screen.active) return;
    screen.active = false;
    if (screen.track) screen.track.stop();
    screen.track = null;
    if (screen.transceiver) {
      screen.transceiver.sender.replaceTrack(null).catch((err) => log("replaceTrack(null):", String(err)));
      screen.transceiver.direction = "inactive";
    }
    updateButtons();
    negotiate();
  }

  function leave() {
    if (state.left) return;
    state.left = true;
    clearTimeout(state.retryTimer);
    clearTimeout(state.sessionTimer);
    state.retryTimer = null;
    state.reconnecting = false;
    send({ type: "leave" });
    if (state.pc) state.pc.close();
    if (state.localStream) for (const t of state.localStream.getTracks()) t.stop();
    for (const src of state.local.values()) if (src.track) src.track.stop();
    if (state.ws) state.ws.close(1000, "leave");
    state.joined = false;
    log("left");
    updateStatus();
    showSection("left");
  }

  function setMaxHeight(sourceId, height) {
    const h = Math.max(0, Math.floor(Number(height)) || 0);
    if (sourceId === null || sourceId === undefined) state.constraints.default_max_height = h;
    else state.constraints.max_height[sourceId] = h;
    return sendConstraints();
  }

  function updateButtons() {
    const mic = state.local.get("mic");
    const camera = state.local.get("camera");
    const screen = state.local.get("screen");
    $("btn-mic").disabled = !mic;
    $("btn-mic").textContent = mic && mic.muted ? "Unmute mic" : "Mute mic";
    $("btn-mic").classList.toggle("off", Boolean(mic && mic.muted));
    $("btn-camera").disabled = !camera;
    $("btn-camera").textContent = camera && camera.muted ? "Camera on" : "Camera off";
    $("btn-camera").classList.toggle("off", Boolean(camera && camera.muted));
    $("btn-screen").disabled = !state.pc || !navigator.mediaDevices.getDisplayMedia;
    $("btn-screen").textContent = screen && screen.active ? "Stop sharing" : "Share screen";
    $("btn-layout").textContent = state.layout === "speaker" ? "Grid view" : "Speaker view";
    $("btn-layout").setAttribute("aria-pressed", String(state.layout === "speaker"));
  }

  function wireControls() {
    const guarded = (fn) => () => Promise.resolve().then(fn).catch((err) => showError("control", String(err)));
    $("btn-mic").onclick = guarded(toggleMic);
    $("btn-camera").onclick = guarded(toggleCamera);
    $("btn-screen").onclick = guarded(toggleScreen);
    $("btn-leave").onclick = guarded(leave);
    window.TernChat.attach(
      () => new Map([...state.remote].map(([id, p]) => [id, p.name])),
      () => state.participantId,
    );
    $("btn-layout").onclick = guarded(() => setLayout(state.layout === "speaker" ? "grid" : "speaker"));
    $("btn-audio").onclick = () => {
      for (const entry of state.remote.values()) entry.tile.audio.play().catch(() => {});
      $("mix-audio").play().catch(() => {});
      $("btn-audio").hidden = true;
    };
    const select = $("sel-quality");
    if (![...select.options].some((o) => o.value === String(config.maxHeight))) {
      select.add(new Option(`${config.maxHeight}p`, String(config.maxHeight)));
    }
    select.value = String(config.maxHeight);
    select.onchange = () => setMaxHeight(null, Number(select.value));
    updateButtons();
  }

  // ---------------------------------------------------------------------------
  // Statistics (also the test hooks' view of what this participant receives)
  // ---------------------------------------------------------------------------

  function inboundOf(report) {
    let inbound = null;
    report.forEach((r) => {
      if (r.type === "inbound-rtp") inbound = r;
    });
    return inbound;
  }

  // Raw inbound statistics per receive slot, read from that slot's own
  // receiver so the mid -> source mapping is exact. `onlyMids` (optional)
  // limits the (not free) getStats() calls to some slots.
  async function slotStats(onlyMids) {
    const out = [];
    for (const [mid, slot] of state.slots) {
      if (Array.isArray(onlyMids) && !onlyMids.includes(mid)) continue;
      const r = inboundOf(await slot.transceiver.receiver.getStats()) || {};
      out.push({
        mid,
        kind: slot.transceiver.receiver.track.kind,
        source: slot.source,
        packetsReceived: r.packetsReceived || 0,
        bytesReceived: r.bytesReceived || 0,
        framesDecoded: r.framesDecoded || 0,
        frameWidth: r.frameWidth || 0,
        frameHeight: r.frameHeight || 0,
        freezeCount: r.freezeCount || 0,
        totalFreezesDuration: r.totalFreezesDuration || 0,
        audioLevel: r.audioLevel || 0,
        totalAudioEnergy: r.totalAudioEnergy || 0,
      });
    }
    return out;
  }

  // Per remote participant: { video, screen?, audio } from the slots that carry
  // their sources now.
  async function stats() {
    const out = {};
    const assigned = [...state.slots].filter(([, slot]) => slot.source).map(([mid]) => mid);
    for (const s of await slotStats(assigned)) {
      if (!s.source) continue;
      const owner = sourceOwner(s.source);
      if (owner === state.participantId) continue;
      const entry = (out[owner] ??= {});
      if (s.kind === "audio") {
        entry.audio = {
          audioLevel: s.audioLevel, totalAudioEnergy: s.totalAudioEnergy, packetsReceived: s.packetsReceived, mid: s.mid, source: s.source,
        };
      } else {
        entry[sourceName(s.source) === "screen" ? "screen" : "video"] = {
          framesDecoded: s.framesDecoded,
          frameHeight: s.frameHeight,
          frameWidth: s.frameWidth,
          freezeCount: s.freezeCount,
          totalFreezesDuration: s.totalFreezesDuration,
          mid: s.mid,
          source: s.source,
        };
      }
    }
    return out;
  }

  // What we send, per simulcast layer (useful to see which layers the browser
  // really encodes).
  async function publishStats() {
    const out = [];
    for (const src of state.local.values()) {
      if (!src.transceiver) continue;
      const report = await src.transceiver.sender.getStats();
      const encodings = src.transceiver.sender.getParameters().encodings || [];
      report.forEach((r) => {
        if (r.type !== "outbound-rtp") return;
        const enc = encodings.find((e) => (e.rid || null) === (r.rid || null)) || (encodings.length === 1 ? encodings[0] : null);
        out.push({
          source: src.name,
          rid: r.rid || null,
          active: r.active,
          // What we asked the encoder for (setParameters), null: no limit.
          maxBitrate: enc && Number.isFinite(enc.maxBitrate) ? enc.maxBitrate : null,
          bytesSent: r.bytesSent || 0,
          retransmittedBytesSent: r.retransmittedBytesSent || 0,
          framesEncoded: r.framesEncoded || 0,
          keyFramesEncoded: r.keyFramesEncoded || 0,
          targetBitrate: r.targetBitrate || 0,
          frameHeight: r.frameHeight || 0,
          scalabilityMode: r.scalabilityMode || null,
          qualityLimitationReason: r.qualityLimitationReason || null,
        });
      });
    }
    return out;
  }

  function snapshot() {
    return {
      joined: state.joined,
      participantId: state.participantId,
      room: config.room,
      name: config.name,
      ws: state.wsState,
      mode: state.mode,
      bridge: state.bridge,
      reconnecting: state.reconnecting,
      reconnects: state.reconnects,
      reconnectAttempts: state.reconnectAttempts,
      pc: state.pc ? state.pc.connectionState : "none",
      remote: [...state.remote.values()].map((p) => ({ id: p.id, name: p.name, sources: p.sources.map((s) => ({ ...s })) })),
      slots: Object.fromEntries([...state.slots].map(([mid, slot]) => [mid, slot.source])),
      local: [...state.local.values()].map((s) => ({
        name: s.name,
        kind: s.kind,
        mid: s.transceiver ? s.transceiver.mid : null,
        muted: s.muted,
        active: s.active,
        trackId: s.track ? s.track.id : null,
      })),
      constraints: JSON.parse(JSON.stringify(state.constraints)),
      sendingUpTo: Object.fromEntries(state.sendingUpTo),
      sendLimits: state.sendLimits ? { ...state.sendLimits } : null,
      // Receive slots the bridge paused for us: mid -> reason ("bandwidth").
      suspended: Object.fromEntries([...state.slots].filter(([, slot]) => slot.suspended).map(([mid, slot]) => [mid, slot.suspended])),
      // A mixed room's rate (null: forwarding), and whether its mix plays.
      mixRate: state.mixRate,
      mixAttached: Boolean($("mix-audio").srcObject),
      compositeAttached: Boolean($("mix-video").srcObject),
      composite: state.composite ? JSON.parse(JSON.stringify(state.composite)) : null,
      dominantSpeaker: state.dominant,
      recentSpeakers: state.recent.slice(),
      speaking: [...state.speaking].map(([participant, level]) => ({ participant, level })),
      layout: state.layout,
      pinned: state.pinned,
      // Who has the large tile in the speaker view (null in the grid).
      featured: state.layout === "speaker" ? featured() : null,
      errors: state.errors.slice(),
      chat: window.TernChat.snapshot(),
      recording: window.TernRecording.snapshot(),
    };
  }

  // Test hooks (used by tests/browser_e2e.rs through WebDriver) and a handy
  // console API.
  window.tern = {
    state: snapshot,
    stats,
    slotStats,
    publishStats,
    setMaxHeight,
    leave,
    // Layout and pinning, as the buttons do them.
    setLayout,
    pin,
    unpin: () => pin(null),
    // Closes the signalling socket as a network failure would (tests): the
    // client must join again on its own.
    dropSignalling: () => {
      if (state.ws) state.ws.close(4000, "dropped by test hook");
    },
    // The RTCPeerConnection itself, for poking around from the console.
    pc: () => state.pc,
    // The last SDP answer the bridge sent, verbatim.
    lastAnswer: () => state.lastAnswer || null,
    toggleMic,
    toggleCamera,
    toggleScreen,
    // The room data channel: a chat message, or raw text (tests).
    sendChat: (text) => window.TernChat.sendChat(text),
    sendData: (text) => window.TernChat.sendData(text),
    // The room's recording (a moderator's token): start or stop; a promise.
    record: (on) => window.TernRecording.set(on),
    log: () => state.log.slice(),
  };

  // ---------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------

  function startLobby() {
    showSection("lobby");
    $("status").hidden = true;
    const form = $("lobby-form");
    form.elements.name.value = params.get("name") || "";
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const room = form.elements.room.value.trim();
      const name = form.elements.name.value.trim();
      if (!room) return;
      const query = name ? `?name=${encodeURIComponent(name)}` : "";
      location.href = `/room/${encodeURIComponent(room)}${query}`;
    };
  }

  async function startCall() {
    showSection("call");
    document.title = `${config.room} · Tern`;
    $("room-label").textContent = `room ${config.room} · ${config.name}`;
    $("rejoin").href = location.href;
    wireControls();
    updateStatus();
    selfPreview(null);
    // Ask for camera and microphone while the socket connects; the first
    // offer waits for both.
    state.media = getLocalMedia();
    state.media.then((stream) => {
      selfPreview(stream.getVideoTracks().length ? stream : null);
      if (!state.localStream) adoptLocalMedia(stream);
      preparePeer();
    });
    await joinAttempt();
  }

  window.addEventListener("pagehide", () => {
    if (state.joined) leave();
  });

  if (config.room === null) startLobby();
  else startCall();
})();
