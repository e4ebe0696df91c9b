#!/usr/bin/env bash
# Saturation sweep of one bridge shard (issue 6): the per-core ceiling, then
# R rooms of 1 publisher -> 70 subscribers for R in the list, then the
# ceiling again. The bridge is pinned to one core, the load tool to the
# other; all but 8 subscribers per run are `--count-only` (they count SRTP
# datagrams without decrypting), so one load-tool core can saturate the
# bridge, and the 8 full subscribers give loss and delay.
#
#   tests/bench/bridge_sweep.sh            # rooms 2 4 6 8
#   tests/bench/bridge_sweep.sh 1 2 3      # other room counts
#   PERF=1 tests/bench/bridge_sweep.sh 8   # also `perf record` the bridge
#   PERF=1 PERF_CALLGRAPH="--call-graph dwarf,16384" tests/bench/bridge_sweep.sh 4  # callers inside str0m
#   MEETING=1 tests/bench/bridge_sweep.sh 2 6   # R rooms of 6, all-to-all at 360p
#   FULL_RECEIVERS=140 tests/bench/bridge_sweep.sh 2  # receivers that decrypt and
#     send feedback (RTCP, TWCC) as browsers do; 8 per run by default
#   LOAD_ARGS=--burst tests/bench/bridge_sweep.sh 2   # extra loadtest flags
#
# Needs an otherwise idle machine: it prints the load average before and
# after, and the ceiling twice, so a run on a busy one shows as such.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/bridge.sh
. tests/bench/bridge.sh
# The load tool and the ceiling always run the release build; SWEEP_BIN
# puts another build of the bridge under test (e.g. another profile).
L=./target/release/tern
[ -x "$L" ] || cargo build --release
T=${SWEEP_BIN:-$L}
ROOMS=("$@")
[ ${#ROOMS[@]} -gt 0 ] || ROOMS=(2 4 6 8)
BRIDGE_CORE=${BRIDGE_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c "$BRIDGE_CORE" "$L" loadtest --ceiling 4 --ceiling-reader-core "$LOAD_CORE" | tail -1
# Word splitting of LOAD_ARGS is intended (several flags).
read -r -a EXTRA <<<"${LOAD_ARGS:-}"
for r in "${ROOMS[@]}"; do
  if [ "${MEETING:-0}" = 1 ]; then
    m=0
    LOAD=(-n $((r * 6)) -r "$r" -m 0 --publishers-receive --max-height 360)
    echo "== $r room(s) of 6, everyone publishes and watches the others, 360p ${EXTRA[*]}"
  else
    m=$((r * 70))
    c=$((m - ${FULL_RECEIVERS:-8}))
    [ "$c" -ge 0 ] || c=0
    LOAD=(-n "$r" -r "$r" -m "$m" --count-only "$c")
    echo "== $r room(s): $r publisher(s) -> $m subscribers ($c count-only), 720p ${EXTRA[*]}"
  fi
  start_bridge "$BRIDGE_CORE" "$T" /tmp/tern-sweep-bridge.log
  if [ "${PERF:-0}" = 1 ]; then
    ( sleep $((m / 50 + 6)); perf record -F 499 ${PERF_CALLGRAPH:--g} -p "$BR" -o "/tmp/tern-sweep-$r.perf" -- sleep 5 >/dev/null 2>&1 ) &
  fi
  TERN_AUTH_SECRET=sweep taskset -c "$LOAD_CORE" "$L" loadtest --server http://127.0.0.1:18081 \
    "${LOAD[@]}" "${EXTRA[@]}" -d 10 --server-pid "$BR" \
    2>/tmp/tern-sweep-load.log | grep -E "^overall|server pid|server metrics|server connection polls|forwarding delay|load tool:|^error:" || true
  grep -E "^Error" /tmp/tern-sweep-load.log || true
  kill "$BR"; wait "$BR" 2>/dev/null || true
done
taskset -c "$BRIDGE_CORE" "$L" loadtest --ceiling 4 --ceiling-reader-core "$LOAD_CORE" | tail -1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
