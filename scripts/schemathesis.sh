#!/usr/bin/env bash
# The router's API against its own OpenAPI document: Schemathesis (PyPI, pinned, in a virtual
# environment under target/) runs every check, stateful phase included, against a live router on
# 127.0.0.1 (port chosen by the router) and must find nothing. Run by scripts/test.sh.
#
# /v1/events is left out: it is a WebSocket (documented with its upgrade headers), which an HTTP
# fuzzer cannot speak; crates/router/tests/{auth,presence}.rs and the agent's router_link tests
# hold it to its contract.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

SCHEMATHESIS_VERSION=4.32.5
VENV="$SB_ROOT/target/schemathesis-venv"
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/pip" show schemathesis 2>/dev/null | grep -q "^Version: $SCHEMATHESIS_VERSION$"; then
    say "installing Schemathesis $SCHEMATHESIS_VERSION (PyPI) into $VENV"
    # Debian's own python3 needs python3-venv for this; a pyenv or python.org build has it.
    python3 -c "import ensurepip, venv" 2>/dev/null || apt_install python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN="$(cargo_bin_dir)"
[ -x "$BIN/switchboard-router" ] || cargo build --locked -p switchboard-router
WORK="$(mktemp -d)"
chmod 700 "$WORK"
ROUTER_PID=""
cleanup() {
    if [ -n "$ROUTER_PID" ]; then
        kill -TERM "$ROUTER_PID" 2>/dev/null || true
        wait "$ROUTER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/switchboard-router" --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/router.log" 2>&1 &
ROUTER_PID=$!
URL=""
for _ in $(seq 1 100); do
    URL="$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/router.log")"
    [ -n "$URL" ] && break
    kill -0 "$ROUTER_PID" 2>/dev/null || { cat "$WORK/router.log" >&2; die "the router stopped at start"; }
    sleep 0.1
done
[ -n "$URL" ] || die "the router did not say where it listens; see its log above"

say "Schemathesis against $URL/v1/openapi.json (all checks, every phase)"
(cd "$WORK" && "$VENV/bin/st" run "$URL/v1/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" \
    --exclude-path /v1/events \
    --workers 1 \
    --no-color) || { tail -n 50 "$WORK/router.log" >&2; die "Schemathesis found the router differing from its OpenAPI document (see above)"; }
