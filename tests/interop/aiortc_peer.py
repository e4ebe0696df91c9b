#!/usr/bin/env python3
"""A full participant on an independent WebRTC stack (aiortc), written from
docs/signalling.md alone: gets a token and signalling URL from the focus's
`/join` (or a standalone bridge's `/dev/token`), publishes a microphone
(a 440 Hz tone, Opus) and a camera (320x240 VP8, no simulcast; with
`--codec h264`, H.264 only, and the conference's codec asked of `/join`)
declared as sources `mic` and `camera`, and offers `--slots` recvonly audio
and video transceivers to receive the others.

Prints `joined <participant id>` and `connected <unix time>`, runs until a
line (or EOF) on stdin, then prints `result <json>`: per receive mid the
source it carried last, decoded frames and the last decoded video size, and
the video codec the bridge's answer chose for each video m-section.
Driven by tests/interop_browser.rs; logs go to stderr.
"""

import argparse
import asyncio
import fractions
import json
import math
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
import av
import websockets
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)

# The bridge listens on 127.0.0.1 only; aioice leaves loopback out of its
# host candidates, so offer it explicitly.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def log(*args):
    print("aiortc_peer:", *args, file=sys.stderr, flush=True)


class Tone(MediaStreamTrack):
    """20 ms frames of a 440 Hz tone, 48 kHz mono, paced in real time."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.rate = 48000
        self.samples = 960
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.pts / self.rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        pcm = struct.pack(
            f"<{self.samples}h",
            *(int(8000 * math.sin(2 * math.pi * 440 * (self.pts + i) / self.rate)) for i in range(self.samples)),
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = self.rate
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self.pts += self.samples
        return frame


class Pattern(VideoStreamTrack):
    """320x240 frames whose brightness moves, so every frame differs."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        # yuv420p: a luma ramp that slides by a few pixels each frame.
        shift = self.n * 3
        row = bytes((x + shift) % 256 for x in range(320))
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.planes[0].update(row * 240)
        frame.planes[1].update(bytes([128]) * (160 * 120))
        frame.planes[2].update(bytes([128]) * (160 * 120))
        self.n += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def credentials(server, room, name, codec=None):
    """(signal URL, token): the focus's /join, else a standalone bridge."""
    params = {"room": room, "name": name}
    if codec:
        params["codec"] = codec
    q = urllib.parse.urlencode(params)
    try:
        j = get_json(f"http://{server}/join?{q}")
        return j["signal_url"], j["token"]
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    return f"ws://{server}/signal", get_json(f"http://{server}/dev/token?{q}")["token"]


async def consume(track, mid, decoded):
    while True:
        try:
            frame = await track.recv()
        except Exception:  # MediaStreamError when the track ends
            return
        d = decoded.setdefault(mid, {"frames": 0, "width": 0, "height": 0})
        d["frames"] += 1
        if track.kind == "video":
            d["width"], d["height"] = frame.width, frame.height


def answer_video_codecs(sdp):
    """Per video m-section of an SDP, the codec name of its first payload type."""
    out = []
    sections = sdp.split("\r\nm=")
    for sec in sections[1:]:
        lines = sec.split("\r\n")
        fields = lines[0].split()
        if fields[0] != "video" or len(fields) < 4:
            continue
        first = fields[3]
        name = next(
            (l.split(" ", 1)[1].split("/")[0] for l in lines if l.startswith(f"a=rtpmap:{first} ")),
            None,
        )
        out.append(name)
    return out


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="HOST:PORT of the focus (or a standalone bridge)")
    ap.add_argument("--room", required=True)
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--codec", help="video codec to offer alone and ask the conference for (e.g. h264)")
    args = ap.parse_args()

    signal_url, token = credentials(args.server, args.room, args.name, args.codec)
    # The bridge bundles everything onto the first m-section. aiortc's default
    # (balanced) policy pre-bundles same-kind transceivers onto the first of
    # their kind and then never moves them onto the answer's bundle: every
    # video transceiver after the first would stay on a discarded transport.
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    mic = pc.addTransceiver(Tone(), direction="sendonly")
    camera = pc.addTransceiver(Pattern(), direction="sendonly")
    slots = [pc.addTransceiver(k, direction="recvonly") for k in ("audio", "video") for _ in range(args.slots)]
    if args.codec:
        wanted = f"video/{args.codec}".lower()
        prefs = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in (wanted, "video/rtx")
        ]
        if not any(c.mimeType.lower() == wanted for c in prefs):
            raise SystemExit(f"aiortc has no {wanted}")
        for t in [camera] + [t for t in slots if t.kind == "video"]:
            t.setCodecPreferences(prefs)
    decoded = {}
    carried = {}  # mid -> source id, from the last `slots`
    errors = []

    @pc.on("track")
    def on_track(track):
        mid = next((t.mid for t in slots if t.receiver.track is track), None)
        if mid is not None:
            asyncio.ensure_future(consume(track, mid, decoded))

    async with websockets.connect(signal_url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "join", "version": 1, "token": token}))
        answered = asyncio.Event()

        async def reader():
            async for raw in ws:
                m = json.loads(raw)
                kind = m.get("type")
                if kind == "joined":
                    print(f"joined {m['participant']['id']}", flush=True)
                    await pc.setLocalDescription(await pc.createOffer())
                    sources = [
                        {"mid": mic.mid, "name": "mic", "kind": "audio"},
                        {"mid": camera.mid, "name": "camera", "kind": "video"},
                    ]
                    await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp, "sources": sources}))
                elif kind == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
                    answered.set()
                elif kind == "slots":
                    for s in m["slots"]:
                        carried[s["mid"]] = s["source"]
                elif kind == "error":
                    log("error from the bridge:", m)
                    errors.append([m["code"], m["message"]])

        read_task = asyncio.ensure_future(reader())
        await asyncio.wait_for(answered.wait(), 15)
        deadline = time.time() + 15
        while pc.connectionState != "connected":
            if time.time() > deadline or read_task.done():
                raise RuntimeError(f"not connected: {pc.connectionState}")
            await asyncio.sleep(0.02)
        print(f"connected {time.time()}", flush=True)

        stop = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
        while not stop.done():
            if read_task.done():
                read_task.result()
                raise RuntimeError("the bridge closed the signalling socket")
            await asyncio.wait([stop], timeout=0.2)
        read_task.cancel()

    packets = {}
    for t in slots:
        packets[t.mid] = sum(s.packetsReceived for s in (await t.receiver.getStats()).values() if s.type == "inbound-rtp")
    result = {
        "answer_video_codecs": answer_video_codecs(pc.remoteDescription.sdp),
        "slots": {
            t.mid: {"kind": t.kind, "source": carried.get(t.mid), "packets": packets[t.mid], **decoded.get(t.mid, {})}
            for t in slots
        },
        "errors": errors,
    }
    await pc.close()
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
