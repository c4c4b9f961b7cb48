#!/usr/bin/env bash
# What the test run needs only later and can build while the Rust tests wait on their timers
# (ring-no-answer, wrap-up, announcements: two cores mostly idle for a quarter of an hour): the
# cargo tools (tauri-driver for the window tests, cargo-deny) and the fuzz targets. On a fresh
# machine that is several minutes of compiling taken off the run's length. scripts/test.sh runs it
# in the background at the lowest CPU priority (nice 19): the tests' real-time audio keeps the
# processors it asks for, and this takes what is left.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

install_cargo_tools
bash scripts/fuzz-smoke.sh --build-only
say "side builds done"
