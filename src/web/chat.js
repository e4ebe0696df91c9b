// Tern browser client: the room data channel and the chat built on it.
//
// Every session opens one data channel labelled "tern" on its
// RTCPeerConnection (before the first offer, so it is negotiated with it).
// The bridge passes each text message to everyone else in the room, across
// bridges too, as {"from": "<participant id>", "data": "<text>"}; chat
// messages are the text {"type": "chat", "text": "..."}. The bridge refuses
// messages over 16 KiB or over 10 a second (burst 20) with an `error` on
// the signalling socket (data_too_large, data_rate_limited), which the main
// client shows like any other. See docs/signalling.md, "Room data channel".
"use strict";

window.TernChat = (() => {
  const LABEL = "tern";
  const MAX_TEXT = 2000;
  const KEEP = 200;

  const state = {
    channel: null,
    messages: [], // {from, text, at, self}
    names: () => new Map(), // participant id -> display name, set by attach()
    selfId: () => null,
  };

  function render(m) {
    const list = document.getElementById("chat-log");
    if (!list) return;
    const li = document.createElement("li");
    if (m.self) li.classList.add("self");
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = m.self ? "you" : state.names().get(m.from) || m.from;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(who, text);
    list.appendChild(li);
    while (list.children.length > KEEP) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function remember(m) {
    state.messages.push(m);
    if (state.messages.length > KEEP) state.messages.shift();
    render(m);
  }

  function onMessage(ev) {
    if (typeof ev.data !== "string") return;
    let env;
    let body;
    try {
      env = JSON.parse(ev.data);
      body = JSON.parse(env.data);
    } catch (_) {
      return; // not ours: application messages may be anything
    }
    if (body && body.type === "chat" && typeof body.text === "string") {
      remember({ from: env.from, text: body.text.slice(0, MAX_TEXT), at: Date.now(), self: false });
    }
  }

  // A new session's peer connection: open the room channel on it.
  function open(pc) {
    const ch = pc.createDataChannel(LABEL);
    ch.onmessage = onMessage;
    state.channel = ch;
    return ch;
  }

  // Send raw text on the room channel (tests, applications); false when the
  // channel is not open.
  function sendData(text) {
    const ch = state.channel;
    if (!ch || ch.readyState !== "open") return false;
    ch.send(text);
    return true;
  }

  function sendChat(text) {
    const t = String(text).trim().slice(0, MAX_TEXT);
    if (!t) return false;
    if (!sendData(JSON.stringify({ type: "chat", text: t }))) return false;
    remember({ from: state.selfId(), text: t, at: Date.now(), self: true });
    return true;
  }

  // Wire the chat form; `names` and `selfId` look up the main client's state.
  function attach(names, selfId) {
    state.names = names;
    state.selfId = selfId;
    const form = document.getElementById("chat-form");
    if (!form) return;
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const input = form.elements.text;
      if (sendChat(input.value)) input.value = "";
    };
  }

  function snapshot() {
    return {
      open: !!state.channel && state.channel.readyState === "open",
      messages: state.messages.map((m) => ({ from: m.from, text: m.text, self: m.self })),
    };
  }

  return { open, attach, sendChat, sendData, snapshot };
})();
