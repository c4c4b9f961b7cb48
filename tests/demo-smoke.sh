#!/usr/bin/env bash
# The README's run command (scripts/demo.sh), run as a person runs it, on the virtual screen
# this script is started on (xvfb-run): the demo starts the simulated tenant, the simulated
# Teams side and the router, and opens the window; the Teams trunk comes up; the commands it
# prints work (a headless agent goes Ready, a test call through the attendant's key 2 reaches
# them and is recorded; a second call, transferred by that agent to the escalations experts,
# rings Megan in Teams, who answers, is heard by the caller and shows Busy); closing the window stops everything it
# started.
#
# It uses the demo's own ports (7700, 7710, 7760, 7761, 7771–7774 on 127.0.0.1) and refuses
# to run while something answers on them. Its demo data lives in a temporary folder.
set -euo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/scripts/lib.sh"
cd "$SB_ROOT"

[ -n "${DISPLAY:-}" ] || die "no display: run this under xvfb-run -a"
ROUTER_URL=http://127.0.0.1:7700
for url in "$ROUTER_URL/v1/health" http://127.0.0.1:7710/_sim/info; do
    if curl -fsS -m 2 "$url" >/dev/null 2>&1; then
        die "something already answers at $url: stop it (another demo?) before this test"
    fi
done

# The Debian Python, which has python3-xlib (tests/peers/install.sh), for the display.
XPY=python3
[ -x /usr/bin/python3 ] && XPY=/usr/bin/python3
work="$(mktemp -d)"
log="$work/demo.log"
demo_pid=""
agent_pid=""
ok=false
stop_agent() {
    [ -n "$agent_pid" ] || return 0
    # Ctrl-C signs the agent off; one that does not stop is killed.
    kill -INT "$agent_pid" 2>/dev/null || true
    local i
    for i in $(seq 1 20); do
        kill -0 "$agent_pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
    agent_pid=""
}
finish() {
    local status=$?
    # Everything here runs, whatever fails: the logs are what a failed run leaves.
    set +e
    stop_agent
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        # The demo waits for its window: closing the app lets it stop what it started.
        pkill -TERM -g "$demo_pid" -f "/switchboard-desktop" 2>/dev/null
        local i
        for i in $(seq 1 60); do
            kill -0 "$demo_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$demo_pid" 2>/dev/null
        wait "$demo_pid" 2>/dev/null
    fi
    if ! $ok; then
        printf '\n--- the demo printed:\n' >&2
        tail -n 60 "$log" >&2 || true
        local f
        for f in router.log tenant-sim.log teams/teams-proxy.log; do
            [ -f "$work/data/switchboard/demo/$f" ] || continue
            printf '\n--- %s (end):\n' "$f" >&2
            tail -n 30 "$work/data/switchboard/demo/$f" >&2
        done
        [ -f "$work/agent.log" ] && { printf '\n--- the agent:\n' >&2; tail -n 30 "$work/agent.log" >&2; }
        [ -f "$work/call2.log" ] && { printf '\n--- the second caller:\n' >&2; tail -n 30 "$work/call2.log" >&2; }
    fi
    rm -rf "$work"
    exit "$status"
}
trap finish EXIT
fail() { printf '\033[1;31mdemo test failed:\033[0m %s\n' "$*" >&2; exit 1; }

# waits SECONDS WHAT COMMAND... — runs COMMAND every half second until it succeeds, while the
# demo runs.
waits() {
    local seconds="$1" what="$2"
    shift 2
    local i
    for i in $(seq 1 $((seconds * 2))); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$demo_pid" 2>/dev/null || fail "the demo stopped while waiting for $what"
        sleep 0.5
    done
    fail "$what: not within $seconds s"
}

say "demo test: starting scripts/demo.sh (data in $work)"
# In a process group of its own, so that nothing it started outlives a failed test.
XDG_DATA_HOME="$work/data" setsid bash scripts/demo.sh >"$log" 2>&1 </dev/null &
demo_pid=$!
# It installs what is missing and builds first: that may take a while on a fresh machine.
waits 1800 "the demo opening the window" grep -q "opening Switchboard" "$log"
waits 60 "the window on the screen" sh -c "$XPY tests/e2e/x11.py state Switchboard | grep -qx viewable"
curl -fsS "$ROUTER_URL/v1/health" >/dev/null || fail "the router does not answer"
grep -q "the demo goes on without the Teams side" "$log" && fail "the simulated Teams side did not start"

# The Teams trunk: its first OPTIONS go a second after the router starts.
teams_up() {
    curl -fsS "$ROUTER_URL/v1/trunks" | python3 -c '
import json, sys
trunks = json.load(sys.stdin)
sys.exit(0 if any(t.get("direct_routing") and t["health"] == "up" for t in trunks) else 1)'
}
waits 30 "the Teams trunk up" teams_up

# The instructions the demo printed, as printed (with files for the audio).
BIN="$(cargo_bin_dir)"
grep -qF "$BIN/switchboard-agent work --router $ROUTER_URL --as DiegoS@contoso.example --ready" "$log" ||
    fail "the demo did not print the agent command this test runs"
grep -qF "$BIN/switchboard-agent call sip:+18005550100@127.0.0.1:7760 --dtmf 1" "$log" ||
    fail "the demo did not print the test call this test makes"
tone="$(ls crates/router/prompts/en/*.wav | head -n 1)"
"$BIN/switchboard-agent" work --router "$ROUTER_URL" --as DiegoS@contoso.example --ready \
    --play "$tone" --record "$work/diego.wav" >"$work/agent.log" 2>&1 &
agent_pid=$!
# diego_is STATE — whether the router has Diego in STATE.
diego_is() {
    curl -fsS "$ROUTER_URL/v1/agents" | STATE="$1" python3 -c '
import json, os, sys
agents = json.load(sys.stdin)
sys.exit(0 if any(a["status"]["agent"].lower() == "diegos@contoso.example" and a["status"]["state"] == os.environ["STATE"] for a in agents) else 1)'
}
waits 30 "Diego Ready" diego_is ready
say "demo test: a test call to +18005550100, key 2 (orders)"
"$BIN/switchboard-agent" --json call sip:+18005550100@127.0.0.1:7760 --dtmf 2 --hangup-after 12 \
    --play "$tone" --record "$work/caller.wav" >"$work/call.log" 2>&1 ||
    fail "the test call failed: $(tail -n 5 "$work/call.log")"
grep -q '"event":"established"' "$work/call.log" || fail "the test call was not answered: $(cat "$work/call.log")"
answered_by_diego() {
    curl -fsS "$ROUTER_URL/v1/calls" | python3 -c '
import json, sys
calls = json.load(sys.stdin)
sys.exit(0 if any((c.get("agent") or "").lower() == "diegos@contoso.example" and c.get("queue") == "orders" and c.get("answered_at") for c in calls) else 1)'
}
waits 20 "the call recorded as answered by Diego, from the orders queue" answered_by_diego

# What the demo says of Megan: a transfer to the escalations experts rings her in Teams. A
# second orders call, which Diego's desk transfers there (the router's API, as the window's
# picker does); Megan's Teams phone answers, and the simulated Teams side makes her Busy.
grep -qF "to the escalations experts rings her there" "$log" ||
    fail "the demo did not say that Megan is in Teams"
teams_log="$work/data/switchboard/demo/teams/teams-proxy.log"
say "demo test: a second call, transferred by Diego to the escalations experts (Megan, in Teams)"
"$BIN/switchboard-agent" --json call sip:+18005550100@127.0.0.1:7760 --dtmf 2 --hangup-after 25 \
    --play "$tone" --record "$work/caller2.wav" >"$work/call2.log" 2>&1 &
caller2_pid=$!
waits 20 "Diego on the second call" diego_is on_call
curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"agent":"DiegoS@contoso.example","target":"escalations"}' \
    "$ROUTER_URL/v1/agents/me/transfer" >"$work/transfer.json" 2>&1 ||
    fail "the router refused Diego's transfer to the escalations experts: $(cat "$work/transfer.json")"
waits 20 "the INVITE to Megan in Teams" grep -q "teams-proxy: invite-to-teams .*user=+14255550106" "$teams_log"
waits 20 "Megan Busy in Teams while she talks with the caller" \
    grep -q "teams-proxy: presence user=+14255550106 .* Busy/InACall" "$teams_log"
wait "$caller2_pid" || fail "the second call failed: $(tail -n 5 "$work/call2.log")"
# The newest record: a blind transfer by Diego to the escalations experts, Megan chosen.
transferred_to_megan() {
    curl -fsS "$ROUTER_URL/v1/calls" >"$work/calls.json" && python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))[0]
sys.exit(0 if any(t["by"].lower() == "diegos@contoso.example" and t["to"].split("@")[0] == "escalations" and t["kind"] == "blind" for t in c.get("transfers") or [])
    and any("expert meganb@contoso.example" in s.lower() for s in c.get("steps") or []) else 1)' "$work/calls.json"
}
for _ in $(seq 1 40); do
    transferred_to_megan && break
    sleep 0.5
done
transferred_to_megan ||
    fail "the second call is not recorded as transferred to Megan by Diego: $(head -c 3000 "$work/calls.json")"
# The caller heard Megan: her phone answers with a 523 Hz tone (scripts/demo-teams.sh), which
# holds most of the sound in most of the call's last 5 s (Goertzel, 50 ms blocks:
# tests/peers/tones.py).
heard_megan="$(python3 tests/peers/tones.py "$work/caller2.wav" 523 --last 100 --share 0.6 --min-rms 300)" ||
    fail "cannot read the second caller's recording"
[ "$heard_megan" -ge 60 ] ||
    fail "the caller heard Megan's 523 Hz in only $heard_megan of the call's last 100 blocks of 50 ms"
say "demo test: the caller heard Megan in Teams in $heard_megan of the call's last 100 blocks"
stop_agent

say "demo test: closing the window"
$XPY tests/e2e/x11.py close Switchboard || fail "no window to close"
for _ in $(seq 1 60); do
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$demo_pid" 2>/dev/null && fail "the demo still runs 30 s after its window closed"
status=0
wait "$demo_pid" || status=$?
demo_pid=""
[ "$status" = 0 ] || fail "the demo ended with status $status"
for port in 7700 7710 7760 7761 7771 7772 7773 7774; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "something still listens on 127.0.0.1:$port after the demo ended"
    fi
done
ok=true
say "demo test: passed"
