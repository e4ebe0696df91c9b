// Tern browser client: the room's recording (focus mode only).
//
// Everyone in a room sees whether it is being recorded (a red "Recording"
// badge, polled from the focus's `GET /recording` every 3 s); a moderator
// (a token with the moderator claim: `/join?role=moderator`, or gRPC
// ROLE_MODERATOR) also gets a button that starts and stops it
// (`POST /recording?action=start|stop`). The token goes as a bearer
// header; the focus checks the claim, not this page. See
// docs/focus-api.md, "Recording".
"use strict";

window.TernRecording = (() => {
  const POLL_MS = 3000;
  const state = {
    token: null,
    moderator: false,
    active: null, // the running recording's JSON, or null
    last: null, // the newest recording's JSON
    error: null,
    timer: null,
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

  async function refresh() {
    if (!state.token) return;
    try {
      const body = await call("GET", "");
      const list = (body && Array.isArray(body.recordings)) ? body.recordings : [];
      state.last = list[0] || null;
      state.active = list.find((r) => r.state === "active") || null;
      if (state.last && state.last.state === "failed") state.error = state.last.error;
    } catch (e) {
      state.error = String(e.message || e);
    }
    render();
  }

  // Start (or stop) the room's recording; resolves to the recording's JSON.
  async function set(on) {
    try {
      const r = await call("POST", `?action=${on ? "start" : "stop"}`);
      state.error = null;
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

  // A new token from the focus (each join): who we are and may do.
  function attach(token) {
    state.token = token;
    state.moderator = claimsOf(token).moderator === true;
    const btn = document.getElementById("btn-record");
    if (btn) {
      btn.onclick = () => {
        set(!state.active).catch(() => {});
      };
    }
    if (!state.timer) state.timer = setInterval(refresh, POLL_MS);
    refresh();
  }

  function snapshot() {
    return {
      moderator: state.moderator,
      active: state.active,
      last: state.last,
      error: state.error,
    };
  }

  return { attach, set, refresh, snapshot };
})();
