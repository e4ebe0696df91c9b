#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions (default 10
# million), keeping its corpus in fuzz/corpus/<target>, and prints one line
# per target: executions, wall time, executions/s, coverage, corpus size.
# Re-run it any time: each run starts from the corpus the last one kept.
#
#   scripts/fuzz-depth.sh                 # every target, 10M executions each
#   RUNS=1000000 scripts/fuzz-depth.sh media_payload signal_message
#   MAX_TIME=600 scripts/fuzz-depth.sh node_input   # or stop after 10 minutes
#
# Corpora stay in fuzz/corpus/<target> on this machine (not in git: they
# grow to tens of megabytes), so the next run goes on from there; a crash
# leaves its input in fuzz/artifacts/<target>/ and stops the script.
# Needs nightly and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Sanitizers are off: Tern forbids unsafe code,
# so what the fuzzer looks for is panics, hangs and runaway memory, which
# libFuzzer catches without them (-rss_limit_mb, -timeout).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS="${RUNS:-10000000}"
MAX_TIME="${MAX_TIME:-0}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p corpus logs
cargo +nightly fuzz build -s none
printf '%-16s %12s %9s %10s %8s %8s %s\n' target executions seconds exec/s cov features corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  start=$(date +%s)
  log="logs/$t.log"
  if ! cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -runs="$RUNS" -max_total_time="$MAX_TIME" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    echo "$t: FAILED, see fuzz/$log (the crashing input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  secs=$(( $(date +%s) - start ))
  done_runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  files=$(find "corpus/$t" -type f | wc -l)
  rate=$(( done_runs / (secs > 0 ? secs : 1) ))
  printf '%-16s %12s %9s %10s %8s %8s %s\n' "$t" "$done_runs" "$secs" "$rate" "$cov" "$ft" "$files"
done
