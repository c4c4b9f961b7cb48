#!/usr/bin/env python3
"""Synthesises the router's music on hold: an original, calm piece that loops without a seam.

    python3 scripts/make-hold-music.py [OUT.wav]    (default: crates/router/prompts/music/hold.wav)

Run by scripts/make-prompts.sh. Standard library only; no samples or recordings, every sound is
made here from sine waves, so the result is ours (CC0-1.0, see crates/router/prompts/LICENCE.md).

The piece: four chords of 5 s (Cmaj7, Am7, Fmaj7, G7sus4 in C major) at 48 beats a minute, each a
soft pad of additive voices (a few decaying harmonics, two slightly detuned copies for warmth)
swelling in and out with raised-cosine envelopes that overlap the next chord, over a bass line,
with a slow bell-like arpeggio on top. Everything that sounds past the end of the loop (the last
chord's fade, the last bell's ring) is added back at its start, and the first chord's fade-in
sits at its end, so the file plays round and round with no click or gap.

Telephone lines pass roughly 300-3400 Hz, so the bass also sounds its 2nd and 3rd harmonics
(the ear hears the missing fundamental) and nothing is put above about 3 kHz.

Output: 16 kHz, mono, 16-bit PCM WAV, peak -6 dBFS. Deterministic: no randomness, the same
Python gives the same bytes.
"""
import math
import os
import struct
import sys
import wave

RATE = 16000
BEAT = 1.25  # seconds (48 beats a minute): four chords of four beats, a 20 s loop
BEATS_PER_CHORD = 4
PEAK_DBFS = -6.0

# MIDI note numbers: the pad's chord tones, the bass note and the arpeggio's notes of each chord.
CHORDS = [
    # (pad, bass, arpeggio)
    ([60, 64, 67, 71], 48, [72, 76, 79, 76]),  # Cmaj7
    ([57, 60, 64, 67], 45, [72, 69, 76, 72]),  # Am7
    ([53, 57, 60, 64], 41, [69, 72, 77, 72]),  # Fmaj7
    ([55, 60, 62, 65], 43, [74, 72, 67, 71]),  # G7sus4, leaning back to C
]

CHORD_SECONDS = BEAT * BEATS_PER_CHORD
SECONDS = CHORD_SECONDS * len(CHORDS)
N = int(round(SECONDS * RATE))


def freq(midi):
    return 440.0 * 2 ** ((midi - 69) / 12)


def raised_cosine(x):
    """0 at x <= 0, 1 at x >= 1, a smooth S-curve between."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * x)


def add(buf, start, samples):
    """Adds samples at index start, wrapping round the end of the loop."""
    for i, s in enumerate(samples):
        buf[(start + i) % N] += s


def tone(f, seconds, partials, envelope, detune=0.0):
    """Additive voice: partials is [(harmonic number, amplitude)], envelope(t, length) -> gain.
    With detune (Hz), a second copy a little sharp beats slowly against the first."""
    n = int(seconds * RATE)
    out = [0.0] * n
    comps = []
    for h, a in partials:
        if f * h < 3000:  # keep within what a telephone line passes
            comps.append((2 * math.pi * f * h / RATE, a))
            if detune:
                comps.append((2 * math.pi * (f * h + detune) / RATE, a))
    if detune:
        comps = [(w, a * 0.5) for w, a in comps]
    for i in range(n):
        e = envelope(i / RATE, seconds)
        if e:
            out[i] = e * sum(a * math.sin(w * i) for w, a in comps)
    return out


def pad_envelope(t, length):
    # Swell in over 1.5 s, hold, fade out over the last 1.5 s (which overlap the next chord).
    return raised_cosine(t / 1.5) * raised_cosine((length - t) / 1.5)


def bell_envelope(t, length):
    # A 10 ms attack, then a slow exponential ring.
    return raised_cosine(t / 0.01) * math.exp(-t / 0.6) * raised_cosine((length - t) / 0.05)


PAD = [(1, 1.0), (2, 0.35), (3, 0.12), (4, 0.05)]
BASS = [(1, 1.0), (2, 0.7), (3, 0.35)]
BELL = [(1, 1.0), (2, 0.25), (3, 0.08)]


def synthesise():
    buf = [0.0] * N
    per = int(round(CHORD_SECONDS * RATE))
    overlap = 0.75  # seconds each chord starts before and ends after its own 5 s
    for k, (pad, bass, arp) in enumerate(CHORDS):
        start = k * per - int(overlap * RATE)
        length = CHORD_SECONDS + 2 * overlap
        for m in pad:
            add(buf, start, [0.16 * s for s in tone(freq(m), length, PAD, pad_envelope, detune=0.7)])
        add(buf, start, [0.30 * s for s in tone(freq(bass), length, BASS, pad_envelope)])
        # The arpeggio: one soft bell a beat, ringing for 2.5 s.
        for b, m in enumerate(arp):
            add(buf, k * per + int(b * BEAT * RATE), [0.10 * s for s in tone(freq(m), 2.5, BELL, bell_envelope)])
    return buf


def write(path, buf):
    peak = max(abs(x) for x in buf) or 1.0
    gain = 32767 * 10 ** (PEAK_DBFS / 20) / peak
    pcm = struct.pack(f"<{len(buf)}h", *(int(round(x * gain)) for x in buf))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "crates", "router", "prompts", "music", "hold.wav")
    write(out, synthesise())
    print(f"music on hold: {SECONDS:g} s, 16 kHz mono s16, peak {PEAK_DBFS:g} dBFS -> {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
