#!/usr/bin/env bash
# Regenerates everything callers hear from the router (see crates/router/prompts/README.md):
#
#   - every prompt of crates/router/prompts/prompts.tsv, in every language of its header, spoken
#     by espeak-ng and cleaned up by sox: crates/router/prompts/<language>/<id>.wav;
#   - the music on hold, synthesised by scripts/make-hold-music.py: .../music/hold.wav;
#   - then checks them all with scripts/check-prompts.py.
#
# Output format: 16 kHz, mono, 16-bit PCM WAV; leading and trailing silence trimmed (50 ms kept
# either side, so prompts joined one after another do not run together), peak normalised to
# -3 dBFS. Installs espeak-ng and sox (Debian packages) when they are missing.
#
# Deterministic and idempotent: the same table and the same espeak-ng/sox versions give the same
# bytes (sox runs in repeatable mode without dither); a file is only rewritten when its bytes
# change, and WAV files of prompts no longer in the table are removed.
#
# Usage: bash scripts/make-prompts.sh
set -euo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$SB_ROOT"

PROMPTS="crates/router/prompts"
TABLE="$PROMPTS/prompts.tsv"

# The espeak-ng voice and speed (words per minute) of each language column of the table.
# Mandarin uses `cmn-latn-pinyin`, not plain `cmn`: in espeak-ng 1.51 (Debian 12) the `cmn` voice
# turns each character into pinyin with a tone digit and then reads that as English ("gan three
# xie four" for 感谢); the `-latn-pinyin` variant is the same Mandarin voice and dictionary with
# Latin text read as pinyin, which speaks the characters correctly (espeak-ng issue #1236).
declare -A VOICE=([en]=en-us [zh-CN]=cmn-latn-pinyin)
declare -A SPEED=([en]=160 [zh-CN]=175)

apt_install espeak-ng sox

# The header, "# id<TAB>en<TAB>zh-CN", names the folder (language tag) of each text column.
header="$(head -n 1 "$TABLE")"
[[ "$header" == "# id"$'\t'* ]] || die "$TABLE: the first line must be '# id<TAB><language>...'"
IFS=$'\t' read -r -a LANGS <<<"${header#"# id"$'\t'}"
for lang in "${LANGS[@]}"; do
    [[ -n "${VOICE[$lang]:-}" ]] || die "$TABLE names language '$lang': add its voice to VOICE in $0"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# install_if_changed NEW DEST — moves NEW to DEST unless DEST already has the same bytes, so a
# rerun leaves unchanged files (and their modification times) alone.
install_if_changed() {
    if cmp -s "$1" "$2"; then
        rm -f "$1"
    else
        mkdir -p "$(dirname "$2")"
        mv -f "$1" "$2"
        changed=$((changed + 1))
    fi
}

# speak LANG TEXT DEST — espeak-ng at its own rate (22050 Hz), then sox: trim the silence at
# both ends (below -60 dBFS), resample to 16 kHz, peak to -3 dBFS, 50 ms of silence either side.
# The text goes in on standard input (-b 1: UTF-8), so a text starting with '-' is not an option.
speak() {
    local lang="$1" text="$2" dest="$3"
    printf '%s\n' "$text" | espeak-ng -b 1 -v "${VOICE[$lang]}" -s "${SPEED[$lang]}" \
        -w "$tmp/raw.wav" --stdin
    sox -R -D -V1 "$tmp/raw.wav" -c 1 -b 16 -e signed-integer "$tmp/new.wav" \
        remix - \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
        rate -h 16000 \
        gain -n -3 \
        pad 0.05 0.05
    install_if_changed "$tmp/new.wav" "$dest"
}

say "speaking $TABLE (${LANGS[*]})"
declare -A KEEP=()
count=0
changed=0
lineno=0
while IFS= read -r line || [[ -n "$line" ]]; do
    lineno=$((lineno + 1))
    [[ -z "$line" || "$line" == \#* ]] && continue
    IFS=$'\t' read -r -a cols <<<"$line"
    [[ ${#cols[@]} -eq $((1 + ${#LANGS[@]})) ]] \
        || die "$TABLE:$lineno: expected an id and ${#LANGS[@]} texts separated by tabs"
    id="${cols[0]}"
    [[ "$id" =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] || die "$TABLE:$lineno: bad prompt id '$id'"
    [[ -z "${KEEP[$id]:-}" ]] || die "$TABLE:$lineno: prompt id '$id' appears twice"
    KEEP[$id]=1
    for i in "${!LANGS[@]}"; do
        lang="${LANGS[$i]}"
        text="${cols[$((i + 1))]}"
        [[ -n "${text// /}" ]] || die "$TABLE:$lineno: '$id' has no $lang text"
        speak "$lang" "$text" "$PROMPTS/$lang/$id.wav"
    done
    count=$((count + 1))
done <"$TABLE"

# Prompts removed from the table: their files go too (these folders hold only generated files).
for lang in "${LANGS[@]}"; do
    for f in "$PROMPTS/$lang"/*.wav; do
        [[ -e "$f" ]] || continue
        id="$(basename "$f" .wav)"
        if [[ -z "${KEEP[$id]:-}" ]]; then
            say "removing $f (no longer in $TABLE)"
            rm -f "$f"
        fi
    done
done
say "$count prompts in ${#LANGS[@]} languages ($changed files written, the rest unchanged)"

say "synthesising the music on hold"
python3 scripts/make-hold-music.py "$tmp/hold.wav"
changed=0
install_if_changed "$tmp/hold.wav" "$PROMPTS/music/hold.wav"

python3 scripts/check-prompts.py
