#!/usr/bin/env python3
"""Makes the router's prompts and music on hold (crates/router/prompts/):

- every line of prompts.tsv (id, English, Simplified Chinese) spoken by espeak-ng (voices `en-us`
  and `cmn`), as 16 kHz mono 16-bit WAV in en/<id>.wav and zh-CN/<id>.wav, with the leading and
  trailing silence trimmed and the peak normalised to -3 dBFS;
- music/hold.wav: an original piece synthesised here (no samples), 20 s that loop cleanly.

Deterministic: the same table and espeak-ng give the same files. Run by scripts/make-prompts.sh,
which installs espeak-ng when it is missing. Standard library only.
"""
import math
import os
import struct
import subprocess
import sys
import tempfile
import wave

RATE = 16000
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "router", "prompts")
VOICES = {"en": ("en-us", 160), "zh-CN": ("cmn", 175)}


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            sys.exit(f"{path}: espeak-ng wrote {8 * w.getsampwidth()}-bit audio; expected 16-bit")
        rate, ch, n = w.getframerate(), w.getnchannels(), w.getnframes()
        raw = w.readframes(n)
    samples = struct.unpack(f"<{n * ch}h", raw)
    if ch > 1:
        samples = [sum(samples[i:i + ch]) // ch for i in range(0, len(samples), ch)]
    return list(samples), rate


def resample(samples, src, dst):
    """Linear interpolation after a short moving-average low-pass when going down."""
    if src == dst:
        return samples
    if dst < src:
        k = max(1, round(src / dst))
        acc, out = 0, []
        window = []
        for s in samples:
            window.append(s)
            acc += s
            if len(window) > k:
                acc -= window.pop(0)
            out.append(acc / len(window))
        samples = out
    n = int(len(samples) * dst / src)
    res = []
    for i in range(n):
        x = i * src / dst
        j = int(x)
        f = x - j
        a = samples[j]
        b = samples[j + 1] if j + 1 < len(samples) else a
        res.append(a + (b - a) * f)
    return res


def trim_and_normalise(samples, peak_db=-3.0):
    level = 300
    start = next((i for i, s in enumerate(samples) if abs(s) > level), 0)
    end = len(samples) - next((i for i, s in enumerate(reversed(samples)) if abs(s) > level), 0)
    pad = RATE // 20  # 50 ms either side
    samples = samples[max(0, start - pad):min(len(samples), end + pad)]
    peak = max((abs(s) for s in samples), default=0) or 1
    gain = 32767 * 10 ** (peak_db / 20) / peak
    return [max(-32768, min(32767, int(round(s * gain)))) for s in samples]


def write_wav(path, samples):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def speak(text, voice, speed, path):
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text], check=True)
        samples, rate = read_wav(raw)
    write_wav(path, trim_and_normalise([int(s) for s in resample(samples, rate, RATE)]))


def hold_music(path, seconds=20):
    """A calm I–vi–IV–V progression in C, soft additive voices with slow envelopes; the last
    chord resolves into the first, so the loop has no seam."""
    chords = [
        [261.63, 329.63, 392.00],  # C
        [220.00, 261.63, 329.63],  # Am
        [174.61, 220.00, 261.63],  # F
        [196.00, 246.94, 293.66],  # G
    ]
    bass = [130.81, 110.00, 87.31, 98.00]
    n = RATE * seconds
    per = n // len(chords)
    out = []
    for i in range(n):
        c = min(i // per, len(chords) - 1)
        t = i / RATE
        pos = (i % per) / per
        env = math.sin(math.pi * pos) ** 0.6  # swell and fade within each chord
        v = 0.0
        for f in chords[c]:
            v += 0.20 * math.sin(2 * math.pi * f * t) + 0.05 * math.sin(4 * math.pi * f * t)
        v += 0.25 * math.sin(2 * math.pi * bass[c] * t)
        # A slow arpeggio over the chord, one note every quarter of it.
        note = chords[c][int(pos * 4) % 3] * 2
        npos = (pos * 4) % 1.0
        v += 0.12 * math.exp(-4 * npos) * math.sin(2 * math.pi * note * t)
        out.append(v * env)
    peak = max(abs(x) for x in out) or 1
    gain = 32767 * 10 ** (-6 / 20) / peak
    write_wav(path, [int(round(x * gain)) for x in out])


def main():
    table = os.path.join(OUT, "prompts.tsv")
    count = 0
    with open(table, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                sys.exit(f"{table}: a line needs id, English and Chinese separated by tabs: {line!r}")
            pid, en, zh = parts
            for lang, text in (("en", en), ("zh-CN", zh)):
                voice, speed = VOICES[lang]
                speak(text, voice, speed, os.path.join(OUT, lang, f"{pid}.wav"))
            count += 1
    hold_music(os.path.join(OUT, "music", "hold.wav"))
    print(f"{count} prompts in {len(VOICES)} languages and the music on hold written to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
