"""A full ICE agent (aioice, RFC 8445) in the controlling role, as a Microsoft Teams client
is towards an SBC that does media bypass: it reads the SBC's SDP lines (a=ice-lite,
a=ice-ufrag, a=ice-pwd, a=candidate), runs connectivity checks against them and nominates a
pair, then counts the RTP that arrives over it and sends RFC 4733 keypad events back.

The test drives it over stdin/stdout, one JSON object per line:

  in:  {"sdp": "<the SBC's SDP>"}          start (or restart, on a second line: new credentials)
  out: {"ufrag": ..., "pwd": ..., "local": "127.0.0.1:port"}   our side, before the checks
  out: {"connected": true}                 a pair is nominated (connect() returned)
  out: {"rtp": n}                          RTP packets received over it in `--listen` seconds
                                           (nothing sent meanwhile)
  out: {"heard": blocks, "blocks": n}      with --tone: then a tone sent for --tone-seconds,
                                           and the 20 ms blocks heard of --hear (of n)
  out: {"keyed": digit}                    then a keypad digit sent over it (RFC 4733)
  in:  {"sdp": ...} again: an ICE restart with a new Connection and the SBC's new credentials

Only 127.0.0.1 is used: aioice leaves loopback out of its host candidates, so the test gives
it that address instead (tests never use any other).
"""

import argparse
import asyncio
import json
import math
import pathlib
import struct
import sys

import aioice
import aioice.ice

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import tones  # noqa: E402  (tests/peers/tones.py)
from aioice.candidate import Candidate

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def say(obj):
    print(json.dumps(obj), flush=True)


def read_sdp(sdp):
    ufrag = pwd = None
    lite = False
    candidates = []
    for line in sdp.splitlines():
        line = line.strip()
        if line == "a=ice-lite":
            lite = True
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append(Candidate.from_sdp(line.split(":", 1)[1]))
    return ufrag, pwd, lite, candidates


def rtp(seq, ts, pt, payload, marker=False):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x5EED) + payload


STREAM = {"seq": 1, "ts": 8000}


async def keypad(conn, digit):
    """Digit `digit` as RFC 4733 events (preceded by a few PCMU frames of silence). The RTP
    stream goes on across a restart (same SSRC, sequence and clock), as a client's does."""
    seq, ts = STREAM["seq"], STREAM["ts"]
    for i in range(5):
        await conn.send(rtp(seq, ts, 0, b"\xff" * 160))
        seq, ts = seq + 1, ts + 160
        await asyncio.sleep(0.02)
    for i in range(6):
        end = i >= 3
        duration = 160 * (i + 1) if not end else 160 * 4
        payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, duration)
        await conn.send(rtp(seq, ts, 101, payload, marker=(i == 0)))
        seq += 1
        await asyncio.sleep(0.02)
    STREAM["seq"], STREAM["ts"] = seq, ts + 160 * 4


def ulaw_to_linear(b):
    """G.711 µ-law byte to a 16-bit sample (ITU-T G.711)."""
    b = ~b & 0xFF
    t = ((b & 0x0F) << 3) + 0x84
    t <<= (b & 0x70) >> 4
    return (0x84 - t) if b & 0x80 else (t - 0x84)


def linear_to_ulaw(x):
    sign = 0x80 if x < 0 else 0
    x = min(abs(x), 32635) + 0x84
    exp = 7
    mask = 0x4000
    while exp > 0 and not x & mask:
        exp -= 1
        mask >>= 1
    mantissa = (x >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mantissa) & 0xFF


async def send_tone(conn, hz, seconds):
    seq, ts = STREAM["seq"], STREAM["ts"]
    n = 0
    for _ in range(int(seconds * 50)):
        frame = bytes(linear_to_ulaw(int(8000 * math.sin(2 * math.pi * hz * (n + i) / 8000)))
                      for i in range(160))
        await conn.send(rtp(seq, ts, 0, frame))
        seq, ts, n = seq + 1, ts + 160, n + 160
        await asyncio.sleep(0.02)
    STREAM["seq"], STREAM["ts"] = seq, ts


async def session(sdp, args, digit):
    listen = args.listen
    ufrag, pwd, lite, candidates = read_sdp(sdp)
    conn = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False,
                             local_username=args.ufrag, local_password=args.pwd)
    conn.remote_is_lite = lite
    conn.remote_username = ufrag
    conn.remote_password = pwd
    for c in candidates:
        await conn.add_remote_candidate(c)
    await conn.add_remote_candidate(None)
    await conn.gather_candidates()
    local = conn.local_candidates[0]
    say({"ufrag": conn.local_username, "pwd": conn.local_password,
         "local": f"{local.host}:{local.port}", "lite": lite})
    await asyncio.wait_for(conn.connect(), 10)
    say({"connected": True})
    count = 0
    heard = []

    async def receive():
        nonlocal count
        while True:
            data = await conn.recv()
            if len(data) >= 12 and data[0] & 0xC0 == 0x80:
                count += 1
                if data[1] & 0x7F == 0:
                    heard.extend(ulaw_to_linear(b) for b in data[12:])

    # Listen first, sending nothing: what arrives came by the nomination alone, not by the
    # SBC latching onto our RTP's source.
    task = asyncio.create_task(receive())
    await asyncio.sleep(listen)
    say({"rtp": count})
    if args.tone:
        # Then talk: a tone, while what we hear is kept.
        heard.clear()
        await send_tone(conn, args.tone, args.tone_seconds)
        say({"heard": tones.blocks_holding(heard, 8000, args.hear, block=160) if args.hear else 0,
             "blocks": len(heard) // 160})
    await keypad(conn, digit)
    task.cancel()
    say({"keyed": digit})
    return conn


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=float, default=2.0)
    p.add_argument("--ufrag", help="our ice-ufrag, as our SIP offer gave it")
    p.add_argument("--pwd", help="our ice-pwd, as our SIP offer gave it")
    p.add_argument("--tone", type=float, default=0, help="after listening, send this tone (Hz)")
    p.add_argument("--tone-seconds", type=float, default=5)
    p.add_argument("--hear", type=float, default=0, help="count 20 ms blocks of this tone heard")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    conn = None
    digit = 5
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        if conn is not None:
            await conn.close()
        conn = await session(msg["sdp"], args, digit)
        digit += 1
    if conn is not None:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
