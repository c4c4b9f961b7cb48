#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test — formatting and
# lints, Rust unit/integration/interop tests, the UI's unit tests, Schemathesis against the
# router's OpenAPI document, the end-to-end tests of the real desktop window under Xvfb, and
# the demo (the README's other command) started, used and closed as a person would.
# Exits non-zero on the first failing stage.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

check_toolchains
apt_install "${SB_BUILD_PACKAGES[@]}"
bash tests/peers/install.sh
bash scripts/make-prompts.sh

build_ui
say "UI unit tests (Vitest)"
(cd ui && npm test --silent)

say "cargo fmt --check"
cargo fmt --all -- --check

bash scripts/deny.sh

say "building the workspace"
cargo build --workspace --all-targets --locked

say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "Rust tests"
cargo test --workspace --locked --no-fail-fast

say "the router's API against its OpenAPI document (Schemathesis)"
bash scripts/schemathesis.sh

say "fuzz targets, briefly"
bash scripts/fuzz-smoke.sh

say "end-to-end: the real desktop window under Xvfb"
xvfb-run -a -s "-screen 0 1280x800x24" \
    cargo test --locked --workspace --test desktop_window --test desktop_account --test desktop_phone --test desktop_sip_account --test desktop_tray -- --ignored --test-threads=1

say "the README's run command: the demo, on a virtual screen"
xvfb-run -a -s "-screen 0 1280x800x24" bash tests/demo-smoke.sh

say "all tests passed"
