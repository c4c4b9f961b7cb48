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
bash tests/peers/install.sh --no-cargo-tools
bash scripts/make-prompts.sh

build_ui
say "UI unit tests (Vitest)"
(cd ui && npm test --silent)

say "cargo fmt --check"
cargo fmt --all -- --check

say "building the workspace"
cargo build --workspace --all-targets --locked

say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# While the Rust tests wait on their timers, the tools and targets needed only later build at the
# lowest CPU priority (scripts/side-builds.sh); its log is printed if it fails.
side_log="${CARGO_TARGET_DIR:-$SB_ROOT/target}/side-builds.log"
setsid -w nice -n 19 bash scripts/side-builds.sh >"$side_log" 2>&1 &
side=$!
trap 'kill -- -"$side" 2>/dev/null || true' EXIT

say "Rust tests (meanwhile the cargo tools and the fuzz targets build: $side_log)"
# The router's call tests wait on timers far more than they compute: they run four at a time,
# on four test threads (those with the simulated Teams proxy alone), and first, beside most of
# the side builds; then every other test target (each member's tests/*.rs), then the doc tests.
# Every group runs even when one before it failed. Each is selected under --workspace, so cargo
# resolves features for the whole workspace as the build did and compiles nothing again (one
# package selected alone recompiled 47 crates).
failed=()
SB_CALLS_AT_ONCE=4 cargo test --workspace --locked --test calls -- --test-threads=4 \
    || failed+=("the router's call tests")
tests=()
for t in $(find crates src-tauri tests/e2e -maxdepth 3 -path '*/tests/*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort -u); do
    [ "$t" = calls ] || tests+=(--test "$t")
done
cargo test --workspace --locked --no-fail-fast --lib --bins "${tests[@]}" || failed+=("the tests")
cargo test --workspace --locked --doc || failed+=("the doc tests")
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]} (the first FAILED line above names the test)"

if ! wait "$side"; then
    cat "$side_log" >&2
    die "building the cargo tools or the fuzz targets failed (scripts/side-builds.sh; its log is above)"
fi
trap - EXIT

bash scripts/deny.sh

say "the router's API against its OpenAPI document (Schemathesis)"
bash scripts/schemathesis.sh

say "fuzz targets, briefly"
bash scripts/fuzz-smoke.sh

say "end-to-end: the real desktop window under Xvfb"
xvfb-run -a -s "-screen 0 1280x800x24" \
    cargo test --locked --workspace --test desktop_window --test desktop_account --test desktop_phone --test desktop_sip_account --test desktop_tray -- --ignored --test-threads=1

say "the README's run command: the demo, on a virtual screen"
SB_BUILD_ALL_TARGETS=1 xvfb-run -a -s "-screen 0 1280x800x24" bash tests/demo-smoke.sh

say "all tests passed"
