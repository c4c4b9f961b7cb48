/// <reference types="node" />
// The bundled Chinese font (README.md beside this file) must draw every CJK character of the UI:
// a text added to zh-CN.ts (or any source) with a character the subset lacks fails here, naming
// it; `bash scripts/make-cjk-font.sh` then regenerates the font with it.
//
// The font is read as the browser reads it: the WOFF2 container is unpacked (its tables are one
// Brotli stream, RFC 7932, which Node has) and the character map (`cmap`, formats 4 and 12 of
// the OpenType spec) is walked, so the check trusts the shipped bytes, not a list beside them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";

const FAMILY = "Switchboard Noto Sans SC";
const FONT = join(import.meta.dirname, "noto-sans-sc-subset.woff2");
const APP_CSS = join(import.meta.dirname, "../../app.css");

/** Every UI source file's text (this folder's tests included), by path. */
const sources = import.meta.glob<string>("/src/**/*.{ts,svelte}", {
  query: "?raw",
  import: "default",
  eager: true,
});

/** WOFF2 (W3C WOFF File Format 2.0 §4–5): the uncompressed bytes of the `cmap` table. */
function woff2Cmap(file: Uint8Array): DataView {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (view.getUint32(0) !== 0x774f4632) throw new Error("not a WOFF2 file (no wOF2 signature)");
  const numTables = view.getUint16(12);
  const totalCompressedSize = view.getUint32(20);
  let pos = 48;
  const u8 = () => view.getUint8(pos++);
  const base128 = () => {
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const b = u8();
      value = value * 128 + (b & 0x7f);
      if (!(b & 0x80)) return value;
    }
    throw new Error("WOFF2: UIntBase128 longer than 5 bytes");
  };
  let offset = 0; // of the table in the decompressed stream
  let cmap: { offset: number; length: number } | undefined;
  for (let i = 0; i < numTables; i++) {
    const flags = u8();
    const known = flags & 0x3f; // index into the spec's known-tag table; 0 is cmap, 63 an explicit tag
    if (known === 63) pos += 4;
    const origLength = base128();
    const version = flags >> 6;
    // glyf (10) and loca (11) are transformed unless version 3; other tables unless version 0.
    const transformed = known === 10 || known === 11 ? version !== 3 : version !== 0;
    const length = transformed ? base128() : origLength;
    if (known === 0) cmap = { offset, length };
    offset += length;
  }
  if (!cmap) throw new Error("WOFF2: no cmap table");
  const tables = brotliDecompressSync(file.subarray(pos, pos + totalCompressedSize));
  return new DataView(tables.buffer, tables.byteOffset + cmap.offset, cmap.length);
}

/** The code points a `cmap` maps to a glyph other than .notdef (OpenType `cmap` formats 4 and 12). */
function coverage(cmap: DataView): Set<number> {
  const out = new Set<number>();
  const records = cmap.getUint16(2);
  for (let r = 0; r < records; r++) {
    const platform = cmap.getUint16(4 + r * 8);
    const encoding = cmap.getUint16(6 + r * 8);
    const sub = cmap.getUint32(8 + r * 8);
    if (!(platform === 3 && (encoding === 1 || encoding === 10)) && platform !== 0) continue;
    const format = cmap.getUint16(sub);
    if (format === 12) {
      const groups = cmap.getUint32(sub + 12);
      for (let g = 0; g < groups; g++) {
        const at = sub + 16 + g * 12;
        const start = cmap.getUint32(at);
        const end = cmap.getUint32(at + 4);
        const glyph = cmap.getUint32(at + 8);
        for (let c = start; c <= end; c++) if (glyph + (c - start) !== 0) out.add(c);
      }
    } else if (format === 4) {
      const segs = cmap.getUint16(sub + 6) / 2;
      const ends = sub + 14;
      const starts = ends + segs * 2 + 2;
      const deltas = starts + segs * 2;
      const rangeOffsets = deltas + segs * 2;
      for (let s = 0; s < segs; s++) {
        const start = cmap.getUint16(starts + s * 2);
        const end = cmap.getUint16(ends + s * 2);
        const delta = cmap.getUint16(deltas + s * 2);
        const rangeOffset = cmap.getUint16(rangeOffsets + s * 2);
        for (let c = start; c <= end && c !== 0xffff; c++) {
          let glyph: number;
          if (rangeOffset === 0) glyph = (c + delta) & 0xffff;
          else {
            const g = cmap.getUint16(rangeOffsets + s * 2 + rangeOffset + (c - start) * 2);
            glyph = g === 0 ? 0 : (g + delta) & 0xffff;
          }
          if (glyph !== 0) out.add(c);
        }
      }
    }
  }
  return out;
}

/** The @font-face's unicode-range in app.css, as [first, last] pairs. */
function unicodeRange(css: string): [number, number][] {
  const face = [...css.matchAll(/@font-face\s*{([^}]*)}/g)]
    .map((m) => m[1] ?? "")
    .find((body) => body.includes(`"${FAMILY}"`));
  if (!face) throw new Error(`app.css has no @font-face for "${FAMILY}"`);
  const list = /unicode-range:\s*([^;]+);/.exec(face)?.[1];
  if (!list) throw new Error(`the @font-face for "${FAMILY}" has no unicode-range`);
  return list.split(",").map((item) => {
    const m = /^U\+([0-9A-F]+)(?:-([0-9A-F]+))?$/i.exec(item.trim());
    if (!m?.[1]) throw new Error(`unicode-range item ${item.trim()} is not U+XXXX or U+XXXX-YYYY`);
    return [parseInt(m[1], 16), parseInt(m[2] ?? m[1], 16)];
  });
}

const hex = (c: number) => `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;

/** Characters of `text` that the font serves (in `ranges`) but does not have, as "字 U+5B57". */
function missing(text: string, ranges: [number, number][], font: Set<number>): string[] {
  const out = new Set<string>();
  for (const ch of text) {
    const c = ch.codePointAt(0) ?? 0;
    if (ranges.some(([a, b]) => a <= c && c <= b) && !font.has(c)) out.add(`${ch} ${hex(c)}`);
  }
  return [...out];
}

describe("the bundled Chinese font", () => {
  const font = coverage(woff2Cmap(new Uint8Array(readFileSync(FONT))));
  const ranges = unicodeRange(readFileSync(APP_CSS, "utf-8"));

  it("is a GB 2312 level-1 subset: the common hanzi and CJK punctuation, not the rare ones", () => {
    // 3,755 level-1 hanzi, CJK punctuation and fullwidth forms, the UI's own characters.
    expect(font.size).toBeGreaterThan(3755);
    expect(font.size).toBeLessThan(6000);
    for (const ch of "的一是中文设置，。（）") expect(font.has(ch.codePointAt(0)!), ch).toBe(true);
    // U+9F98 (a rare character, not in GB 2312) is not in the subset: the check below can fail.
    expect(missing("\u{9f98}", ranges, font)).toEqual(["\u{9f98} U+9F98"]);
    // Latin is not its job: the system's fonts draw it.
    expect(missing("Switchboard", ranges, font)).toEqual([]);
  });

  it("has every CJK character of the UI's texts (else run: bash scripts/make-cjk-font.sh)", () => {
    expect(Object.keys(sources)).toContain("/src/i18n/zh-CN.ts");
    const lacking: Record<string, string[]> = {};
    for (const [path, text] of Object.entries(sources)) {
      const m = missing(text, ranges, font);
      if (m.length > 0) lacking[path] = m;
    }
    expect(lacking).toEqual({});
  });
});
