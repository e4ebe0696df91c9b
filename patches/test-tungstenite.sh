#!/usr/bin/env bash
# Run the vendored tungstenite's own unit tests (patches/README.md): copy the
# crate out of the workspace and test it against Tern's lock file. Its one
# dev dependency the unit tests use (env_logger, one call) is not in the lock
# file, so that call is dropped. Arguments filter the tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/tungstenite" "$work/tungstenite"
cd "$work/tungstenite"
sed -i 's/^        env_logger::init();$//' src/protocol/frame/mod.rs
# The TLS backends and url are optional and not in the lock file: dropped,
# with the features naming them.
python3 - <<'PY'
import re
s = open('Cargo.toml').read()
for dep in ['native-tls-crate', 'rustls', 'rustls-native-certs', 'rustls-pki-types',
            'webpki-roots', 'url']:
    # The section up to the next one (a value may hold a '[').
    s = re.sub(r'\n\[dependencies\.' + re.escape(dep) + r'\]\n(?:(?!\[)[^\n]*\n)*', '\n', s)
for f in ['__rustls-tls', 'native-tls', 'native-tls-vendored', 'rustls-tls-native-roots',
          'rustls-tls-webpki-roots', 'url']:
    s = re.sub(r'\n' + re.escape(f) + r' = \[[^\]]*\]', '', s)
s += '\n[workspace]\n'
open('Cargo.toml', 'w').write(s)
PY
cp "$here/../Cargo.lock" .
CARGO_TARGET_DIR="$here/../target/tungstenite-tests" cargo test --lib -- "$@"
