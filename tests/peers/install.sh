#!/usr/bin/env bash
# Installs the real programs Switchboard's tests run against (ARCHITECTURE.md, "Real peers in
# tests"). Idempotent: installs only what is missing. Run by scripts/test.sh; safe to run by hand.
set -euo pipefail
# shellcheck source=../../scripts/lib.sh
source "$(cd "$(dirname "$0")/../.." && pwd)/scripts/lib.sh"

# Debian 12 packages: Kamailio (registrar/proxy; its TLS module plays Microsoft's Direct Routing
# proxy, tests/peers/teams), baresip (SIP phone), SIPp (scenarios and
# load), PulseAudio (null sink for cpal), sox (tone files), iproute2 (netns + tc netem for
# impairment tests), gnome-keyring on a private D-Bus session bus with libsecret's secret-tool
# (the token cache's key in a real Secret Service), dunst (a notification server: the window's
# notice of a ringing call) watched with dbus-monitor, WebKitWebDriver and Xvfb (the desktop
# window tests), python3-xlib (closing the window as a window manager does, tests/e2e/x11.py)
# and python3-dbus (the tray's menu on the bus, tests/e2e/dbusmenu.py).
PEER_PACKAGES=(kamailio kamailio-extra-modules kamailio-tls-modules openssl baresip sip-tester pulseaudio pulseaudio-utils
    libasound2-plugins sox iproute2 dbus-daemon dbus-session-bus-common gnome-keyring
    libsecret-tools dunst dbus-bin python3-xlib python3-dbus
    "${SB_TEST_PACKAGES[@]}")
apt_install "${PEER_PACKAGES[@]}"

# Debian starts Kamailio as a service on install; the tests run their own on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
    as_root systemctl stop kamailio || true
fi

# tauri-driver (the window tests' WebDriver) and cargo-deny: cargo installs, CPU-bound for a few
# minutes on a fresh machine. With --no-cargo-tools they are left to scripts/side-builds.sh,
# which scripts/test.sh runs while the Rust tests wait on their timers.
if [ "${1:-}" != "--no-cargo-tools" ]; then
    install_cargo_tools
fi

# oidc-provider (npm): an OpenID-certified identity provider for the sign-in tests.
# Pinned to 8.x: 9.x requires Node.js 22, and Debian 12 machines here have Node.js 20.
npm_ci "$SB_ROOT/tests/peers/oidc-provider"
(cd "$SB_ROOT/tests/peers/oidc-provider" && node -e "import('oidc-provider').catch((e) => { console.error(e); process.exit(1); })") \
    || die "oidc-provider did not install correctly in tests/peers/oidc-provider"
# aioice (PyPI): a full ICE agent (RFC 8445) playing the Teams client against the router's
# ICE-lite media bypass (tests/peers/ice). Pinned; in a venv beside its script.
ice_venv="$SB_ROOT/tests/peers/ice/.venv"
if [ ! -x "$ice_venv/bin/python" ] || ! "$ice_venv/bin/python" -c 'import aioice' 2>/dev/null; then
    say "installing aioice in $ice_venv"
    python3 -m venv "$ice_venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$ice_venv"; }
    "$ice_venv/bin/pip" install --quiet --disable-pip-version-check 'aioice==0.13.0' 'ifaddr==0.2.0' 'dnspython==2.9.2'
fi
say "test peers ready"
