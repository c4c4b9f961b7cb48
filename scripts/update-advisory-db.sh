#!/usr/bin/env bash
# Replaces the RustSec advisory-database snapshot in third_party/advisory-db with the newest
# one from GitHub (run where GitHub is reachable, then commit the result). scripts/deny.sh
# checks our dependencies against the snapshot.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git clone -q --depth 1 https://github.com/rustsec/advisory-db "$tmp/db"
commit="$(git -C "$tmp/db" rev-parse HEAD)"
date="$(git -C "$tmp/db" show -s --format=%cI HEAD)"
rm -rf third_party/advisory-db
mkdir -p third_party/advisory-db
git -C "$tmp/db" archive HEAD crates rust LICENSE.txt LICENSES support.toml \
    | tar -x -C third_party/advisory-db
cat > third_party/advisory-db/SNAPSHOT <<SNAP
source: https://github.com/rustsec/advisory-db
commit: $commit
date: $date
taken: $(date -u +%F) (crates/, rust/, LICENSE.txt, LICENSES/, support.toml)
refresh: scripts/update-advisory-db.sh (needs GitHub)
SNAP
say "advisory-db snapshot $commit of $date in third_party/advisory-db"
