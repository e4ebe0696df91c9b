#!/usr/bin/env bash
# Mixing, Tern vs Janus AudioBridge, on this machine, in one command:
#
#   tests/janus/mix_compare.sh [-n PARTICIPANTS] [-d SECONDS]
#                              [--server-core C] [--load-core C]
#
# Defaults: 10 participants, 20 s measured (after 5 s of warm-up), server
# pinned to core 1, participants (aiortc, tests/janus/mix_load.py) to core 0.
#
# One audio-only room mixed at 16 kHz: every participant publishes a tone
# (Opus) at its own frequency and receives one mix. The talker's tone is on
# 300 ms a second; the others never stop, so the server decodes every input
# all the time. Measured for each server: its CPU (utime + stime over the
# window), CPU per participant, how many participants one core would hold
# at that rate, and the talker's capture-to-decode latency at every other
# participant (p50/p99: aiortc's capture and decode on both ends included,
# identically for both servers).
#
# Like compare.sh: a private namespace with a veth pair (198.18.0.1 server,
# 198.18.0.2 participants), Janus with HTTP and AudioBridge only, then
# `tern bridge` (one shard, one mixing worker). Needs root; installs Janus
# and numpy (into the aiortc venv) if missing. KEEP=1 keeps the scratch
# directory.
set -euo pipefail
export RUST_LIB_BACKTRACE=0

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

n=10 secs=20 server_core=1 load_core=0
while (($#)); do
  case $1 in
    -n) n=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    --server-core) server_core=$2; shift 2 ;;
    --load-core) load_core=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "mix_compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ $(id -u) != 0 ]]; then
  echo "mix_compare.sh: needs root (network namespaces, apt-get)" >&2
  exit 1
fi
if ! command -v janus >/dev/null 2>&1; then
  echo "mix_compare.sh: installing Janus (apt-get install -y janus)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus >/dev/null ||
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus; }
fi
venv="${TERN_AIORTC_VENV:-$root/target/aiortc-venv}"
if ! "$venv/bin/python" -c 'import aiortc' 2>/dev/null; then
  bash "$root/scripts/install-test-deps.sh" >/dev/null
fi
if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
  echo "mix_compare.sh: installing numpy into $venv"
  "$venv/bin/pip" install -q numpy
fi
if [[ -z ${TERN_BIN:-} ]]; then
  (cd "$root" && cargo build --release -q --bin tern)
  TERN_BIN=$root/target/release/tern
fi
# A TERN_BIN given in the environment must not reach tern: it refuses
# TERN_* variables that are not its settings.
export -n TERN_BIN

ns=tern-mix-$$
work=$(mktemp -d /tmp/tern-mix-compare.XXXXXX)
server_pid=
cleanup() {
  local rc=$?
  set +e
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null; fi
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  if [[ ${KEEP:-} == 1 ]]; then echo "mix_compare.sh: kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
bash "$here/veth.sh" "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
wait_http() {
  local url=$1 pid=$2 what=$3
  for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "mix_compare.sh: $what exited during startup:" >&2
      tail -n 30 "$work/$what.log" >&2
      return 1
    fi
    if in_ns curl -sf -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  echo "mix_compare.sh: $what did not answer $url" >&2
  return 1
}
load=(taskset -c "$load_core" "$venv/bin/python" "$here/mix_load.py" -n "$n" -d "$secs" --bind 198.18.0.2)

# ---- Janus AudioBridge -------------------------------------------------------
bash "$here/janus-config.sh" "$work/janus" tern-srv 198.18.0.1 20000-20999
ip netns exec "$ns" taskset -c "$server_core" janus -C "$work/janus/janus.jcfg" -F "$work/janus" \
  >"$work/janus.log" 2>&1 &
server_pid=$!
wait_http http://198.18.0.1:8088/janus/info "$server_pid" janus
echo "== Janus $(janus --version 2>/dev/null | sed -n 's/^Janus version: [0-9]* (\(.*\))/\1/p') AudioBridge (pid $server_pid, core $server_core)"
in_ns "${load[@]}" --target janus --url http://198.18.0.1:8088/janus --server-pid "$server_pid" \
  | tee "$work/janus.json"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

# ---- Tern ----------------------------------------------------------------------
secret=mix-compare-$$
for i in $(seq 0 $((n - 1))); do
  TERN_AUTH_SECRET=$secret "$TERN_BIN" token --room mix --participant "p$i" --mix 16000
done >"$work/tokens"
ip netns exec "$ns" env TERN_AUTH_SECRET="$secret" TERN_LOG=warn TERN_BRIDGE_SHARDS=1 \
  TERN_MEDIA_MIXING_WORKERS=1 \
  TERN_BRIDGE_HTTP_LISTEN='"198.18.0.1:8080"' TERN_BRIDGE_MEDIA_LISTEN='"198.18.0.1:10000"' \
  taskset -c "$server_core" "$TERN_BIN" bridge >"$work/tern.log" 2>&1 &
server_pid=$!
wait_http http://198.18.0.1:8080/health "$server_pid" tern
echo "== tern bridge $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') (pid $server_pid, core $server_core)"
in_ns "${load[@]}" --target tern --url ws://198.18.0.1:8080/signal --tokens "$work/tokens" \
  --server-pid "$server_pid" | tee "$work/tern.json"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

echo
echo "== mixing: $n participants, one room at 16 kHz, ${secs} s measured; $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
python3 - "$work/janus.json" "$work/tern.json" <<'PY'
import json, sys
print(f'{"server":<7} {"connected":>9} {"srv cores":>9} {"ms CPU/participant/s":>21} {"participants/core":>17} {"latency p50/p99 ms":>19} {"onsets":>9}')
for path in sys.argv[1:]:
    r = json.loads(open(path).read().strip().splitlines()[-1])
    cores = r["server_cpu_secs"] / r["window_secs"]
    per = cores / r["participants"]
    l = r["latency_ms"]
    fmt = lambda v: f"{v:.0f}" if v is not None else "-"
    print(f'{r["target"]:<7} {r["connected"]:>4}/{r["participants"]:<4} {cores:>9.3f} {per * 1000:>21.2f} '
          f'{(1 / per if per > 0 else float("inf")):>17.0f} {fmt(l["p50"]):>9} / {fmt(l["p99"]):<7} '
          f'{r["onsets_found"]:>4}/{r["onsets_expected"]:<4}')
PY
