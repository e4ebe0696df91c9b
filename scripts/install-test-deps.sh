#!/usr/bin/env bash
# Installs what the tests need: Chromium and its WebDriver (browser tests,
# tests/browser_e2e.rs), coturn (tests/browser_networks.rs), Prometheus (a real
# scraper, tests/metrics_prometheus.rs), Janus (the comparison target, tests/loadtest.rs and
# tests/janus/compare.sh), curl, iproute2 (network namespaces), FFmpeg (the
# recordings' reader, record/tests/ffmpeg.rs), and aiortc
# (tests/interop_aiortc.rs) in a Python venv under target/, and the whip-whep
# JavaScript library (tests/browser_whip.rs) under target/.
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

# A WHIP and WHEP client library written by others (medooze's whip-whep,
# MIT, from npm) for tests/browser_whip.rs: Chromium pages publish and watch
# with it. Fetched as the registry's tarball and checked against its sha1.
# Needs curl, so it runs after the system packages.
fetch_whip_whep() {
  local dir="$repo/target/whip-whep"
  if [[ -f "$dir/package/whip.js" && -f "$dir/package/whep.js" ]]; then
    echo "install-test-deps: whip-whep present ($dir)"
    return
  fi
  echo "install-test-deps: fetching whip-whep 1.2.0 from npm into $dir"
  mkdir -p "$dir"
  curl -fsSL -o "$dir/whip-whep.tgz" https://registry.npmjs.org/whip-whep/-/whip-whep-1.2.0.tgz
  echo "6886f4a5004c7b8ef0247b0a7de07a845c523e19  $dir/whip-whep.tgz" | sha1sum -c --quiet
  tar -xzf "$dir/whip-whep.tgz" -C "$dir"
}

# package -> a file it provides
declare -A provides=(
  [chromium]=/usr/lib/chromium/chromium
  [chromium-driver]=/usr/bin/chromedriver
  [coturn]=/usr/bin/turnserver
  [curl]=/usr/bin/curl
  # tern-record's tests: ffprobe reads and ffmpeg decodes what it writes.
  [ffmpeg]=/usr/bin/ffprobe
  # The composite video's OpenH264 builds from C++ source (tern-mixer).
  [g++]=/usr/bin/g++
  [iproute2]=/usr/sbin/ip
  [janus]=/usr/bin/janus
  [prometheus]=/usr/bin/prometheus
  # tests/deploy_files.rs: systemd units, Kubernetes manifests (kubectl
  # kustomize renders them offline), their YAML read with PyYAML.
  [systemd]=/usr/bin/systemd-analyze
  [kubernetes-client]=/usr/bin/kubectl
  [python3-yaml]=/usr/lib/python3/dist-packages/yaml/__init__.py
)

missing=()
for pkg in "${!provides[@]}"; do
  if [[ ! -e "${provides[$pkg]}" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-test-deps: everything present"
  fetch_whip_whep
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
  if [[ ! -e "${provides[$pkg]}" ]]; then
    echo "install-test-deps: $pkg installed but ${provides[$pkg]} is missing" >&2
    exit 1
  fi
done
fetch_whip_whep
echo "install-test-deps: done"
