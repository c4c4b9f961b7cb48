"""Tones in the test peers' audio, in plain Python (the standard library only): how many
blocks of a recording a frequency holds (the Goertzel algorithm over each block, against the
block's energy), as `switchboard_media::tone::blocks_holding` does in Rust, for the test
scripts and Python peers that have no Rust at hand.

As a module: `blocks_holding(samples, rate, hz, ...)`. As a program, for shell tests:

  python3 tests/peers/tones.py FILE.wav HZ [--last N] [--share S] [--min-rms R]

prints how many 50 ms blocks (of the last N, if given) hold at least S of their energy at HZ
and are loud (RMS of at least R).
"""

import argparse
import math
import struct
import wave


def blocks_holding(samples, rate, hz, block=None, share=0.5, min_rms=100.0):
    """How many blocks of `block` samples (default 50 ms) hold at least `share` of their
    energy at `hz` and have an RMS of at least `min_rms`."""
    block = block or rate // 20
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    held = 0
    for i in range(0, len(samples) - block + 1, block):
        s1 = s2 = 0.0
        total = 0.0
        for x in samples[i:i + block]:
            s1, s2 = x + coeff * s1 - s2, s1
            total += x * x
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        # Parseval: a pure tone of the block's energy gives power = total * block / 2.
        if total >= block * min_rms * min_rms and power >= share * total * block / 2:
            held += 1
    return held


def read_mono(path):
    """The first channel of a 16-bit WAV file, and its rate."""
    with wave.open(path) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    samples = struct.unpack("<%dh" % (len(raw) // 2), raw)[::channels]
    return list(samples), rate


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wav")
    p.add_argument("hz", type=float)
    p.add_argument("--last", type=int, help="only the last N 50 ms blocks")
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--min-rms", type=float, default=100.0)
    a = p.parse_args()
    samples, rate = read_mono(a.wav)
    block = rate // 20
    if a.last:
        whole = len(samples) // block * block
        samples = samples[max(0, whole - a.last * block):whole]
    print(blocks_holding(samples, rate, a.hz, block, a.share, a.min_rms))


if __name__ == "__main__":
    main()
