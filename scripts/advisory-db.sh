#!/usr/bin/env bash
# The RustSec advisory database for `cargo deny check advisories` where
# GitHub (its home) cannot be reached: CI reaches only the package
# registries. scripts/rustsec-advisory-db.tar.gz is a snapshot of
# github.com/rustsec/advisory-db (CC0), without its git history; this
# unpacks it where deny.toml's `db-path` points, as the git checkout
# cargo-deny expects (it reads the head commit's date), dated as the
# snapshot's last commit, so cargo-deny can check offline:
#
#   scripts/advisory-db.sh unpack && cargo deny --offline check advisories
#
# Where GitHub is reachable, refresh the snapshot (and commit it):
#
#   scripts/advisory-db.sh refresh
#
# A snapshot only knows the advisories published before its date
# (scripts/rustsec-advisory-db.date); CI checks against that, and
# SECURITY.md says so.
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot=scripts/rustsec-advisory-db.tar.gz
stamp=scripts/rustsec-advisory-db.date
# cargo-deny names the checkout after a hash of the database URL
# (deny.toml: db-urls).
db=target/advisory-db/advisory-db-3157b0e258782691

case "${1:-}" in
  unpack)
    want="$(sha256sum "$snapshot" | cut -d' ' -f1)"
    if [ -f "$db/.snapshot-sha256" ] && [ "$(cat "$db/.snapshot-sha256")" = "$want" ]; then
      exit 0
    fi
    rm -rf "$db"
    mkdir -p "$db"
    tar -xzf "$snapshot" -C "$db"
    date="$(cat "$stamp")"
    git -C "$db" init -q
    git -C "$db" add -A
    GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
      git -C "$db" -c user.name=snapshot -c user.email=snapshot@invalid \
      commit -q -m "RustSec advisory-db snapshot of $date"
    echo "$want" >"$db/.snapshot-sha256"
    ;;
  refresh)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    git clone -q --depth 1 https://github.com/rustsec/advisory-db "$tmp/db"
    git -C "$tmp/db" log -1 --format=%cI >"$stamp"
    tar -C "$tmp/db" --exclude=.git --exclude=.github --sort=name --owner=0 --group=0 \
      --mtime="$(cat "$stamp")" -czf "$snapshot" .
    echo "snapshot of $(cat "$stamp") in $snapshot"
    ;;
  *)
    echo "usage: $0 unpack|refresh" >&2
    exit 2
    ;;
esac
