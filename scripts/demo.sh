#!/usr/bin/env bash
# The README's run command: installs what is missing, builds, starts a local routing service
# (demo data under ~/.local/share/switchboard/demo) and opens the desktop app connected to it.
# Closing the window stops the router again.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
# shellcheck source=demo-teams.sh
source "$(cd "$(dirname "$0")" && pwd)/demo-teams.sh"
cd "$SB_ROOT"

PORT="${SWITCHBOARD_DEMO_PORT:-7700}"
# The simulated Microsoft 365 tenant the app signs in to (crates/agent: account.rs SIM_BASE_URL).
SIM_PORT=7710
# Its tenant and the app's client id (crates/tenant-sim: DEMO_TENANT_ID, DEMO_CLIENT_ID).
SIM_TENANT=5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0
SIM_CLIENT=8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20
DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/switchboard/demo"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    die "no display: run this from a desktop session (or on a virtual screen: xvfb-run -a $0)"
fi

check_toolchains
apt_install "${SB_BUILD_PACKAGES[@]}"
# Settings → Links makes the app the one for tel: and sip: links through xdg-mime.
apt_install xdg-utils
# The simulated Teams side (scripts/demo-teams.sh): Kamailio with TLS, a baresip Teams user.
apt_install kamailio kamailio-tls-modules baresip openssl
# Debian starts Kamailio as a service on install; the demo runs its own on its own ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
    as_root systemctl stop kamailio || true
fi
build_ui
bash scripts/make-prompts.sh
say "building the router and the desktop app"
# The workspace's programs. SB_BUILD_ALL_TARGETS=1 (scripts/test.sh sets it for the demo test)
# builds as the tests did, test targets too: cargo unifies dependency features over what it
# builds, and the tests' dev-dependencies add some, so a build of the programs alone after the
# tests would compile about forty crates again (~100 s on two cores) for nothing.
cargo build --locked --workspace --bins ${SB_BUILD_ALL_TARGETS:+--all-targets}
BIN="$(cargo_bin_dir)"

ROUTER_URL="http://127.0.0.1:$PORT"
SIM_URL="http://127.0.0.1:$SIM_PORT"
ROUTER_PID=""
SIM_PID=""
cleanup() {
    teams_demo_stop
    # The router first: it removes its Graph subscriptions from the tenant as it stops.
    if [ -n "$ROUTER_PID" ] && kill -0 "$ROUTER_PID" 2>/dev/null; then
        say "stopping the router"
        kill -TERM "$ROUTER_PID" 2>/dev/null || true
        wait "$ROUTER_PID" 2>/dev/null || true
    fi
    if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
        say "stopping the simulated tenant"
        kill -INT "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# wait_until_up URL PID WHAT LOG — waits up to 10 s for URL to answer while PID runs.
wait_until_up() {
    for _ in $(seq 1 100); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || die "$3 stopped at start; see $4"
        sleep 0.1
    done
    die "$3 did not answer at $1 within 10 s; see $4"
}

if curl -fsS "$SIM_URL/_sim/info" >/dev/null 2>&1; then
    say "a simulated tenant already answers on $SIM_URL; using it"
else
    mkdir -p "$DATA_DIR"
    say "starting the simulated Microsoft 365 tenant on $SIM_URL (sign in as AdeleV@contoso.example, password: switchboard; log: $DATA_DIR/tenant-sim.log)"
    "$BIN/switchboard-tenant-sim" --listen "127.0.0.1:$SIM_PORT" >>"$DATA_DIR/tenant-sim.log" 2>&1 &
    SIM_PID=$!
    wait_until_up "$SIM_URL/_sim/info" "$SIM_PID" "the simulated tenant" "$DATA_DIR/tenant-sim.log"
fi

# The router follows Teams presence in the simulated tenant for the app (webhooks from the
# tenant to the router), as it would with Microsoft Graph: its Graph service account (a demo
# user) is signed in by device code, the code entered here on the tenant's page.
SERVICE_ACCOUNT="NestorW@contoso.example"
mkdir -p "$DATA_DIR"
cat >"$DATA_DIR/router.toml" <<TOML
[presence]
enabled = true
authority = "$SIM_URL/$SIM_TENANT/v2.0"
client_id = "$SIM_CLIENT"
graph_url = "$SIM_URL/v1.0"
notification_url = "$ROUTER_URL/v1/graph/notifications"

TOML
# The demo contact center (SIP on 127.0.0.1:7760, Contoso's number +18005550100, its attendant,
# queues and agents): crates/router/demo.toml.
cat "$SB_ROOT/crates/router/demo.toml" >>"$DATA_DIR/router.toml"
say "starting the simulated Teams side: a Direct Routing proxy and Megan Bowen in Teams (logs: $DATA_DIR/teams)"
if teams_demo_start "$DATA_DIR/teams" "$SIM_URL" "$SIM_TENANT"; then
    # Megan, the escalations expert, has no Switchboard phone: she is rung at her Teams number.
    sed -i "s/^upn = \"MeganB@contoso.example\"$/&\nteams_number = \"$TEAMS_MEGAN_NUMBER\"/" "$DATA_DIR/router.toml"
    cat "$DATA_DIR/teams/router-teams.toml" >>"$DATA_DIR/router.toml"
else
    say "the demo goes on without the Teams side"
fi
ROUTER=("$BIN/switchboard-router" --config "$DATA_DIR/router.toml" --data-dir "$DATA_DIR")

if curl -fsS "$ROUTER_URL/v1/health" >/dev/null 2>&1; then
    say "a router already answers on $ROUTER_URL; using it"
else
    if [ -n "$SIM_PID" ] || [ ! -f "$DATA_DIR/graph-token-cache.bin" ]; then
        # A new simulated tenant knows no earlier sign-in.
        rm -f "$DATA_DIR/graph-token-cache.bin"
        say "signing in the router's Graph service account ($SERVICE_ACCOUNT) to the simulated tenant"
        "${ROUTER[@]}" graph-login >"$DATA_DIR/graph-login.log" 2>&1 &
        LOGIN_PID=$!
        CODE=""
        for _ in $(seq 1 100); do
            CODE="$(grep -o 'enter the code [A-Z0-9-]*' "$DATA_DIR/graph-login.log" 2>/dev/null | awk '{print $4}' || true)"
            [ -n "$CODE" ] && break
            kill -0 "$LOGIN_PID" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$CODE" ] || die "the router's graph-login showed no code; see $DATA_DIR/graph-login.log"
        curl -fsS -o /dev/null --data-urlencode "otc=$CODE" --data-urlencode "login=$SERVICE_ACCOUNT" \
            --data-urlencode "passwd=switchboard" "$SIM_URL/devicelogin" \
            || die "the simulated tenant refused the device code; see $DATA_DIR/tenant-sim.log"
        wait "$LOGIN_PID" || die "the router's graph-login failed; see $DATA_DIR/graph-login.log"
    fi
    say "starting the router on $ROUTER_URL (data: $DATA_DIR, log: $DATA_DIR/router.log)"
    "${ROUTER[@]}" --listen "127.0.0.1:$PORT" >>"$DATA_DIR/router.log" 2>&1 &
    ROUTER_PID=$!
    wait_until_up "$ROUTER_URL/v1/health" "$ROUTER_PID" "the router" "$DATA_DIR/router.log"
fi

say "the demo contact center takes calls at sip:+18005550100@127.0.0.1:7760 (attendant: 1 billing, 2 orders, 0 general)"
say "  the app is Adele's phone once you sign in as AdeleV@contoso.example: choose Ready, and billing calls (key 1) ring in the window"
say "  an orders agent's phone (key 2):  $BIN/switchboard-agent work --router $ROUTER_URL --as DiegoS@contoso.example --ready"
say "  a test call:       $BIN/switchboard-agent call sip:+18005550100@127.0.0.1:7760 --dtmf 1 --hangup-after 20   (--dtmf 2: orders)"
say "  the router follows Teams presence: agents Presenting, in a meeting or a call, or on Do not disturb get no queue calls"
if [ -n "$TEAMS_KAMAILIO_PID" ]; then
    say "  Megan Bowen (escalations) is in Teams, behind the simulated Direct Routing proxy: a consult or transfer"
    say "  to the escalations experts rings her there ($TEAMS_MEGAN_NUMBER; she answers with a tone)"
fi
say "opening Switchboard"
# Demo settings are kept apart from a real install's; the demo's tenant.toml names the
# simulated tenant (without one the app signs in nowhere).
mkdir -p "$DATA_DIR/desktop"
cat >"$DATA_DIR/desktop/tenant.toml" <<TOML
authority = "$SIM_URL/$SIM_TENANT/v2.0"
client_id = "$SIM_CLIENT"
router_scope = "api://switchboard-router/access_as_user"
read_skills = true
TOML
# The demo ends when its window closes (its router and tenant stop with it), so a first demo
# starts with closing to the tray off; Settings turns it on.
[ -f "$DATA_DIR/desktop/settings.toml" ] ||
    printf 'router_url = "%s"\nclose_to_tray = false\n' "$ROUTER_URL" >"$DATA_DIR/desktop/settings.toml"
SWITCHBOARD_CONFIG_DIR="$DATA_DIR/desktop" SWITCHBOARD_ROUTER_URL="$ROUTER_URL" "$BIN/switchboard-desktop"
