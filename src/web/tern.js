// Tern browser client. Plain JavaScript, no build step.
//
// Protocol: docs/signalling.md. In short: one WebSocket to /signal, `join`
// first, then this client is always the offerer. The first offer carries our
// sendonly transceivers (mic, camera with simulcast) and a fixed pool of
// recvonly "receive slots"; the bridge tells us in `slots` which remote source
// each slot carries, so remote participants come and go without renegotiation.
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
    simulcast: params.get("simulcast") !== "0",
    slots: intParam("slots", 9, 0, 64),
    maxHeight: intParam("maxh", 360, 0, 4320),
  };

  // Simulcast layers for the camera, lowest first. The heights we announce in
  // `sources` are derived from the real capture height (see cameraLayers()).
  const SIMULCAST_ENCODINGS = [
    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: "f", maxBitrate: 1500000 },
  ];

  const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 } };

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------

  const state = {
    ws: null,
    wsState: "idle", // idle | connecting | open | closed
    pc: null,
    joined: false,
    left: false,
    participantId: null,
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
    // Offer/answer bookkeeping: the client is always the offerer, one offer in flight at a time.
    negotiation: { inFlight: false, again: false, answerWaiter: null },
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
    $("status").textContent = `signalling: ${state.wsState} · media: ${pcState}`;
    $("status").dataset.ok = String(state.wsState === "open" && pcState === "connected");
  }

  function newTile(label) {
    const fragment = $("tile-template").content.cloneNode(true);
    const tile = {
      root: fragment.querySelector(".tile"),
      camera: fragment.querySelector("video.camera"),
      screen: fragment.querySelector("video.screen"),
      audio: fragment.querySelector("audio"),
      name: fragment.querySelector(".name"),
      badges: {
        mic: fragment.querySelector(".mic-off"),
        camera: fragment.querySelector(".camera-off"),
        screen: fragment.querySelector(".sharing"),
      },
      // Which slot mid currently feeds each element, so a late detach of an
      // old slot does not blank an element that a newer slot already took.
      feeding: { camera: null, screen: null, audio: null },
    };
    tile.name.textContent = label;
    $("grid").appendChild(fragment);
    return tile;
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
    log("participant", id, "left");
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
  }

  // ---------------------------------------------------------------------------
  // Receive slots
  // ---------------------------------------------------------------------------

  function registerSlot(transceiver) {
    const mid = transceiver.mid;
    if (mid === null || state.slots.has(mid)) return;
    state.slots.set(mid, { transceiver, track: transceiver.receiver.track, source: null });
  }

  function applySlots(list) {
    state.lastSlots = list;
    const wanted = new Map();
    for (const s of list) if (s && typeof s.mid === "string") wanted.set(s.mid, s.source ?? null);
    for (const mid of state.slots.keys()) {
      const next = wanted.has(mid) ? wanted.get(mid) : null;
      assignSlot(mid, next);
    }
    for (const mid of wanted.keys()) {
      if (state.slots.size > 0 && !state.slots.has(mid)) log("slots: unknown mid", mid);
    }
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
      const mid = src.transceiver.mid;
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
  }

  // ---------------------------------------------------------------------------
  // Peer connection and negotiation
  // ---------------------------------------------------------------------------

  function createPeerConnection(stream) {
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: [] });
    state.pc = pc;
    pc.onconnectionstatechange = () => {
      log("pc", pc.connectionState);
      updateStatus();
      if (pc.connectionState === "failed" && !state.left) showError("media", "media connection failed");
    };
    pc.ontrack = (ev) => {
      const mid = ev.transceiver.mid;
      const slot = state.slots.get(mid);
      if (!slot) return;
      slot.track = ev.track;
      attachSlot(mid);
    };

    const mic = stream.getAudioTracks()[0];
    if (mic) {
      const transceiver = pc.addTransceiver(mic, { direction: "sendonly", streams: [stream] });
      state.local.set("mic", { name: "mic", kind: "audio", transceiver, track: mic, muted: false, active: true });
    }
    const camera = stream.getVideoTracks()[0];
    if (camera) {
      state.captureHeight = camera.getSettings().height || 0;
      const init = { direction: "sendonly", streams: [stream] };
      if (config.simulcast) init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e }));
      const transceiver = pc.addTransceiver(camera, init);
      state.local.set("camera", {
        name: "camera", kind: "video", transceiver, track: camera, muted: false, active: true, simulcast: config.simulcast,
      });
    }
    // The receive-slot pool: it never changes after the first offer.
    for (const kind of ["audio", "video"]) {
      for (let i = 0; i < config.slots; i++) pc.addTransceiver(kind, { direction: "recvonly" });
    }
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

  // Asks for a (re)negotiation. Offers never overlap: a request made while
  // one is in flight sends one more offer once the answer is in.
  function negotiate() {
    if (state.negotiation.inFlight) {
      state.negotiation.again = true;
      return;
    }
    state.negotiation.inFlight = true;
    (async () => {
      try {
        do {
          state.negotiation.again = false;
          await offerOnce();
        } while (state.negotiation.again && !state.left);
      } catch (err) {
        if (!state.left) showError("negotiation", String(err));
        // Back to a stable state so a later offer can start cleanly.
        if (state.pc && state.pc.signalingState === "have-local-offer") {
          await state.pc.setLocalDescription({ type: "rollback" }).catch(() => {});
        }
      } finally {
        state.negotiation.inFlight = false;
      }
    })();
  }

  async function offerOnce() {
    const pc = state.pc;
    await pc.setLocalDescription(await pc.createOffer());
    for (const t of pc.getTransceivers()) {
      if (t.direction === "recvonly") registerSlot(t);
    }
    applySlots(state.lastSlots);
    await waitForIceGathering(pc, 2000);
    const answer = new Promise((resolve, reject) => {
      state.negotiation.answerWaiter = { resolve, reject };
    });
    const sources = describeSources();
    send({ type: "offer", sdp: pc.localDescription.sdp, sources });
    log("offer sent", sources);
    const sdp = await answer;
    await pc.setRemoteDescription({ type: "answer", sdp });
    log("answer applied");
    // Slots may have been announced before the answer made their tracks live.
    for (const mid of state.slots.keys()) attachSlot(mid);
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

  async function fetchToken() {
    if (config.token) return config.token;
    const url = `/dev/token?room=${encodeURIComponent(config.room)}&name=${encodeURIComponent(config.name)}`;
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) throw new Error(`GET /dev/token answered ${res.status} (is the bridge running as "tern dev"?)`);
    const body = await res.json();
    if (typeof body.token !== "string") throw new Error("GET /dev/token: no token in the answer");
    return body.token;
  }

  function connect(token, mediaPromise) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/signal`);
    state.ws = ws;
    state.wsState = "connecting";
    updateStatus();

    ws.onopen = () => {
      state.wsState = "open";
      updateStatus();
      send({ type: "join", version: 1, token });
    };
    ws.onclose = (ev) => {
      state.wsState = "closed";
      updateStatus();
      settleAnswer(null, new Error("signalling closed"));
      if (!state.left) showError("closed", `signalling connection closed (${ev.code}${ev.reason ? " " + ev.reason : ""}); reload to rejoin`);
    };
    ws.onerror = () => log("websocket error");
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        log("non-JSON message ignored");
        return;
      }
      handleMessage(msg, mediaPromise).catch((err) => showError("client", String(err)));
    };
  }

  async function handleMessage(msg, mediaPromise) {
    switch (msg.type) {
      case "joined": {
        state.joined = true;
        state.participantId = msg.participant && msg.participant.id;
        log("joined", msg.room, "as", state.participantId);
        for (const p of msg.participants || []) upsertParticipant(p);
        sendConstraints();
        const stream = await mediaPromise;
        if (state.left) return;
        state.localStream = stream;
        createPeerConnection(stream);
        updateButtons();
        negotiate();
        break;
      }
      case "answer":
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
      case "error":
        showError(msg.code, msg.message || "");
        if (msg.code === "bad_offer") settleAnswer(null, new Error(`offer refused: ${msg.message}`));
        break;
      default:
        // Unknown message types are ignored (protocol rule).
        break;
    }
  }

  function sendConstraints() {
    const c = state.constraints;
    return send({ type: "constraints", default_max_height: c.default_max_height, max_height: { ...c.max_height } });
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
      await camera.transceiver.sender.replaceTrack(null);
      camera.track.stop();
      camera.track = null;
      selfPreview(null);
      setSourceMuted("camera", true);
      return;
    }
    const stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA_CONSTRAINTS });
    const track = stream.getVideoTracks()[0];
    await camera.transceiver.sender.replaceTrack(track);
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
    updateButtons();
    negotiate();
  }

  function stopScreen() {
    const screen = state.local.get("screen");
    if (!screen || !screen.active) return;
    screen.active = false;
    if (screen.track) screen.track.stop();
    screen.track = null;
    screen.transceiver.sender.replaceTrack(null).catch((err) => log("replaceTrack(null):", String(err)));
    screen.transceiver.direction = "inactive";
    updateButtons();
    negotiate();
  }

  function leave() {
    if (state.left) return;
    state.left = true;
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
  }

  function wireControls() {
    const guarded = (fn) => () => Promise.resolve().then(fn).catch((err) => showError("control", String(err)));
    $("btn-mic").onclick = guarded(toggleMic);
    $("btn-camera").onclick = guarded(toggleCamera);
    $("btn-screen").onclick = guarded(toggleScreen);
    $("btn-leave").onclick = guarded(leave);
    $("btn-audio").onclick = () => {
      for (const entry of state.remote.values()) entry.tile.audio.play().catch(() => {});
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
      const report = await src.transceiver.sender.getStats();
      report.forEach((r) => {
        if (r.type !== "outbound-rtp") return;
        out.push({
          source: src.name,
          rid: r.rid || null,
          active: r.active,
          bytesSent: r.bytesSent || 0,
          framesEncoded: r.framesEncoded || 0,
          frameHeight: r.frameHeight || 0,
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
      pc: state.pc ? state.pc.connectionState : "none",
      remote: [...state.remote.values()].map((p) => ({ id: p.id, name: p.name, sources: p.sources.map((s) => ({ ...s })) })),
      slots: Object.fromEntries([...state.slots].map(([mid, slot]) => [mid, slot.source])),
      local: [...state.local.values()].map((s) => ({ name: s.name, kind: s.kind, mid: s.transceiver.mid, muted: s.muted, active: s.active })),
      constraints: JSON.parse(JSON.stringify(state.constraints)),
      errors: state.errors.slice(),
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
    // The RTCPeerConnection itself, for poking around from the console.
    pc: () => state.pc,
    toggleMic,
    toggleCamera,
    toggleScreen,
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
    const media = getLocalMedia();
    media.then((stream) => selfPreview(stream.getVideoTracks().length ? stream : null));
    let token;
    try {
      token = await fetchToken();
    } catch (err) {
      showError("token", String(err.message || err));
      return;
    }
    connect(token, media);
  }

  window.addEventListener("pagehide", () => {
    if (state.joined) leave();
  });

  if (config.room === null) startLobby();
  else startCall();
})();
