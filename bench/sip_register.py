#!/usr/bin/env python3
"""REGISTER load with digest authentication: our registrar building block (the `registrar`
example of switchboard-sip, release build, one thread) beside Kamailio (register-load.cfg,
2 worker processes), both on 127.0.0.1 in the same run, driven by SIPp with the same scenario
(tests/peers/sipp/register_auth.xml: REGISTER → 401 → REGISTER with MD5 digest → 200) and
the same offered load. Prints each side's successful registrations per second, the server's CPU
time per registration (user + system, all its processes), and the ratios.

A benchmark, not a test: numbers move with the machine. Needs sipp and kamailio
(tests/peers/install.sh installs both).

    python3 bench/sip_register.py [--calls 20000] [--rate 4000] [--users 1000]
"""
import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from proctree import cpu_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_options(port, timeout=10.0):
    """Until the server answers OPTIONS (or any SIP response) on udp:127.0.0.1:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    s.bind(("127.0.0.1", 0))
    local = s.getsockname()
    end = time.time() + timeout
    n = 0
    while time.time() < end:
        n += 1
        msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bKprobe{n}\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe{n}\r\n"
               f"CSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(4096)
            if data.startswith(b"SIP/2.0"):
                return
        except socket.timeout:
            pass
    sys.exit(f"nothing answers on udp:127.0.0.1:{port}")


def run_sipp(port, users_csv, calls, rate, workdir, label):
    scenario = os.path.join(ROOT, "tests/peers/sipp/register_auth.xml")
    stats = os.path.join(workdir, f"{label}.csv")
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", scenario, "-inf", users_csv,
           "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls), "-r", str(rate),
           "-l", "2000", "-max_socket", "1", "-nostdin", "-trace_stat", "-stf", stats, "-fd", "1",
           "-timeout", "120s", "-timeout_error"]
    return timed_sipp(cmd, stats, subprocess.DEVNULL)


def timed_sipp(cmd, stats, stderr):
    """Runs SIPp (`cmd`, writing its statistics to `stats`): (successful, failed, seconds)."""
    started = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=stderr, check=False)
    wall = time.monotonic() - started
    with open(stats, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    head, last = rows[0], rows[-1]
    ok = int(last[head.index("SuccessfulCall(C)")])
    failed = int(last[head.index("FailedCall(C)")])
    return ok, failed, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000, help="registrations per server")
    ap.add_argument("--rate", type=int, default=4000, help="offered registrations per second")
    ap.add_argument("--users", type=int, default=1000)
    a = ap.parse_args()
    for tool in ("sipp", "kamailio", "cargo"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is missing: run tests/peers/install.sh")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "switchboard-sip", "--example", "registrar"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ours_bin = os.path.join(target, "release/examples/registrar")
    work = tempfile.mkdtemp(prefix="sip-register-")
    users_csv = os.path.join(work, "users.csv")
    with open(users_csv, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(1, a.users + 1):
            f.write(f"user{i};[authentication username=user{i} password=secret]\n")
    procs = []
    try:
        ours_port, kam_port = free_port(), free_port()
        procs.append(subprocess.Popen([ours_bin, f"127.0.0.1:{ours_port}", str(a.users), "secret"],
                                      stderr=subprocess.DEVNULL))
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        procs.append(subprocess.Popen([kam, "-DD", "-E", "-f", os.path.join(ROOT, "tests/peers/kamailio/register-load.cfg"),
                                       "-l", f"udp:127.0.0.1:{kam_port}", "-P", os.path.join(work, "k.pid"), "-Y", work],
                                      stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        wait_options(ours_port)
        wait_options(kam_port)
        results = {}
        servers = (("switchboard", ours_port, procs[0].pid), ("kamailio", kam_port, procs[1].pid))
        for label, port, pid in servers:
            cpu0 = cpu_seconds(pid)
            ok, failed, wall = run_sipp(port, users_csv, a.calls, a.rate, work, label)
            cpu = cpu_seconds(pid) - cpu0
            per = cpu / ok * 1e6 if ok else float("inf")
            results[label] = (ok / wall if wall else 0.0, per)
            print(f"{label:12} {ok:7d} registered, {failed:5d} failed in {wall:6.2f} s: {ok / wall:9.0f} /s, "
                  f"server CPU {cpu:6.2f} s = {per:6.1f} µs per registration")
        (ours, ours_cpu), (theirs, theirs_cpu) = results["switchboard"], results["kamailio"]
        print(f"ratio switchboard/kamailio: rate {ours / theirs:.2f}, CPU per registration {ours_cpu / theirs_cpu:.2f} "
              f"(offered {a.rate}/s, {a.calls} each; SIPp shares the machine, so the rate tops out at its ceiling)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
