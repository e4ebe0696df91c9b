#!/usr/bin/env bash
# Installs what the tests need: Chromium and its WebDriver (browser tests,
# tests/browser_e2e.rs), Janus (the comparison target, tests/loadtest.rs and
# tests/janus/compare.sh), curl, and iproute2 (network namespaces).
# Idempotent: installs only what is missing, never prompts. Needs root (or sudo).
set -euo pipefail

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
