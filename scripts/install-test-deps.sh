#!/usr/bin/env bash
# Installs what the tests need: Chromium and its WebDriver (browser tests,
# tests/browser_e2e.rs), Janus (the comparison target, tests/loadtest.rs and
# tests/janus/compare.sh), curl, iproute2 (network namespaces), and aiortc
# (tests/interop_aiortc.rs) in a Python venv under target/.
# Idempotent: installs only what is missing, never prompts. Needs root (or
# sudo) for the system packages; the venv needs only python3.
set -euo pipefail

# aiortc (Python WebRTC) and websockets for tests/interop/aiortc_listener.py,
# in a venv the test finds at target/aiortc-venv (TERN_AIORTC_VENV moves it;
# the test then needs TERN_AIORTC_PYTHON=$TERN_AIORTC_VENV/bin/python).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TERN_AIORTC_VENV:-$repo/target/aiortc-venv}"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import aiortc, websockets' 2>/dev/null; then
  echo "install-test-deps: aiortc present ($venv)"
elif command -v python3 >/dev/null 2>&1; then
  echo "install-test-deps: installing aiortc and websockets into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check 'aiortc>=1.9,<2' 'websockets>=13'
  "$venv/bin/python" -c 'import aiortc, websockets'
else
  echo "install-test-deps: no python3: tests/interop_aiortc.rs will be skipped" >&2
fi

# package -> a file it provides
declare -A provides=(
  [chromium]=/usr/lib/chromium/chromium
  [chromium-driver]=/usr/bin/chromedriver
  [curl]=/usr/bin/curl
  [iproute2]=/usr/sbin/ip
  [janus]=/usr/bin/janus
)

missing=()
for pkg in "${!provides[@]}"; do
  if [[ ! -x "${provides[$pkg]}" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-test-deps: everything present"
  exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "install-test-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q "${missing[@]}"

for pkg in "${missing[@]}"; do
  if [[ ! -x "${provides[$pkg]}" ]]; then
    echo "install-test-deps: $pkg installed but ${provides[$pkg]} is missing" >&2
    exit 1
  fi
done
echo "install-test-deps: done"
