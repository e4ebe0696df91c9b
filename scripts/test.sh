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
if ! cargo deny --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-deny"
  cargo install --locked cargo-deny
fi

# Supply chain (deny.toml): every dependency's licence is on the allow list,
# no wildcard versions, crates only from crates.io; and no dependency with a
# RustSec advisory, checked against the repository's snapshot of the
# database (CI cannot reach GitHub, its home; deny.toml says more).
bash scripts/advisory-db.sh unpack
cargo deny check licenses bans sources
cargo deny --offline check advisories

# Every test in the workspace: unit, property, native-client and browser tests.
# Browser tests write one line per failure here (tests/support/netns.rs); the
# reasons are repeated at the very end, where a truncated CI log still shows
# them (a browser test's own output runs to hundreds of lines).
failures=target/test-failures.log
mkdir -p target
rm -f "$failures"
status=0
# The vendored str0m's own unit tests (some are Tern's patches'); it is not
# a workspace member, so nextest does not see them (patches/README.md).
bash patches/test-str0m.sh --quiet || status=$?
# Likewise the vendored tungstenite's.
bash patches/test-tungstenite.sh --quiet || status=$?
cargo nextest run --workspace --all-targets --profile ci "$@" || status=$?
if [ -s "$failures" ]; then
  echo "== why the browser tests failed (full output above):"
  cat "$failures"
fi
exit "$status"
