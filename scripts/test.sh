#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: installs what the
# tests need (Chromium, chromedriver, Janus, iproute2, curl), then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Every test in the workspace: unit, property, native-client and browser tests.
cargo nextest run --workspace --all-targets --profile ci "$@"
