#!/usr/bin/env bash
# The relay hop on loopback, in one command (BENCHMARKS.md, "Relay hop
# (issue 5)"):
#
#   tests/relay_hop.sh [-n PUBLISHERS] [-m SUBSCRIBERS] [-r ROOMS] [-d SECONDS]
#                      [--max-height H] [--only same|cross]
#                      [--bridge-cores C] [--load-core C] [--label TEXT]
#
# Defaults: 2 publishers, 20 subscribers, 1 room, 20 s measured, receivers
# asking for 720p; `tern dev` (focus + bridges local-a and local-b, one
# shard each) pinned to core 1, the load tool to core 0.
#
# It starts `tern dev` and runs `tern loadtest` through its focus twice
# with identical load (unless --only picks one):
#   same:  publishers and subscribers all in region local-a: one bridge;
#   cross: publishers in local-a, subscribers in local-b: every packet goes
#          publisher → local-a → QUIC relay → local-b → subscriber.
# Both runs print the end-to-end delay (publisher generator → subscriber's
# str0m, one clock) and, per bridge, its /metrics relay counters and its
# CPU (/proc, over the same window); the difference in delay between the
# two runs is what the hop adds.
#
# The focus would move participants off a bridge it thinks overloaded (a
# packet rate near bridge.max_packet_rate, or many recent joins), which would
# mix the two paths; this benchmark raises those limits, and the load tool
# warns if anyone was still placed outside their region.
# KEEP=1 keeps the scratch directory (tern dev's log, JSON summaries).
set -euo pipefail

export RUST_LIB_BACKTRACE=0

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

pubs=2 subs=20 rooms=1 secs=20 max_height=720 only= bridge_cores=1 load_core=0 label=
while (($#)); do
  case $1 in
    -n) pubs=$2; shift 2 ;;
    -m) subs=$2; shift 2 ;;
    -r) rooms=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    --max-height) max_height=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --bridge-cores) bridge_cores=$2; shift 2 ;;
    --load-core) load_core=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "relay_hop.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $only in
  ''|same|cross) ;;
  *) echo "relay_hop.sh: --only takes same or cross" >&2; exit 2 ;;
esac

if [[ -z ${TERN_BIN:-} ]]; then
  (cd "$root" && cargo build --release -q --bin tern)
  TERN_BIN=$root/target/release/tern
fi
# tern refuses TERN_* variables that are not configuration keys: keep the
# path in a plain shell variable and out of the children's environment.
tern=$(realpath "$TERN_BIN")
unset TERN_BIN

work=$(mktemp -d /tmp/tern-relay-hop.XXXXXX)
dev_pid=

cleanup() {
  local rc=$?
  set +e
  if [[ -n $dev_pid ]]; then
    kill -TERM "$dev_pid" 2>/dev/null
    wait "$dev_pid" 2>/dev/null
  fi
  if [[ -n ${KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

# Free ports: loopback, away from the defaults a developer may be using.
http=127.0.0.1:18480 media=127.0.0.1:18400
TERN_LOG=warn TERN_BRIDGE_SHARDS=1 \
  TERN_BRIDGE_MAX_PACKET_RATE=10000000 TERN_FOCUS_OVERLOAD_STRESS=10.0 \
  TERN_FOCUS_PARTICIPANT_CAP=100000 \
  taskset -c "$bridge_cores" "$tern" dev --http "$http" --media "$media" \
  >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 100); do
  grep -q '^tern dev ready' "$work/dev.log" && break
  sleep 0.1
done
grep -q '^tern dev ready' "$work/dev.log" ||
  { echo "relay_hop.sh: tern dev did not start:" >&2; cat "$work/dev.log" >&2; exit 1; }
# "tern dev: bridge local-a pid 123 http ... media ..."
pid_of() { sed -n "s/^tern dev: bridge $1 pid \([0-9]*\) .*/\1/p" "$work/dev.log"; }
pid_a=$(pid_of local-a) pid_b=$(pid_of local-b)
[[ -n $pid_a && -n $pid_b ]] ||
  { echo "relay_hop.sh: no bridge pids in tern dev's output:" >&2; cat "$work/dev.log" >&2; exit 1; }

echo "== relay hop: $pubs publisher(s) -> $subs subscriber(s), $rooms room(s), ${secs} s measured, max height $max_height ${label:+($label)}"
echo "   tern dev pid $dev_pid on core(s) $bridge_cores (bridges local-a $pid_a, local-b $pid_b); load tool on core $load_core"
echo "   load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

run() {
  local name=$1 sub_region=$2
  echo "-- $name: publishers in local-a, subscribers in $sub_region"
  taskset -c "$load_core" "$tern" loadtest --server "http://$http" \
    -n "$pubs" -m "$subs" -r "$rooms" -d "$secs" --max-height "$max_height" \
    --publisher-region local-a --subscriber-region "$sub_region" \
    --server-pid "local-a=$pid_a" --server-pid "local-b=$pid_b" \
    --label "$name" --json "$work/$name.json" 2>"$work/$name.err" |
    grep -v '^$' || { cat "$work/$name.err" >&2; return 1; }
  # Let the first run's participants leave and the bridges settle.
  sleep 3
}
[[ $only == cross ]] || run same local-a
[[ $only == same ]] || run cross local-b
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work" "$only" <<'EOF'
import json, os, sys
work, only = sys.argv[1], sys.argv[2]
rows = {}
for name in ("same", "cross"):
    p = os.path.join(work, name + ".json")
    if os.path.exists(p):
        with open(p) as f:
            rows[name] = json.load(f)
print("run    delivered/s  delay p50 / p99 ms   bridge   busy cores  relay out/s  relay in/s  relay dgrams per CPU-s")
for name, s in rows.items():
    o, w = s["overall"], s["window_secs"]
    d = o.get("delay_ms") or {}
    first = True
    for bid, b in sorted(s["bridges"].items()):
        p = b.get("process") or {}
        rate = lambda k: (b.get(k) or 0) / w
        per = b.get("relay_datagrams_per_cpu_sec")
        head = f"{name:<6} {o['received_packets_per_sec']:>11.0f}  {d.get('p50', float('nan')):>7.1f} / {d.get('p99', float('nan')):<8.1f}" if first else " " * 39
        print(f"{head} {bid:<8} {p.get('busy_cores', float('nan')):>10.2f}  {rate('relay_datagrams_out'):>11.0f}  {rate('relay_datagrams_in'):>10.0f}  {(f'{per:.0f}' if per else '-'):>10}")
        first = False
    if s.get("placed_elsewhere"):
        print(f"       warning: {s['placed_elsewhere']} participants placed outside their region")
if "same" in rows and "cross" in rows:
    a, b = rows["same"]["overall"]["delay_ms"], rows["cross"]["overall"]["delay_ms"]
    print(f"hop adds: p50 {b['p50'] - a['p50']:+.1f} ms, p99 {b['p99'] - a['p99']:+.1f} ms (cross minus same)")
EOF
