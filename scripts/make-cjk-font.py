#!/usr/bin/env python3
"""Makes the UI's bundled Chinese font: a subset of Noto Sans CJK SC as WOFF2.

Run by scripts/make-cjk-font.sh, which fetches the source font and a pinned fontTools; see
ui/src/assets/fonts/LICENCE.md for what the subset holds and why.

Usage: make-cjk-font.py SOURCE.ttc FONT_NUMBER UI_SRC_DIR OUT.woff2

The subset holds, from the source's "Noto Sans CJK SC" face (FONT_NUMBER in the collection):

  - the 3,755 level-1 hanzi of GB 2312 (rows 16-55: the most common simplified characters, so
    names and text that people type mostly render too);
  - every character of the blocks in RANGES that the source has among CJK punctuation (U+3000-
    U+303F) and the halfwidth/fullwidth forms (U+FF00-U+FFEF);
  - every character in RANGES that appears in the UI's sources (UI_SRC_DIR, *.ts and *.svelte):
    the Chinese texts of ui/src/i18n/zh-CN.ts above all, also where one is rarer than level 1.

Only characters in RANGES are taken: everything else (Latin, digits, general punctuation such as
“ ” …) is drawn by the system's fonts, which have it everywhere. RANGES must match the
`unicode-range` of the @font-face in ui/src/app.css; the UI's Vitest test
(ui/src/assets/fonts/font.test.ts) checks that the font has every such character of the UI.

Deterministic: the same source font, fontTools and brotli versions and UI texts give the same
bytes. Hinting is dropped (about 15 % of the size; WebKitGTK draws CJK with slight or no hinting)
and the CFF charstrings are desubroutinised (they compress better in WOFF2).
"""

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

# The Unicode blocks the bundled font serves (and app.css's unicode-range lists), as
# (first, last) code points, inclusive.
RANGES = [
    (0x2E80, 0x2FDF),  # CJK radicals supplement, Kangxi radicals
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x31C0, 0x31EF),  # CJK strokes
    (0x3200, 0x33FF),  # enclosed CJK letters and months, CJK compatibility
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # halfwidth and fullwidth forms
]
# Blocks taken whole (whatever the source has of them): punctuation and fullwidth forms are few
# and any Chinese text may use them.
WHOLE_BLOCKS = [(0x3000, 0x303F), (0xFF00, 0xFFEF)]


def in_ranges(cp: int) -> bool:
    return any(a <= cp <= b for a, b in RANGES)


def unicode_range_css() -> str:
    return ", ".join(f"U+{a:X}-{b:X}" for a, b in RANGES)


def gb2312_level1() -> set[int]:
    """Rows 16-55 of GB 2312 (bytes 0xB0-0xD7 in EUC-CN), decoded by Python's own codec."""
    out = set()
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                out.add(ord(bytes([row, cell]).decode("gb2312")))
            except UnicodeDecodeError:
                pass  # row 55 ends at 0xD7F9
    assert len(out) == 3755, len(out)
    return out


def ui_characters(ui_src: Path) -> set[int]:
    out = set()
    for path in sorted(ui_src.rglob("*")):
        if path.suffix in (".ts", ".svelte") and path.is_file():
            out.update(ord(ch) for ch in path.read_text(encoding="utf-8") if in_ranges(ord(ch)))
    return out


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, number, ui_src, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])

    # The head table's dates stay the source's: the output depends on its inputs alone.
    collection = TTCollection(source, recalcTimestamp=False)
    font = collection.fonts[number]
    family = font["name"].getDebugName(1)
    if family != "Noto Sans CJK SC":
        print(f"error: font {number} of {source} is {family!r}, not 'Noto Sans CJK SC'", file=sys.stderr)
        return 1
    cmap = font.getBestCmap()

    ui = ui_characters(ui_src)
    missing = sorted(cp for cp in ui if cp not in cmap)
    if missing:
        chars = " ".join(f"{chr(cp)} U+{cp:04X}" for cp in missing)
        print(f"error: the UI uses characters that Noto Sans CJK SC lacks: {chars}", file=sys.stderr)
        return 1
    wanted = gb2312_level1() | ui
    for a, b in WHOLE_BLOCKS:
        wanted.update(cp for cp in range(a, b + 1) if cp in cmap)
    wanted = {cp for cp in wanted if in_ranges(cp) and cp in cmap}

    options = subset.Options()
    options.flavor = "woff2"
    options.hinting = False
    options.desubroutinize = True
    options.name_IDs = ["*"]  # keep the copyright, licence and trademark records
    options.name_languages = ["*"]
    options.drop_tables += ["DSIG"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(wanted))
    subsetter.subset(font)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    subset.save_font(font, str(tmp), options)
    tmp.replace(out)

    print(f"{len(wanted)} characters ({len(ui)} from the UI), {out.stat().st_size:,} bytes")
    print(f"unicode-range: {unicode_range_css()};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
