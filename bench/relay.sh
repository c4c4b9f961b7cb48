#!/usr/bin/env bash
# The router's media relay beside rtpengine (Debian's rtpengine-daemon, userspace forwarding):
# CPU per relayed call-second for plain PCMU relay (both) and Opus <-> PCMU transcoding (ours).
# Installs rtpengine-daemon when missing. A benchmark, not a test.
#
#   bench/relay.sh [--calls 100] [--seconds 20]
set -euo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/scripts/lib.sh"
cd "$SB_ROOT"
apt_install rtpengine-daemon
# The package's own service (when systemd runs it) is not ours: the bench starts its own
# rtpengine on 127.0.0.1 with the kernel module off.
cargo bench --locked -p switchboard-router --bench relay -- "$@"
