#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a short time (FUZZ_SECONDS, default 20) on a
# scratch copy of its committed corpus. Works on stable Rust: the sanitizer-coverage flags are
# plain -C flags, and --target keeps them off build scripts. A crash fails the run and leaves
# the crashing input in artifacts/fuzz/. With --build-only it builds every target and runs none
# (scripts/side-builds.sh builds them while the Rust tests run).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
BUILD_ONLY=false
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=true
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
TARGET_DIR="${CARGO_TARGET_DIR:-$SB_ROOT/target}/fuzz"
mkdir -p artifacts/fuzz

for crate in fuzz/*/; do
    [ -f "$crate/Cargo.toml" ] || continue
    if $BUILD_ONLY; then
        say "fuzz ${crate}: building every target"
        cargo build --locked --release --quiet --manifest-path "$crate/Cargo.toml" \
            --target "$TRIPLE" --target-dir "$TARGET_DIR" --bins
        continue
    fi
    for src in "$crate"fuzz_targets/*.rs; do
        name="$(basename "$src" .rs)"
        say "fuzz ${crate}${name}: building"
        cargo build --locked --release --quiet --manifest-path "$crate/Cargo.toml" \
            --target "$TRIPLE" --target-dir "$TARGET_DIR" --bin "$name"
        scratch="$(mktemp -d)"
        if [ -d "$crate/corpus/$name" ]; then cp -r "$crate/corpus/$name/." "$scratch/"; fi
        say "fuzz ${crate}${name}: ${SECONDS_PER_TARGET} s"
        "$TARGET_DIR/$TRIPLE/release/$name" -max_total_time="$SECONDS_PER_TARGET" \
            -artifact_prefix="artifacts/fuzz/${name}-" "$scratch" 2>&1 | tail -n 1
        rm -rf "$scratch"
    done
done
