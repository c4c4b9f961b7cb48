#!/usr/bin/env bash
# Every cargo-deny check that deny.toml describes: advisories, licences, bans and sources.
# By default the advisories come from the RustSec database snapshot in third_party/advisory-db
# (CI machines cannot reach GitHub; the snapshot's date is in its SNAPSHOT file, refreshed with
# scripts/update-advisory-db.sh). With --fetch, cargo-deny fetches the live database instead.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2

if [ "${1:-}" = "--fetch" ]; then
    exec cargo deny check
fi

# cargo-deny 0.20 opens the default database from <db-path>/advisory-db-<hash of its URL> and
# reads its HEAD commit's date, so the snapshot becomes a one-commit git repository there,
# dated as the snapshot is.
dbs="${CARGO_TARGET_DIR:-$SB_ROOT/target}/advisory-dbs"
repo="$dbs/advisory-db-3157b0e258782691"
snapshot="third_party/advisory-db"
date="$(sed -n 's/^date: //p' "$snapshot/SNAPSHOT")"
if ! cmp -s "$snapshot/SNAPSHOT" "$repo/SNAPSHOT" 2>/dev/null; then
    rm -rf "$repo"
    mkdir -p "$repo"
    cp -r "$snapshot/." "$repo/"
    (
        cd "$repo"
        git init -q
        git add -A
        GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
            git -c user.name=switchboard -c user.email=switchboard@localhost \
            commit -q -m "RustSec advisory-db snapshot"
    )
fi
say "cargo deny: advisories (RustSec snapshot of $date), licences, bans, sources"
# --offline reads every crate of the lock file from cargo's cache, those of other platforms
# too (wasm, Android), which a build on this machine never downloads: fetch them first.
cargo fetch --locked --quiet
SB_ADVISORY_DBS="$dbs" cargo deny --offline --log-level error check
