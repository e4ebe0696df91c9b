#!/usr/bin/env python3
"""Audio-only participants in one mixed room, on Tern (a mixed conference)
or on Janus's AudioBridge, for tests/janus/mix_compare.sh.

Every participant publishes a tone at its own frequency (Opus, aiortc) and
receives the one mix the server sends it. Participant 0 is the talker: its
tone is on for 300 ms of every second, the others' tones never stop, so
every input is decoded by the server all the time (the worst case for a
mixer). Each other participant decodes its mix and finds the talker's
onsets in it (a DFT at the talker's frequency, 20 ms frames): the time from
the talker's first "on" frame leaving its track to that frame arriving
decoded in a receiver is the capture-to-decode latency (both in this one
process, one clock).

Prints one JSON line: participants connected, latencies (ms), frames
received, and the server's CPU seconds over the measured window
(utime + stime of --server-pid from /proc).
"""

import argparse
import asyncio
import fractions
import json
import math
import os
import sys
import time
import urllib.request

import aioice.ice
import av
import numpy as np
import websockets
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

RATE = 48000
FRAME = 960
TALK_ON_S = 0.3


def log(*args):
    print("mix_load:", *args, file=sys.stderr, flush=True)


def freq(i):
    return 400.0 + 150.0 * i


class Tone(MediaStreamTrack):
    """20 ms frames of a sine (-26 dBFS), paced in real time; the talker's
    is on for TALK_ON_S of every second and records when each burst starts."""

    kind = "audio"

    def __init__(self, hz, talker):
        super().__init__()
        # One second holds a whole number of cycles for integer hz.
        t = np.arange(RATE) / RATE
        self.second = (1600 * np.sin(2 * np.pi * hz * t)).astype("<i2")
        self.talker = talker
        self.pts = 0
        self.start = None
        self.bursts = []

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.pts / RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        at = self.pts % RATE
        pcm = self.second[at : at + FRAME]
        if self.talker:
            if at == 0:
                self.bursts.append(time.time())
            if at >= TALK_ON_S * RATE:
                pcm = np.zeros(FRAME, dtype="<i2")
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


class Listener:
    """Finds the talker's tone switching on in a decoded mix."""

    def __init__(self, hz):
        self.hz = hz
        self.onsets = []
        self.frames = 0
        self.off_run = 0
        self.peak = 0.0

    def feed(self, frame, now):
        self.frames += 1
        x = frame.to_ndarray().astype(np.float64).reshape(-1)
        if frame.layout.name != "mono":
            x = x[:: len(frame.layout.channels)]
        rate = frame.sample_rate
        n = np.arange(len(x))
        amp = abs(np.dot(x, np.exp(-2j * np.pi * self.hz * n / rate))) / max(len(x), 1)
        self.peak = max(self.peak, amp)
        on = self.peak > 0 and amp > 0.3 * self.peak
        if on and self.off_run >= 5:
            self.onsets.append(now)
        self.off_run = 0 if on else self.off_run + 1


async def consume(track, listener):
    while True:
        try:
            frame = await track.recv()
        except Exception:
            return
        listener.feed(frame, time.time())


def cpu_secs(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def tern_session(pc, sender, url, token):
    ws = await websockets.connect(url, max_size=None, ping_interval=None)
    await ws.send(json.dumps({"type": "join", "version": 1, "token": token}))
    while True:
        m = json.loads(await ws.recv())
        if m["type"] == "joined":
            break
        if m["type"] == "error":
            raise RuntimeError(f"join refused: {m}")
    await pc.setLocalDescription(await pc.createOffer())
    sources = [{"mid": sender.mid, "name": "mic", "kind": "audio"}]
    await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp, "sources": sources}))
    while True:
        m = json.loads(await ws.recv())
        if m["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
            break
        if m["type"] == "error":
            raise RuntimeError(f"offer refused: {m}")

    async def drain():
        async for _ in ws:
            pass

    return asyncio.ensure_future(drain())


class Janus:
    """Just enough of Janus's HTTP API for an AudioBridge participant."""

    def __init__(self, base):
        self.base = base
        self.n = 0

    def post(self, path, body):
        self.n += 1
        body = dict(body, transaction=f"t{self.n}")
        req = urllib.request.Request(
            self.base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=40) as r:
            return json.load(r)


async def janus_session(pc, janus, room, name, create):
    loop = asyncio.get_running_loop()
    s = (await loop.run_in_executor(None, janus.post, "", {"janus": "create"}))["data"]["id"]
    h = (
        await loop.run_in_executor(
            None, janus.post, f"/{s}", {"janus": "attach", "plugin": "janus.plugin.audiobridge"}
        )
    )["data"]["id"]
    if create:
        r = await loop.run_in_executor(
            None,
            janus.post,
            f"/{s}/{h}",
            {
                "janus": "message",
                "body": {"request": "create", "room": room, "sampling_rate": 16000, "permanent": False},
            },
        )
        data = r.get("plugindata", {}).get("data", {})
        if data.get("audiobridge") != "created" and data.get("error_code") != 486:
            raise RuntimeError(f"create room: {r}")
    await pc.setLocalDescription(await pc.createOffer())
    jsep = {"type": "offer", "sdp": pc.localDescription.sdp}
    await loop.run_in_executor(
        None,
        janus.post,
        f"/{s}/{h}",
        {"janus": "message", "body": {"request": "join", "room": room, "display": name}, "jsep": jsep},
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        events = await loop.run_in_executor(None, janus.get, f"/{s}?maxev=10")
        for e in events if isinstance(events, list) else [events]:
            if "jsep" in e:
                await pc.setRemoteDescription(RTCSessionDescription(e["jsep"]["sdp"], "answer"))

                async def keepalive():
                    while True:
                        await asyncio.sleep(20)
                        await loop.run_in_executor(None, janus.post, f"/{s}", {"janus": "keepalive"})

                return asyncio.ensure_future(keepalive())
            err = e.get("plugindata", {}).get("data", {}).get("error")
            if err:
                raise RuntimeError(f"join: {err}")
    raise RuntimeError("no answer from Janus")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=["tern", "janus"], required=True)
    ap.add_argument("--url", required=True, help="tern: ws://HOST:PORT/signal; janus: http://HOST:PORT/janus")
    ap.add_argument("--tokens", help="tern: a file with one token per participant")
    ap.add_argument("--bind", required=True, help="the only host address to gather")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("-d", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--server-pid", type=int)
    args = ap.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.bind]

    tokens = open(args.tokens).read().split() if args.tokens else []
    janus = Janus(args.url) if args.target == "janus" else None
    pcs, tones, listeners, tasks = [], [], [], []
    for i in range(args.n):
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        tone = Tone(freq(i), talker=(i == 0))
        if args.target == "tern":
            # The mic, then one receive slot for the mix.
            sender = pc.addTransceiver(tone, direction="sendonly")
            pc.addTransceiver("audio", direction="recvonly")
        else:
            sender = pc.addTransceiver(tone, direction="sendrecv")
        listener = Listener(freq(0))

        @pc.on("track")
        def on_track(track, listener=listener):
            asyncio.ensure_future(consume(track, listener))

        if args.target == "tern":
            tasks.append(await tern_session(pc, sender, args.url, tokens[i]))
        else:
            tasks.append(await janus_session(pc, janus, 4242, f"p{i}", create=(i == 0)))
        pcs.append(pc)
        tones.append(tone)
        listeners.append(listener)
    deadline = time.time() + 20
    while any(pc.connectionState != "connected" for pc in pcs) and time.time() < deadline:
        await asyncio.sleep(0.1)
    connected = sum(pc.connectionState == "connected" for pc in pcs)
    log(f"{connected}/{args.n} connected; warming up {args.warmup} s")
    await asyncio.sleep(args.warmup)
    t0, c0 = time.time(), cpu_secs(args.server_pid)
    await asyncio.sleep(args.d)
    t1, c1 = time.time(), cpu_secs(args.server_pid)

    bursts = [b for b in tones[0].bursts if t0 <= b <= t1]
    latencies = []
    for listener in listeners[1:]:
        for b in bursts:
            later = [o for o in listener.onsets if b <= o <= b + 0.9]
            if later:
                latencies.append((later[0] - b) * 1000.0)
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None
    out = {
        "target": args.target,
        "participants": args.n,
        "connected": connected,
        "window_secs": t1 - t0,
        "server_cpu_secs": (c1 - c0) if c0 is not None else None,
        "bursts": len(bursts),
        "onsets_found": len(latencies),
        "onsets_expected": len(bursts) * (args.n - 1),
        "latency_ms": {"p50": q(0.5), "p99": q(0.99), "min": latencies[0] if latencies else None},
        "frames_received": sum(l.frames for l in listeners),
    }
    print(json.dumps(out), flush=True)
    for t in tasks:
        t.cancel()
    for pc in pcs:
        await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
