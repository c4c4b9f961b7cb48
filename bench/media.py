#!/usr/bin/env python3
"""The media engine beside baresip (Debian's 1.0), on 127.0.0.1, in the same run:

1. CPU per call: one Opus call (48 kHz mono, 20 ms, 32 kbit/s) between our headless agent
   (release build) and baresip, each side playing the same 60 s of speech-like audio from a
   WAV file into the call and playing what it hears on a sound device — the same PulseAudio
   null sink for both (a server of the script's own; ALSA's pulse plugin for both, through cpal
   for us). Both processes carry the same call: encode, decode, RTP, jitter buffer, playback.
   Prints each one's CPU time (user + system) over the call and the ratio. (ALSA's `null`
   device would be cheaper to set up but has no clock: baresip's player spins on it.)
2. Delay: our agent calls an echo — our agent with --echo, then baresip's echo module — playing
   1000 Hz bursts and recording what comes back. The lag between a burst in the file and in the
   recording is the round trip through both ends' pipelines (no sound card: file in, file out).
   Our pipeline's share (one send path + one receive path) is half the round trip with our echo;
   baresip's is the round trip with its echo less our half.
3. Memory per active call: N calls from baresip to one answering agent; the agent's resident
   memory with N calls up, less before the first, over N. Baresip's (the caller) likewise.

A benchmark, not a test: numbers move with the machine. Needs baresip (tests/peers/install.sh).

    python3 bench/media.py [--seconds 60] [--calls 20] [--only cpu --microphone device]
"""
import argparse
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import wave

from proctree import cpu_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 48000


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wav(path, samples, rate=RATE):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", max(-32767, min(32767, int(s)))) for s in samples))


def read_wav(path):
    with wave.open(path, "rb") as w:
        n, ch, width, rate = w.getnframes(), w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(n)
    if width != 2:
        sys.exit(f"{path}: expected 16-bit samples")
    vals = struct.unpack(f"<{len(raw) // 2}h", raw)
    return [sum(vals[i:i + ch]) / ch for i in range(0, len(vals), ch)], rate


def speech_like(seconds):
    """Voiced syllables (a 110–220 Hz glottal pitch with harmonics shaped like vowels, about
    four a second) and pauses — close enough to speech for a codec's workload."""
    out = []
    phase = 0.0
    for i in range(seconds * RATE):
        t = i / RATE
        syllable = (t * 4.0) % 1.0
        talking = (t % 7.0) < 5.0  # 5 s talk, 2 s pause
        env = math.sin(math.pi * syllable) ** 2 if talking and syllable < 0.8 else 0.0
        pitch = 150 + 60 * math.sin(2 * math.pi * 0.3 * t)
        phase += 2 * math.pi * pitch / RATE
        v = sum(math.sin(k * phase) / k for k in (1, 2, 3, 5, 7, 9))
        out.append(6000 * env * v)
    return out


def bursts(seconds):
    """1 s of silence, then 200 ms of 1000 Hz every second."""
    out = []
    for i in range(seconds * RATE):
        t = i / RATE
        on = t >= 1.0 and (t % 1.0) < 0.2
        out.append(10000 * math.sin(2 * math.pi * 1000 * t) if on else 0.0)
    return out


def onsets(samples, rate, threshold):
    """Sample times (s) where a burst starts: 5 ms blocks crossing `threshold` after ≥ 300 ms
    below it."""
    block = rate // 200
    found, quiet = [], 1.0
    for b in range(0, len(samples) - block, block):
        rms = math.sqrt(sum(x * x for x in samples[b:b + block]) / block)
        if rms >= threshold and quiet >= 0.3:
            found.append(b / rate)
        quiet = 0.0 if rms >= threshold else quiet + block / rate
    return found


def agent_binary():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "switchboard-agent"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "switchboard-agent")


class Baresip:
    def __init__(self, work, source, echo=False, max_calls=4, player=None):
        self.dir = tempfile.mkdtemp(dir=work)
        self.sip = free_port()
        self.ctrl = free_port(socket.SOCK_STREAM)
        with open(os.path.join(ROOT, "tests/peers/baresip/config")) as f:
            cfg = f.read()
        rtp = 20000 + (self.sip % 200) * 100
        cfg = (cfg.replace("@SIP_PORT@", str(self.sip)).replace("@CTRL_PORT@", str(self.ctrl))
               .replace("@DIR@", self.dir).replace("@TONE_HZ@", "440")
               .replace("@RTP_FIRST@", str(rtp)).replace("@RTP_LAST@", str(rtp + 98)))
        lines = []
        for line in cfg.splitlines():
            key = line.split()[0] if line.split() else ""
            if key == "audio_source":
                line = f"audio_source\t\t{source}"
            elif key == "audio_player" and player:
                line = f"audio_player\t\t{player}"
            elif key == "ausrc_channels" and not source.startswith("ausine"):
                line = "ausrc_channels\t\t1"
            elif key == "call_max_calls":
                line = f"call_max_calls\t\t{max_calls}"
            elif line.strip() == "module\t\t\tsndfile.so":
                continue  # no recording: the call's audio goes to the null device only
            lines.append(line)
        lines += ["opus_bitrate\t\t32000", "opus_stereo\t\tno", "opus_sprop_stereo\tno"]
        if echo:
            # The echo module loops each call's audio through aubridge devices.
            lines += ["module\t\t\taubridge.so", "module_app\t\techo.so"]
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write("\n".join(lines) + "\n")
        answermode = "manual" if echo else "auto"
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write(f"<sip:bob@127.0.0.1>;regint=0;answermode={answermode}\n")
        self.log = open(os.path.join(self.dir, "baresip.log"), "w")
        self.proc = subprocess.Popen(["baresip", "-f", self.dir], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        self.wait_for("baresip is ready")

    def text(self):
        with open(os.path.join(self.dir, "baresip.log"), errors="replace") as f:
            return f.read()

    def wait_for(self, needle, timeout=15, count=1):
        end = time.time() + timeout
        while self.text().count(needle) < count:
            if time.time() > end:
                sys.exit(f"baresip did not log {needle!r}:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def command(self, command, params=""):
        body = json.dumps({"command": command, "params": params, "token": "b"})
        with socket.create_connection(("127.0.0.1", self.ctrl)) as s:
            s.sendall(f"{len(body)}:{body},".encode())
            s.settimeout(2)
            try:
                s.recv(4096)
            except socket.timeout:
                pass

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Pulse:
    """A PulseAudio server of our own with a null sink as the default sink."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(dir=work)
        self.socket = os.path.join(self.dir, "native")
        env = dict(os.environ, HOME=self.dir, XDG_RUNTIME_DIR=self.dir)
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
             f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "--load=module-null-sink sink_name=bench"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ["PULSE_SERVER"] = f"unix:{self.socket}"
        end = time.time() + 10
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if time.time() > end:
                sys.exit("pulseaudio did not start")
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def answering_agent(binary, extra, log):
    port = free_port()
    proc = subprocess.Popen([binary, "--json", "answer", "--bind", f"127.0.0.1:{port}", "--wait", "30",
                             *extra], stdout=subprocess.PIPE, stderr=log, text=True)
    time.sleep(0.5)
    return proc, port


def wait_events(proc, name, count, timeout):
    """Reads the agent's JSON events until `count` of `name` came or `timeout` passed (never
    blocks past it: the pipe is polled); returns how many came."""
    import select
    seen = 0
    end = time.time() + timeout
    while seen < count:
        left = end - time.time()
        if left <= 0:
            break
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            sys.exit("the agent exited early")
        try:
            if json.loads(line).get("event") == name:
                seen += 1
        except json.JSONDecodeError:
            pass
    return seen


def cpu_run(binary, work, seconds, microphone="file"):
    """With `microphone` "device", both capture from the sound server too (the null sink's
    monitor, with the speech played into the sink), as a softphone in use does."""
    speech = os.path.join(work, "speech.wav")
    write_wav(speech, speech_like(seconds + 5))
    log = open(os.path.join(work, "agent-cpu.log"), "w")
    pulse = Pulse(work)
    room = None
    if microphone == "device":
        room = subprocess.Popen(["paplay", speech], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        ours, port = answering_agent(
            binary, ["--codec", "opus", "--input-device", "default", "--output-device", "default"],
            log)
        bob = Baresip(work, "alsa,default", player="alsa,default")
    else:
        ours, port = answering_agent(
            binary, ["--codec", "opus", "--play", speech, "--output-device", "default"], log)
        bob = Baresip(work, f"aufile,{speech}", player="alsa,default")
    bob.command("dial", f"sip:agent@127.0.0.1:{port}")
    wait_events(ours, "established", 1, 10)
    bob.wait_for("Call established")
    time.sleep(1)
    c0 = (cpu_seconds(ours.pid), cpu_seconds(bob.proc.pid))
    time.sleep(seconds)
    c1 = (cpu_seconds(ours.pid), cpu_seconds(bob.proc.pid))
    bob.command("hangup")
    ours.wait(15)
    bob.stop()
    if room:
        room.terminate()
        room.wait(5)
    pulse.stop()
    return c1[0] - c0[0], c1[1] - c0[1]


def delay_run(binary, work, echo_kind):
    probe = os.path.join(work, "bursts.wav")
    write_wav(probe, bursts(11))
    back = os.path.join(work, f"back-{echo_kind}.wav")
    log = open(os.path.join(work, f"agent-delay-{echo_kind}.log"), "w")
    if echo_kind == "ours":
        echo, port = answering_agent(binary, ["--codec", "opus", "--echo"], log)
        target, bob = f"sip:echo@127.0.0.1:{port}", None
    else:
        # The echo module names an aubridge device per call; source and player are aubridge.
        bob = Baresip(work, "aubridge,echo", echo=True, player="aubridge,echo")
        target, echo = f"sip:bob@127.0.0.1:{bob.sip}", None
    subprocess.run([binary, "--json", "call", target, "--codec", "opus", "--play", probe,
                    "--record", back, "--hangup-after", "11"], stdout=log, stderr=log, check=True)
    if echo:
        echo.wait(15)
    if bob:
        bob.stop()
    sent, rate = read_wav(probe)
    got, got_rate = read_wav(back)
    peak = max((abs(x) for x in got), default=0)
    if peak < 1000:
        sys.exit(f"nothing came back from the {echo_kind} echo (see {work})")
    a = onsets(sent, rate, 2000)
    b = onsets(got, got_rate, peak / 8)
    lags = []
    for t in a:
        later = [x - t for x in b if 0 <= x - t < 0.8]
        if later:
            lags.append(later[0] * 1000)
    if len(lags) < 5:
        sys.exit(f"too few bursts came back from the {echo_kind} echo: {lags}")
    lags.sort()
    return lags[len(lags) // 2], len(lags)


def memory_run(binary, work, calls):
    log = open(os.path.join(work, "agent-mem.log"), "w")
    ours, port = answering_agent(binary, ["--codec", "opus", "--calls", str(calls)], log)
    bob = Baresip(work, "ausine,440", max_calls=calls + 2)
    time.sleep(1)
    before = (rss_kib(ours.pid), rss_kib(bob.proc.pid))
    # One call at a time, each waited for: baresip drops dials that come too fast.
    up = 0
    for _ in range(calls):
        bob.command("dial", f"sip:agent@127.0.0.1:{port}")
        up += wait_events(ours, "established", 1, 10)
    if up == 0:
        sys.exit("no call came up for the memory run")
    if up < calls:
        print(f"(only {up} of {calls} calls came up; memory is per call that did)")
    time.sleep(3)
    during = (rss_kib(ours.pid), rss_kib(bob.proc.pid))
    bob.stop()
    ours.kill()
    return [(d - b) / up for d, b in zip(during, before)], up


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--only", choices=["cpu", "delay", "memory"], help="run one part")
    ap.add_argument("--microphone", choices=["file", "device"], default="file",
                    help="the CPU part: each side's microphone a WAV file (default), or the "
                         "sound server's (speech played into the null sink, its monitor heard)")
    args = ap.parse_args()
    if not shutil.which("baresip"):
        sys.exit("baresip is not installed — run tests/peers/install.sh")
    binary = agent_binary()
    work = tempfile.mkdtemp(prefix="sb-media-bench-")

    if args.only in (None, "cpu"):
        ours_cpu, bare_cpu = cpu_run(binary, work, args.seconds, args.microphone)
        print(f"CPU for one {args.seconds} s Opus call (microphones: {args.microphone}): ours {ours_cpu * 1000:.0f} ms, "
              f"baresip {bare_cpu * 1000:.0f} ms — ratio {ours_cpu / max(bare_cpu, 1e-9):.2f} "
              f"({ours_cpu / args.seconds * 100:.2f} % vs {bare_cpu / args.seconds * 100:.2f} % of a core)")

    if args.only in (None, "delay"):
        rt_ours, n1 = delay_run(binary, work, "ours")
        rt_bare, n2 = delay_run(binary, work, "baresip")
        ours_one_way = rt_ours / 2
        bare_one_way = rt_bare - ours_one_way
        print(f"Round trip through an echo (median of {n1}/{n2} bursts): ours {rt_ours:.0f} ms, "
              f"via baresip's echo {rt_bare:.0f} ms")
        print(f"Pipeline delay, one send path + one receive path: ours {ours_one_way:.0f} ms, "
              f"baresip {bare_one_way:.0f} ms — ratio {ours_one_way / max(bare_one_way, 1e-9):.2f}")

    if args.only in (None, "memory"):
        (mem_ours, mem_bare), up = memory_run(binary, work, args.calls)
        print(f"Memory per active call ({up} calls): ours {mem_ours:.0f} KiB, "
              f"baresip {mem_bare:.0f} KiB")

    print(f"(logs and files in {work})")


if __name__ == "__main__":
    main()
