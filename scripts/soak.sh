#!/usr/bin/env bash
# The soak run of issue 22, not in CI: a focus and three relayed bridges
# under continuous churn for SOAK_SECS (default 1800), then everyone leaves;
# prints each bridge's descriptors, resident memory, tasks, endpoints and
# conferences every minute and at the end, and fails if they do not return
# to their baseline (tests/soak.rs). Output goes to target/soak-<date>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SOAK_SECS:-1800}"
log="target/soak-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "soak for ${secs} s; log: ${log}"
# cargo test, not nextest: nextest's profile ends real-process tests after
# four minutes.
TERN_SOAK_SECS="$secs" cargo test -p tern --test soak -- --nocapture 2>&1 | tee "$log"
