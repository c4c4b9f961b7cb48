#!/usr/bin/env bash
# Regenerates the router's prompts (English and Simplified Chinese, spoken by espeak-ng from
# crates/router/prompts/prompts.tsv) and its music on hold; installs espeak-ng when missing.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"
apt_install espeak-ng
python3 scripts/make-prompts.py
