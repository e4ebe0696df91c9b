#!/usr/bin/env bash
# One bridge shard at low load (1 publisher -> M subscribers, 720p, on
# loopback) with `perf` attached to it for 5 s in the middle of a 12 s run,
# for profiles and task-clock at loads too light for the saturation sweep:
#
#   tests/bench/low_load_perf.sh BIN stat -e task-clock
#   tests/bench/low_load_perf.sh BIN record -F 20000 --call-graph dwarf,16384 -o /tmp/p.data
#   M=50 tests/bench/low_load_perf.sh BIN stat -e task-clock
#
# BIN is the bridge build under test (the load tool is always
# target/release/tern); the bridge is pinned to core 1, the load tool to 0.
# Prints perf's output and the load tool's server CPU and metrics lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1
shift
L=./target/release/tern
[ -x "$L" ] || cargo build --release
# shellcheck source=tests/bench/bridge.sh
. tests/bench/bridge.sh
start_bridge 1 "$BIN" /tmp/tern-lowload-bridge.log
trap 'kill $BR 2>/dev/null; wait $BR 2>/dev/null || true' EXIT
TERN_AUTH_SECRET=sweep taskset -c 0 "$L" loadtest --server http://127.0.0.1:18081 \
  -n 1 -r 1 -m "${M:-20}" -d 12 --server-pid "$BR" 2>/dev/null | grep -E "server pid|server metrics|server connection polls" &
LT=$!
sleep 6
perf "$@" -p "$BR" -- sleep 5 2>&1 | tail -40
wait $LT
