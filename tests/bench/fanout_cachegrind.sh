#!/usr/bin/env bash
# What one forwarded copy costs in instructions and cache misses, counted
# rather than timed: `str0m_floor`'s fan-out benchmark (70 receivers of
# 4 video slots by default) run under valgrind's cachegrind twice, with R1
# and R2 rounds (the benchmark sends 70 / CONNS times as many rounds), and
# the difference divided by the copies between them, so that setting up
# the connections and their first seconds (the estimator's start-up
# probes) drop out: the defaults compare 7.4 s of virtual time with 22 s,
# the connections' steady state. The benchmark runs on virtual
# time, so the work is the same in every run: two builds compare to within
# a few instructions a copy, where the timed benchmark and the saturation
# sweep drift by a quarter between hours on this machine.
#
# The simulated caches: a 48 KiB L1 data cache and this machine's 1 MiB L2
# per core (its L1 is 32 KiB; the figures in BENCHMARKS.md were taken with
# 48): "L2 misses" are what had to come from L3 or memory. The counts
# are for both sides of each connection (the receivers decrypt and send
# feedback in the same process); `cg_annotate` on the kept difference
# tells the bridge's functions from the participants'.
#
#   tests/bench/fanout_cachegrind.sh                  # the working tree
#   FLOOR_BIN=/tmp/floor_base tests/bench/fanout_cachegrind.sh   # another build
#   CONNS=560 R1=16000 R2=48000 tests/bench/fanout_cachegrind.sh  # slow: ~an hour
#
# Needs valgrind (apt install valgrind). Two runs in parallel, ~3 min at
# the defaults. Output: per-copy figures, and the per-function difference
# in $OUT/delta.out (`cg_annotate --show=Ir,DLmr,DLmw --sort=DLmr`).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-70}
SLOTS=${SLOTS:-4}
R1=${R1:-2000}
R2=${R2:-6000}
OUT=${OUT:-$(mktemp -d /tmp/tern-cachegrind.XXXX)}
mkdir -p "$OUT"
BIN=${FLOOR_BIN:-}
if [ -z "$BIN" ]; then
    BIN=$(cargo test --release -p tern-sim --test str0m_floor --no-run 2>&1 |
        grep -o 'target/release/deps/str0m_floor-[0-9a-f]*' | head -1)
fi
[ -x "$BIN" ] || { echo "no str0m_floor benchmark binary (FLOOR_BIN or a release build)" >&2; exit 1; }
run() {
    TERN_FANOUT_SLOTS=$SLOTS TERN_FANOUT_CONNS=$CONNS TERN_FLOOR_ROUNDS=$1 \
        valgrind --tool=cachegrind --cache-sim=yes --D1=49152,12,64 --LL=1048576,8,64 \
        --cachegrind-out-file="$OUT/$1.out" "$BIN" --nocapture a_fan >"$OUT/$1.log" 2>&1
}
run "$R1" &
first=$!
run "$R2" &
second=$!
wait "$first" || { echo "the $R1-round run failed: $OUT/$R1.log" >&2; exit 1; }
wait "$second" || { echo "the $R2-round run failed: $OUT/$R2.log" >&2; exit 1; }
cg_diff "$OUT/$R1.out" "$OUT/$R2.out" >"$OUT/delta.out"
python3 - "$OUT" "$R1" "$R2" "$CONNS" <<'PY'
import re, sys
out, r1, r2, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def counts(r):
    t = open(f"{out}/{r}.log").read()
    num = lambda name: int(re.search(name + r":\s+([\d,]+)", t).group(1).replace(",", ""))
    return num(r"I\s+refs"), num(r"D1\s+misses"), num(r"LL misses")
a, b = counts(r1), counts(r2)
# The benchmark scales its rounds to the receivers (70 / CONNS of them).
rounds = lambda r: max(2, max(r, 20) * 70 // conns)
copies = (rounds(r2) - rounds(r1)) * conns
ir, d1, ll = ((y - x) / copies for x, y in zip(a, b))
print(f"{conns} receivers, {copies} copies: {ir:.0f} instructions, "
      f"{d1:.2f} L1 data misses, {ll:.2f} L2 misses per copy (both sides)")
print(f"per-function difference: {out}/delta.out")
PY
