#!/usr/bin/env bash
# Regenerates the UI's bundled Chinese font, ui/src/assets/fonts/noto-sans-sc-subset.woff2 (see
# ui/src/assets/fonts/LICENCE.md): a subset of Noto Sans CJK SC Regular with GB 2312's 3,755
# level-1 hanzi, CJK punctuation, fullwidth forms and every CJK character of the UI's sources.
#
# Run it after adding Chinese text that uses a character the font lacks: the UI's unit tests
# (ui/src/assets/fonts/font.test.ts, run by scripts/test.sh) fail and name the character.
#
# The source is Debian 12's fonts-noto-cjk package (pinned below by version and checksum): the
# installed file when the package is installed, else the package is downloaded with
# `apt-get download` and unpacked in a temporary folder (nothing is installed). fontTools and
# brotli come from PyPI, pinned, in a virtualenv under ~/.cache/switchboard. Deterministic: the
# same inputs give the same bytes, and the font is only rewritten when they change.
#
# Usage: bash scripts/make-cjk-font.sh
set -euo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

PACKAGE_VERSION="1:20220127+repack1-1"
TTC="usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
TTC_SHA256="b76b0433203017ca80401b2ee0dd69350349871c4b19d504c34dbdd80541690a"
FONT_NUMBER=2 # Noto Sans CJK SC in the collection (0 JP, 1 KR, 2 SC, 3 TC, 4 HK, ...)
FONTTOOLS="fonttools==4.68.0"
BROTLI="brotli==1.2.1"
OUT="ui/src/assets/fonts/noto-sans-sc-subset.woff2"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

source_font=""
if [ -f "/$TTC" ] && echo "$TTC_SHA256  /$TTC" | sha256sum --check --status; then
    source_font="/$TTC"
else
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: the source font comes from Debian 12's fonts-noto-cjk $PACKAGE_VERSION"
    say "downloading fonts-noto-cjk $PACKAGE_VERSION (about 57 MB; not installed)"
    (cd "$tmp" && apt-get download -q "fonts-noto-cjk=$PACKAGE_VERSION" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2) ||
        die "apt-get download fonts-noto-cjk=$PACKAGE_VERSION failed: run 'apt-get update' (Debian 12) and try again"
    dpkg-deb -x "$tmp"/fonts-noto-cjk_*.deb "$tmp/deb"
    source_font="$tmp/deb/$TTC"
    echo "$TTC_SHA256  $source_font" | sha256sum --check --status ||
        die "$TTC in fonts-noto-cjk $PACKAGE_VERSION does not have the expected checksum"
fi

venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/fonttools-${FONTTOOLS#*==}"
if [ ! -x "$venv/bin/python" ]; then
    say "installing $FONTTOOLS and $BROTLI in $venv"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$FONTTOOLS" "$BROTLI"
fi

say "subsetting Noto Sans CJK SC"
"$venv/bin/python" scripts/make-cjk-font.py "$source_font" "$FONT_NUMBER" ui/src "$tmp/font.woff2"
if cmp -s "$tmp/font.woff2" "$OUT"; then
    say "$OUT is up to date"
else
    mkdir -p "$(dirname "$OUT")"
    mv "$tmp/font.woff2" "$OUT"
    say "wrote $OUT"
fi
