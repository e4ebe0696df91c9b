#!/usr/bin/env bash
# Tern vs Janus under identical load, on this machine, in one command:
#
#   tests/janus/compare.sh [-n PUBLISHERS] [-m SUBSCRIBERS] [-r ROOMS]
#                          [-d SECONDS] [--layers 1..3] [--max-height H]
#                          [--server-core C] [--load-core C] [-k ROUNDS]
#
# Defaults: 1 publisher, 20 subscribers, 1 room, 10 s, the 3-layer
# 180/360/720 simulcast ladder, receivers asking for 720p; server pinned to
# core 1, load tool to core 0; one round.
#
# A shared machine's speed drifts between minutes, and one round puts all
# of that drift into the ratio. `-k ROUNDS` runs both servers ROUNDS times,
# Janus first in odd rounds and Tern first in even ones, prints every
# round's ratio and then the ratio of the two servers' median CPU-seconds
# per million forwarded packets.
#
# What it does:
#  1. installs Janus if it is missing (apt-get install -y janus) and builds
#     `tern` in release mode (or uses $TERN_BIN);
#  2. creates a private network namespace with `lo` and a veth pair, both
#     ends inside, 198.18.0.1 (server) / 198.18.0.2 (load tool)
#     (tests/janus/veth.sh);
#  3. writes a minimal Janus config (tests/janus/janus-config.sh: HTTP
#     transport and VideoRoom only, ICE on the veth only, no admin API),
#     starts Janus pinned to the server core, runs `tern loadtest --target
#     janus` pinned to the load core, stops Janus;
#  4. starts `tern bridge` (one shard) the same way and runs the identical
#     `tern loadtest --target tern`;
#  5. prints, for each server and round: forwarded packets per second (RTP packets
#     the subscribers received in the measured window: counted the same way
#     for both servers), the server's CPU (utime+stime from /proc/PID/stat
#     over the window), CPU-seconds per million forwarded packets, forwarded
#     packets per CPU-second, loss, end-to-end delay, freezes and the
#     simulcast layer that really arrived; then Tern's ratio to Janus
#     (with -k, per round and from the medians).
#
# Everything it started is stopped and the namespace deleted on exit, also
# on failure or Ctrl-C. KEEP=1 keeps the scratch directory (logs, JSON).
# Needs root (namespaces, apt).
set -euo pipefail

# Errors from the load tool as one clear line, without anyhow's backtrace.
export RUST_LIB_BACKTRACE=0

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

pubs=1 subs=20 rooms=1 secs=10 layers=3 max_height=720 server_core=1 load_core=0 rounds=1
while (($#)); do
  case $1 in
    -n) pubs=$2; shift 2 ;;
    -m) subs=$2; shift 2 ;;
    -r) rooms=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --max-height) max_height=$2; shift 2 ;;
    --server-core) server_core=$2; shift 2 ;;
    --load-core) load_core=$2; shift 2 ;;
    -k) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
  echo "compare.sh: -k wants a number of rounds >= 1, not '$rounds'" >&2
  exit 2
fi

if [[ $(id -u) != 0 ]]; then
  echo "compare.sh: needs root (network namespaces, apt-get)" >&2
  exit 1
fi

if ! command -v janus >/dev/null 2>&1; then
  echo "compare.sh: installing Janus (apt-get install -y janus)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus >/dev/null ||
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q janus; }
fi
if [[ -z ${TERN_BIN:-} ]]; then
  (cd "$root" && cargo build --release -q --bin tern)
  TERN_BIN=$root/target/release/tern
fi
# A TERN_BIN given in the environment must not reach tern: it refuses
# TERN_* variables that are not its settings.
export -n TERN_BIN

ns=tern-cmp-$$
work=$(mktemp -d /tmp/tern-compare.XXXXXX)
server_pid=

cleanup() {
  local rc=$?
  set +e
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null; fi
  # Whatever else still runs in our namespace was started by this script.
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  if [[ ${KEEP:-} == 1 ]]; then
    echo "compare.sh: kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
ip netns add "$ns"
ip -n "$ns" link set lo up
bash "$here/veth.sh" "$ns"
in_ns() { ip netns exec "$ns" "$@"; }

# Waits until URL answers 200 inside the namespace while PID lives.
wait_http() {
  local url=$1 pid=$2 what=$3
  for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "compare.sh: $what exited during startup; its log:" >&2
      tail -n 30 "$work/$what.log" >&2
      return 1
    fi
    if in_ns curl -sf -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  echo "compare.sh: $what did not answer $url within 10 s" >&2
  return 1
}

# The CPU measured must be the server's own, not a wrapper's.
expect_comm() {
  local comm
  comm=$(cat "/proc/$1/comm" 2>/dev/null || true)
  if [[ $comm != "$2"* ]]; then
    echo "compare.sh: pid $1 is '$comm', not $2" >&2
    return 1
  fi
}

load=(-n "$pubs" -m "$subs" -r "$rooms" -d "$secs" --layers "$layers" --max-height "$max_height"
  --bind-ip 198.18.0.2)

# ---- Janus -----------------------------------------------------------------
bash "$here/janus-config.sh" "$work/janus" tern-srv 198.18.0.1 20000-20999
# Runs Janus and the load tool against it; $1 names the round.
run_janus() {
  local r=$1
  # `ip netns exec`, `taskset` and `janus` exec one another: $! is Janus's pid
  # (not through in_ns: a backgrounded shell function is a subshell).
  ip netns exec "$ns" taskset -c "$server_core" janus -C "$work/janus/janus.jcfg" -F "$work/janus" \
    >"$work/janus-$r.log" 2>&1 &
  server_pid=$!
  wait_http http://198.18.0.1:8088/janus/info "$server_pid" "janus-$r"
  expect_comm "$server_pid" janus
  echo "== round $r: Janus $(janus --version 2>/dev/null | sed -n 's/^Janus version: [0-9]* (\(.*\))/\1/p') (pid $server_pid, core $server_core)"
  in_ns taskset -c "$load_core" "$TERN_BIN" loadtest --target janus \
    --server http://198.18.0.1:8088/janus "${load[@]}" \
    --server-pid "$server_pid" --label janus --json "$work/janus-$r.json" | tee "$work/janus-$r.txt"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# ---- Tern ------------------------------------------------------------------
secret=compare-$$
run_tern() {
  local r=$1
  ip netns exec "$ns" env TERN_AUTH_SECRET="$secret" TERN_LOG=warn TERN_BRIDGE_SHARDS=1 \
    TERN_BRIDGE_HTTP_LISTEN='"198.18.0.1:8080"' TERN_BRIDGE_MEDIA_LISTEN='"198.18.0.1:10000"' \
    taskset -c "$server_core" "$TERN_BIN" bridge >"$work/tern-$r.log" 2>&1 &
  server_pid=$!
  wait_http http://198.18.0.1:8080/health "$server_pid" "tern-$r"
  expect_comm "$server_pid" tern
  echo "== round $r: tern bridge $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') (pid $server_pid, core $server_core)"
  in_ns env TERN_AUTH_SECRET="$secret" taskset -c "$load_core" "$TERN_BIN" loadtest --target tern \
    --server http://198.18.0.1:8080 "${load[@]}" \
    --server-pid "$server_pid" --label tern --json "$work/tern-$r.json" | tee "$work/tern-$r.txt"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# Alternating which server goes first cancels a steady drift of the
# machine's speed across rounds.
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2 == 1)); then
    run_janus "$r"
    run_tern "$r"
  else
    run_tern "$r"
    run_janus "$r"
  fi
done

# ---- Report ----------------------------------------------------------------
echo
echo "== Tern vs Janus: $pubs publisher(s) -> $subs subscriber(s), $rooms room(s), ${secs} s measured, $layers layer(s), max height $max_height, $rounds round(s)"
echo "   machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r); server on core $server_core, load tool on core $load_core"
echo "   load average at the start: $load_avg (the machine may be shared: compare within one run)"
python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys

work, rounds = sys.argv[1], int(sys.argv[2])
ladder = {0: "180p", 1: "360p", 2: "720p"}
TARGETS = "targets: >= 2x, issue 6; >= 3x, issue 20"


def row(path):
    with open(path) as f:
        s = json.load(f)
    o = s["overall"]
    p = s.get("server_process") or {}
    per_m = p.get("cpu_secs_per_million_delivered", float("nan"))
    layers = o.get("video_layer_packets") or {}
    total = sum(layers.values()) or 1
    d = o.get("delay_ms") or {}
    return {
        "label": s["label"],
        "fwd": o["received_packets_per_sec"],
        "cores": p.get("busy_cores", float("nan")),
        "per_m": per_m,
        "per_cpu_s": 1e6 / per_m if per_m and per_m == per_m else float("nan"),
        "loss": o["loss_percent"],
        "p50": d.get("p50", float("nan")),
        "p99": d.get("p99", float("nan")),
        "freezes": o["freezes"],
        "media": f'{o["receivers_with_media"]}/{o["expected_receivers"]}',
        "layers": ", ".join(f"{ladder.get(int(k), k)} {v * 100 / total:.0f}%" for k, v in sorted(layers.items())),
        "load": s["loadtool_cpu_secs"] / s["window_secs"],
    }


def ratio(tern_per_m, janus_per_m):
    # Forwarded packets per CPU-second is the inverse of CPU-s per million.
    ok = all(x == x and x > 0 for x in (tern_per_m, janus_per_m))
    return janus_per_m / tern_per_m if ok else float("nan")


print(f'{"round":<5} {"server":<7} {"fwd pkt/s":>10} {"srv cores":>9} {"CPU-s/1M fwd":>12} {"fwd pkt/CPU-s":>13} '
      f'{"loss %":>7} {"delay p50/p99 ms":>17} {"freezes":>7} {"media ok":>8} {"load tool":>9}  layers')
per_round = []
for r in range(1, rounds + 1):
    j, t = row(f"{work}/janus-{r}.json"), row(f"{work}/tern-{r}.json")
    for x in (j, t):
        print(f'{r:<5} {x["label"]:<7} {x["fwd"]:>10.0f} {x["cores"]:>9.3f} {x["per_m"]:>12.1f} {x["per_cpu_s"]:>13.0f} '
              f'{x["loss"]:>7.3f} {x["p50"]:>8.1f} / {x["p99"]:<6.1f} {x["freezes"]:>7} {x["media"]:>8} '
              f'{x["load"]:>9.2f}  {x["layers"]}')
    per_round.append((j["per_m"], t["per_m"]))

if rounds == 1:
    print(f"tern / janus: {ratio(per_round[0][1], per_round[0][0]):.2f}x forwarded packets per server CPU-second ({TARGETS})")
else:
    rs = [ratio(t, j) for j, t in per_round]
    print("per round, tern / janus: " + ", ".join(f"{x:.2f}x" for x in rs))
    jm = statistics.median(j for j, _ in per_round)
    tm = statistics.median(t for _, t in per_round)
    print(f"medians of {rounds} rounds: Janus {jm:.1f}, Tern {tm:.1f} CPU-s per million forwarded")
    print(f"tern / janus: {ratio(tm, jm):.2f}x forwarded packets per server CPU-second, from the medians; "
          f"rounds {min(rs):.2f}-{max(rs):.2f}x ({TARGETS})")
EOF
