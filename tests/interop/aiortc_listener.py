#!/usr/bin/env python3
"""A listener on an independent WebRTC stack (aiortc), written from
docs/signalling.md alone: joins a Tern bridge with a dev token, offers
`--slots` recvonly audio transceivers (and sends nothing), and records over
time which source each slot (mid) carries (`slots`), how many RTP packets
arrive on each mid (the receiver's getStats), the publisher tag at the end
of each synthetic payload, and `dominant_speaker`.

Prints `connected <unix time>` once media flows can start, runs until a line
(or EOF) on stdin, then prints `result <json>`. Times are Unix seconds.
Driven by tests/interop_aiortc.rs; logs go to stderr.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
import urllib.request

import aioice.ice
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpreceiver import RTCRtpReceiver

# The bridge listens on 127.0.0.1 only; aioice leaves loopback out of its
# host candidates, so offer it explicitly.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

# The synthetic audio (tern-peer's AudioGen) is Opus-sized, not Opus: 80
# bytes starting with an Opus TOC byte and ending with the publisher's
# 4-byte tag. Record that tag per packet as RTP arrives, before any decoding.
TAGS = {}  # id(receiver) -> list of [t, tag]
_orig_handle = RTCRtpReceiver._handle_rtp_packet


async def _handle_rtp_packet(self, packet, arrival_time_ms):
    log = TAGS.get(id(self))
    if log is not None and len(packet.payload) == 80 and packet.payload[0] == 0xF8:
        log.append([time.time(), packet.payload[-4:].hex()])
    return await _orig_handle(self, packet, arrival_time_ms)


RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet


def log(*args):
    print("aiortc_listener:", *args, file=sys.stderr, flush=True)


async def consume(track, counts, mid):
    """Pull decoded frames so the receiver's queue drains; the payload is
    not real Opus, so decoding may fail or give noise: only count."""
    while True:
        try:
            await track.recv()
            counts[mid] = counts.get(mid, 0) + 1
        except Exception:  # MediaStreamError when the track ends
            return


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bridge", required=True, help="HOST:PORT of the bridge's HTTP")
    ap.add_argument("--room", required=True)
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()

    q = urllib.parse.urlencode({"room": args.room, "name": args.name})
    with urllib.request.urlopen(f"http://{args.bridge}/dev/token?{q}", timeout=10) as r:
        token = json.load(r)["token"]

    events = {"slots": [], "dominant_speaker": [], "speaking": [], "errors": []}
    stats = []  # [t, {mid: packetsReceived}]
    frames = {}
    me = None
    pc = RTCPeerConnection()
    transceivers = [pc.addTransceiver("audio", direction="recvonly") for _ in range(args.slots)]
    for t in transceivers:
        TAGS[id(t.receiver)] = []

    @pc.on("track")
    def on_track(track):
        mid = next((t.mid for t in transceivers if t.receiver.track is track), None)
        asyncio.ensure_future(consume(track, frames, mid))

    async with websockets.connect(f"ws://{args.bridge}/signal", max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "join", "version": 1, "token": token}))
        answered = asyncio.Event()

        async def reader():
            nonlocal me
            async for raw in ws:
                m = json.loads(raw)
                now = time.time()
                kind = m.get("type")
                if kind == "joined":
                    me = m["participant"]["id"]
                    offer = await pc.createOffer()
                    await pc.setLocalDescription(offer)
                    await ws.send(
                        json.dumps(
                            {"type": "offer", "sdp": pc.localDescription.sdp, "sources": []}
                        )
                    )
                elif kind == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
                    answered.set()
                elif kind == "slots":
                    events["slots"].append([now, {s["mid"]: s["source"] for s in m["slots"]}])
                elif kind == "dominant_speaker":
                    events["dominant_speaker"].append([now, m["participant"], m["recent"]])
                elif kind == "speaking":
                    events["speaking"].append([now, [l["participant"] for l in m["levels"]]])
                elif kind == "error":
                    log("error from the bridge:", m)
                    events["errors"].append([now, m["code"], m["message"]])
                # Other types (participant_joined, sources, ...) are not needed.

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
                read_task.result()  # raises what ended it
                raise RuntimeError("the bridge closed the signalling socket")
            sample = {}
            for t in transceivers:
                n = 0
                for s in (await t.receiver.getStats()).values():
                    if s.type == "inbound-rtp":
                        n += s.packetsReceived
                sample[t.mid] = n
            stats.append([time.time(), sample])
            await asyncio.wait([stop], timeout=0.1)
        read_task.cancel()

    mids = {id(t.receiver): t.mid for t in transceivers}
    result = {
        "me": me,
        "mids": [t.mid for t in transceivers],
        "stats": stats,
        "tags": {mids[k]: v for k, v in TAGS.items()},
        "frames": frames,
        **events,
    }
    await pc.close()
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
