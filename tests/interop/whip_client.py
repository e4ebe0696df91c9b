#!/usr/bin/env python3
"""A WHIP publisher or WHEP viewer on an independent WebRTC stack (aiortc),
written from RFC 9725 and docs/whip-whep.md alone: POST the SDP offer
(content-type application/sdp, `Authorization: Bearer <token>`) to the
endpoint, apply the 201's answer, DELETE the `Location` when done.

  whip_client.py publish --url http://HOST/whip --token T
      sends a 440 Hz tone (Opus) and a moving 320x240 pattern (VP8)
  whip_client.py view --url http://HOST/whep --token T
      receives one audio and one video stream and decodes them

Prints `created <location>` and `connected <unix time>`, runs until a line
(or EOF) on stdin, then DELETEs the session and prints `result <json>`:
the HTTP statuses and what was decoded. Driven by tests/interop_whip.rs;
logs go to stderr.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

# Tone, Pattern and the loopback host-candidate fix.
from aiortc_peer import Pattern, Tone


def log(*args):
    print("whip_client:", *args, file=sys.stderr, flush=True)


def http(method, url, token, body=None):
    """(status, headers with lower-case names, body text) of one request;
    HTTP errors included."""
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/sdp"
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


async def consume(track, decoded):
    while True:
        try:
            frame = await track.recv()
        except Exception:  # MediaStreamError when the track ends
            return
        d = decoded.setdefault(track.kind, {"frames": 0, "width": 0, "height": 0, "last": 0.0})
        d["frames"] += 1
        d["last"] = time.time()
        if track.kind == "video":
            d["width"], d["height"] = frame.width, frame.height


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["publish", "view"])
    ap.add_argument("--url", required=True, help="the WHIP or WHEP endpoint URL")
    ap.add_argument("--token", required=True)
    args = ap.parse_args()

    # The bridge bundles everything; aiortc needs max-bundle to follow it.
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    decoded = {}
    if args.mode == "publish":
        pc.addTransceiver(Tone(), direction="sendonly")
        pc.addTransceiver(Pattern(), direction="sendonly")
    else:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track):
            asyncio.ensure_future(consume(track, decoded))

    # aiortc gathers every candidate before the offer is ready, so the
    # offer is complete and no trickle (PATCH) is needed.
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, headers, body = await loop.run_in_executor(None, http, "POST", args.url, args.token, pc.localDescription.sdp)
    if status != 201:
        raise RuntimeError(f"POST {args.url}: {status} {body.strip()}")
    location = headers.get("location")
    if not location:
        raise RuntimeError(f"201 without Location: {headers}")
    if headers.get("content-type", "").split(";")[0] != "application/sdp":
        raise RuntimeError(f"answer content-type {headers.get('content-type')!r}")
    resource = urllib.parse.urljoin(args.url, location)
    print(f"created {resource}", flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    deadline = time.time() + 15
    while pc.connectionState != "connected":
        if time.time() > deadline:
            raise RuntimeError(f"not connected: {pc.connectionState}")
        await asyncio.sleep(0.02)
    print(f"connected {time.time()}", flush=True)

    await loop.run_in_executor(None, sys.stdin.readline)
    delete_status, _, delete_body = await loop.run_in_executor(None, http, "DELETE", resource, args.token)
    again_status, _, _ = await loop.run_in_executor(None, http, "DELETE", resource, args.token)
    result = {
        "offer": pc.localDescription.sdp,
        "answer": body,
        "location": location,
        "delete": delete_status,
        "delete_body": delete_body,
        "delete_again": again_status,
        "decoded": decoded,
        "state": pc.connectionState,
    }
    await pc.close()
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
