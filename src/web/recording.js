// Tern browser client: the room's recording (focus mode only).
//
// Everyone in a room sees whether it is being recorded (a red "Recording"
// badge): the bridge says so over signalling (`recording`, after `joined`
// and whenever it changes; docs/signalling.md), so nothing is polled. A
// moderator (a token with the moderator claim: `/join?role=moderator`, or
// gRPC ROLE_MODERATOR) also gets a button that starts and stops it
// (`POST /recording?action=start|stop` on the focus). The token goes as a
// bearer header; the focus checks the claim, not this page. See
// docs/focus-api.md, "Recording".
"use strict";

window.TernRecording = (() => {
  const state = {
    token: null,
    moderator: false,
    active: null, // the running recording ({recording_id, ...}), or null
    last: null, // the newest recording this page started, stopped or listed
    list: [], // the room's recordings, newest first, as last listed
    error: null,
  };

  // The token's claims (its middle part); only to decide what to show.
  function claimsOf(token) {
    try {
      const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(b64));
    } catch (_) {
      return {};
    }
  }

  async function call(method, query) {
    const res = await fetch(`/recording${query}`, {
      method,
      cache: "no-store",
      headers: { Authorization: `Bearer ${state.token}` },
    });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const why = body && typeof body.error === "string" ? body.error : `HTTP ${res.status}`;
      throw new Error(why);
    }
    return body;
  }

  function render() {
    const badge = document.getElementById("recording-badge");
    if (badge) badge.hidden = !state.active;
    const btn = document.getElementById("btn-record");
    if (!btn) return;
    btn.hidden = !state.moderator;
    btn.textContent = state.active ? "Stop recording" : "Record";
    btn.setAttribute("aria-pressed", String(!!state.active));
    btn.title = state.error ? `Last error: ${state.error}` : "";
  }

  // The room's recordings from the focus, once (not polled): the newest
  // one's outcome (a failure's reason for the moderator's button).
  async function refresh() {
    if (!state.token) return;
    try {
      const body = await call("GET", "");
      const list = (body && Array.isArray(body.recordings)) ? body.recordings : [];
      state.list = list;
      state.last = list[0] || null;
      if (state.last && state.last.state === "failed") state.error = state.last.error;
    } catch (e) {
      state.error = String(e.message || e);
    }
    render();
  }

  // The bridge's `recording` message: the room's recording started (its
  // id) or ended. A moderator then asks the focus how it ended.
  function notice(msg) {
    if (msg.active && typeof msg.recording_id === "string") {
      if (!state.active || state.active.recording_id !== msg.recording_id) {
        state.active = { recording_id: msg.recording_id, state: "active" };
      }
    } else if (!state.active || state.active.recording_id === msg.recording_id) {
      state.active = null;
      if (state.moderator) refresh();
    }
    render();
  }

  // Start (or stop) the room's recording; resolves to the recording's JSON.
  async function set(on) {
    try {
      const r = await call("POST", `?action=${on ? "start" : "stop"}`);
      state.error = null;
      // The bridge says so too, a moment later; the button follows now.
      state.active = on ? r : null;
      state.last = r;
      render();
      return r;
    } catch (e) {
      state.error = String(e.message || e);
      render();
      throw e;
    }
  }

  // A new token from the focus (each join): who we are and may do. What
  // is recorded comes again after the next `joined`.
  function attach(token) {
    state.token = token;
    state.active = null;
    state.moderator = claimsOf(token).moderator === true;
    const btn = document.getElementById("btn-record");
    if (btn) {
      btn.onclick = () => {
        set(!state.active).catch(() => {});
      };
    }
    render();
  }

  function snapshot() {
    return {
      moderator: state.moderator,
      active: state.active,
      last: state.last,
      recordings: state.list,
      error: state.error,
    };
  }

  return { attach, set, notice, refresh, snapshot };
})();
