#!/usr/bin/env bash
# Every cargo-deny check, advisories included (deny.toml says what is allowed). The advisories
# check fetches the RustSec database from GitHub, so run this where GitHub is reachable; CI
# (scripts/test.sh) runs the other three, which need only crates.io.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
cargo deny check
