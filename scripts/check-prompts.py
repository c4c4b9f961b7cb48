#!/usr/bin/env python3
"""Checks the router's generated prompts and music on hold (crates/router/prompts/):

- every prompt id of prompts.tsv has a WAV in every language of the table's header;
- every WAV opens with Python's wave module and is 16 kHz, mono, 16-bit PCM;
- no prompt is silent (peak about -3 dBFS, as scripts/make-prompts.sh normalises it, and some
  real signal), and each is at least 0.2 s and shorter than 15 s;
- the music is 10-30 s, peaks about -6 dBFS and loops cleanly (no kink where its end joins
  its start);
- the folder stays under 7 MiB: about 160 s of speech at 16 kHz s16 is 5.2 MB by itself, and the
  limit catches a runaway (a music loop minutes long, a prompt read twice), not a few new prompts.

    python3 scripts/check-prompts.py [PROMPTS_DIR]

Run by scripts/make-prompts.sh after it generates the files. Standard library only. Prints one
line per problem and a summary 'N passed, N failed'; exits 1 when anything failed.
"""
import math
import os
import struct
import sys
import wave

RATE = 16000
MAX_PROMPT_SECONDS = 15.0
MIN_PROMPT_SECONDS = 0.2
MAX_TOTAL_BYTES = 7 * 1024 * 1024


def dbfs(x):
    return 20 * math.log10(x / 32768) if x > 0 else -math.inf


def read(path):
    """(samples, seconds) of a 16 kHz mono 16-bit PCM WAV; raises ValueError otherwise."""
    try:
        w = wave.open(path, "rb")
    except (wave.Error, EOFError) as e:
        raise ValueError(f"does not open as WAV ({str(e) or type(e).__name__})") from None
    with w:
        fmt = (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getcomptype())
        if fmt != (1, 2, RATE, "NONE"):
            raise ValueError(f"is {fmt[0]} channel(s), {8 * fmt[1]}-bit, {fmt[2]} Hz, {fmt[3]}; "
                             f"expected 1 channel, 16-bit, {RATE} Hz PCM")
        n = w.getnframes()
        raw = w.readframes(n)
    if n == 0:
        raise ValueError("has no samples")
    if len(raw) != 2 * n:
        raise ValueError(f"is truncated: {len(raw) // 2} of {n} samples")
    return struct.unpack(f"<{n}h", raw), n / RATE


def levels(samples):
    peak = max((abs(s) for s in samples), default=0)
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return dbfs(peak), dbfs(rms)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "crates", "router", "prompts")
    base = os.path.normpath(base)
    table = os.path.join(base, "prompts.tsv")

    with open(table, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    if header[0] != "# id" or len(header) < 2:
        sys.exit(f"{table}: the first line must be '# id<TAB><language>...'")
    langs = header[1:]
    ids = [l.split("\t")[0] for l in lines[1:] if l and not l.startswith("#")]

    passed, failures = 0, []

    def check(name, problem):
        nonlocal passed
        if problem:
            failures.append(f"{name}: {problem}")
        else:
            passed += 1

    longest = {}
    total_seconds = {}
    for lang in langs:
        total_seconds[lang] = 0.0
        for pid in ids:
            name = f"{lang}/{pid}.wav"
            path = os.path.join(base, lang, f"{pid}.wav")
            if not os.path.exists(path):
                check(name, "missing (run bash scripts/make-prompts.sh)")
                continue
            try:
                samples, secs = read(path)
            except ValueError as e:
                check(name, str(e))
                continue
            peak, rms = levels(samples)
            problem = None
            if not MIN_PROMPT_SECONDS <= secs < MAX_PROMPT_SECONDS:
                problem = f"{secs:.2f} s long; expected {MIN_PROMPT_SECONDS}-{MAX_PROMPT_SECONDS} s"
            elif not -4.0 <= peak <= -2.0:
                problem = f"peak {peak:.1f} dBFS; expected about -3 dBFS"
            elif rms < -40.0:
                problem = f"RMS {rms:.1f} dBFS: (nearly) silent"
            check(name, problem)
            total_seconds[lang] += secs
            if secs > longest.get(lang, ("", 0))[1]:
                longest[lang] = (pid, secs)

    music = os.path.join(base, "music", "hold.wav")
    music_secs = 0.0
    try:
        samples, music_secs = read(music)
        peak, rms = levels(samples)
        # Where it loops, the wave must bend no more sharply than anywhere inside: the second
        # difference (s[i-1] - 2 s[i] + s[i+1]) across the seam is no bigger than inside. A cut
        # at a random place, even between two samples of equal value, shows here as a kink.
        s = samples
        bends = [abs(s[i - 1] - 2 * s[i] + s[i + 1]) for i in range(1, len(s) - 1)]
        seam = max(abs(s[-2] - 2 * s[-1] + s[0]), abs(s[-1] - 2 * s[0] + s[1]))
        if not 10.0 <= music_secs <= 30.0:
            check("music/hold.wav", f"{music_secs:.2f} s long; expected 10-30 s")
        elif not -7.0 <= peak <= -5.0:
            check("music/hold.wav", f"peak {peak:.1f} dBFS; expected about -6 dBFS")
        elif rms < -40.0:
            check("music/hold.wav", f"RMS {rms:.1f} dBFS: (nearly) silent")
        elif seam > max(bends):
            check("music/hold.wav", f"clicks where it loops: a kink of {seam} from its end to its start "
                                    f"(at most {max(bends)} inside)")
        else:
            check("music/hold.wav", None)
    except (OSError, ValueError) as e:
        check("music/hold.wav", str(e))

    total = 0
    for d, _, files in os.walk(base):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    check(base, None if total <= MAX_TOTAL_BYTES else
          f"{total / 1024 / 1024:.2f} MiB; keep it under {MAX_TOTAL_BYTES / 1024 / 1024:g} MiB (shorter music, shorter texts)")

    for f in failures:
        print(f"FAIL {f}")
    for lang in langs:
        pid, secs = longest.get(lang, ("-", 0.0))
        print(f"{lang}: {len(ids)} prompts, {total_seconds[lang]:.1f} s in all, longest {pid} {secs:.2f} s")
    print(f"music/hold.wav: {music_secs:.2f} s")
    print(f"{base}: {total} bytes ({total / 1024 / 1024:.2f} MiB)")
    print(f"prompts: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
