#!/usr/bin/env bash
# The bridge's heap in use against its RSS, for R rooms of 6 where everyone
# publishes 360p and watches the others (the meeting sweep's load): 11 s in,
# prints anonymous RSS and asks glibc's malloc for its statistics through
# gdb (`malloc_stats()`, written to the bridge's stderr). Run it for two
# room counts and divide the differences by the participants between them:
# heap in use and anonymous RSS per participant, without the fixed buffers.
#
#   tests/bench/heap_in_use.sh 4      # needs gdb; BIN=/path/to/tern for another build
#
# gdb stops the bridge for a moment: its RSS at the end of the run (the
# load tool's line) grows with the backlog, so read the figures printed here.
set -euo pipefail
cd "$(dirname "$0")/../.."
L=./target/release/tern
[ -x "$L" ] || cargo build --release
B=${BIN:-$L}
R=${1:?rooms}
# shellcheck source=tests/bench/bridge.sh
. tests/bench/bridge.sh
start_bridge 1 "$B" /tmp/tern-heap-bridge.log
TERN_AUTH_SECRET=sweep taskset -c 0 "$L" loadtest --server http://127.0.0.1:18081 \
  -n $((R * 6)) -r "$R" -m 0 --publishers-receive --max-height 360 -d 14 --server-pid "$BR" >/dev/null 2>&1 &
LT=$!
sleep 11
echo "== $R room(s) of 6"
grep -E "VmRSS|RssAnon" "/proc/$BR/status"
# gdb may exit non-zero after the call went through (detach warnings).
gdb -p "$BR" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1 || true
wait "$LT" || true
kill "$BR"
wait "$BR" 2>/dev/null || true
grep -A2 -E "^Total" /tmp/tern-heap-bridge.log
