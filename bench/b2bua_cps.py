#!/usr/bin/env python3
"""Calls per second through the router's B2BUA beside Kamailio forwarding the same SIPp load.

Both sides get the same SIPp scenario (tests/peers/sipp/uac_auth_call.xml: INVITE → 407 →
INVITE with digest → 200 → ACK → 2 s → BYE) at the same offered rate, and pass the call to the
same kind of callee, a SIPp UAS:

- the router (release build): the callers are its agents' phones placing outside calls
  (`[tenants.outbound]`): MD5 digest (SIPp knows no SHA-256) against each agent's SIP password, the toll rules, a record per
  call, two legs with their media anchored (the relay sends each leg a frame every 20 ms), the
  number called on the trunk (the UAS);
- Kamailio (tests/peers/kamailio/forward-load.cfg, 2 workers): digest, then a stateful relay
  with Record-Route to the UAS — proxying only, no media, no records.

With `--inbound` the load is the contact center's own: SIPp's built-in UAC calls the tenant's
number from the carrier trunk (no digest: the trunk knows the source), and the router takes each
call as a customer's — the number's queue, nobody logged in, its no-agents route to an outside
number the toll rules allow, placed on the trunk to the UAS while the caller hears the transfer
prompt, both legs anchored, a record per call. Kamailio relays the same calls without digest
(`-A NOAUTH`).

Prints each side's completed calls per second, failed calls, the server's CPU time per call
(user + system, all its processes and threads) and the ratios. A benchmark, not a test: numbers
move with the machine, and SIPp (both ends) shares it. Needs sipp and kamailio
(tests/peers/install.sh installs both).

    python3 bench/b2bua_cps.py [--calls 1000] [--rate 20] [--agents 40] [--inbound] [--overload-queue N]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from proctree import cpu_seconds
from sip_register import ROOT, free_port, timed_sipp, wait_options


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def overload_refused(base):
    """New calls the router refused with 503 while overloaded (its metrics)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('sip_requests_refused_total{why="overload"}'):
                return int(float(line.split()[-1]))
    return 0


def wait_http(url, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"the router does not answer on {url}")


# Every call dials this number: SIPp's digest answers carry one fixed URI (-auth_uri), which
# must be the Request-URI's for the router (RFC 3261 §22.4; Kamailio does not check it).
NUMBER = "+15550000000"


# What --inbound callers dial: the tenant's number on the carrier trunk.
TENANT_NUMBER = "+18005550100"


def run_sipp(port, users_csv, calls, rate, workdir, label):
    """SIPp against `port`: agents' phones with digest (`users_csv`), or with `users_csv`
    None, trunk callers dialling the tenant's number (SIPp's built-in UAC, 2 s calls)."""
    stats = os.path.join(workdir, f"{label}.csv")
    if users_csv is None:
        how = ["-sn", "uac", "-s", TENANT_NUMBER, "-d", "2000"]
    else:
        scenario = os.path.join(ROOT, "tests/peers/sipp/uac_auth_call.xml")
        how = ["-sf", scenario, "-inf", users_csv, "-auth_uri", f"{NUMBER}@127.0.0.1:{port}"]
    cmd = ["sipp", f"127.0.0.1:{port}", *how,
           "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
           "-m", str(calls), "-r", str(rate), "-l", str(rate * 10),
           "-nostdin", "-trace_stat", "-stf", stats, "-fd", "1",
           "-timeout", "300s", "-timeout_error", "-recv_timeout", "20000"]
    with open(os.path.join(workdir, f"{label}.sipp.log"), "w") as log:
        return timed_sipp(cmd, stats, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000, help="calls per server")
    ap.add_argument("--rate", type=int, default=20, help="offered calls per second")
    ap.add_argument("--agents", type=int, default=40, help="callers (agents' phones)")
    ap.add_argument("--inbound", action="store_true",
                    help="customers' calls from the trunk to the tenant's number instead of agents' outside calls")
    ap.add_argument("--overload-queue", type=int,
                    help="the router's [sip] overload_queue (messages waiting at which every new call gets 503; "
                         "default: the router's)")
    a = ap.parse_args()
    for tool in ("sipp", "kamailio", "cargo"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is missing: run tests/peers/install.sh")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--locked", "-p", "switchboard-router"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    router_bin = os.path.join(target, "release/switchboard-router")
    work = tempfile.mkdtemp(prefix="b2bua-cps-")
    procs = []
    try:
        uas_router, uas_kam = free_port(), free_port()
        sip, api, kam_port = free_port(), free_port(), free_port()
        # Each side's callee: SIPp's built-in UAS (180, 200 with SDP, waits for the BYE).
        for port in (uas_router, uas_kam):
            procs.append(subprocess.Popen(
                ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()),
                 "-nostdin", "-bg"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        agents = "\n".join(f'[[tenants.agents]]\nupn = "agent{i}@contoso.example"\n'
                           for i in range(1, a.agents + 1))
        # Inbound: nobody logged in, so the queue's no-agents route takes each caller to the
        # outside number (the UAS) on the trunk.
        no_agents = f'no_agents = {{ number = "{NUMBER}" }}' if a.inbound else ""
        config = f"""
[sip]
listen = "127.0.0.1:{sip}"
# SIPp answers MD5 challenges only (the router asks for SHA-256 unless told).
digest = "MD5"
{f"overload_queue = {a.overload_queue}" if a.overload_queue else ""}

[[tenants]]
id = "contoso"
domain = "contoso.example"

[[tenants.trunks]]
name = "carrier"
allow = ["127.0.0.1"]
outbound = "sip:127.0.0.1:{uas_router}"
max_calls = 100000

[[tenants.numbers]]
number = "{TENANT_NUMBER}"
queue = "general"

[[tenants.queues]]
name = "general"
{no_agents}

[tenants.outbound]
trunk = "carrier"
allow = ["+1555"]
max_per_hour = 1000

{agents}
"""
        with open(os.path.join(work, "router.toml"), "w") as f:
            f.write(config)
        router = subprocess.Popen(
            [router_bin, "--config", os.path.join(work, "router.toml"), "--data-dir", os.path.join(work, "data"),
             "--listen", f"127.0.0.1:{api}", "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "router.log"), "w"))
        procs.append(router)
        base = f"http://127.0.0.1:{api}"
        wait_http(f"{base}/v1/health")
        wait_options(sip)
        # The agents' SIP credentials, from the router's API (it checks no tokens here).
        rows = []
        for i in range(1, 0 if a.inbound else a.agents + 1):
            c = http("POST", f"{base}/v1/agents/me/sip-credentials", {"agent": f"agent{i}@contoso.example"})
            rows.append((c["username"], c["password"], c["domain"]))
        router_csv = os.path.join(work, "router-users.csv")
        with open(router_csv, "w") as f:
            f.write("SEQUENTIAL\n")
            for n, (user, pw, domain) in enumerate(rows):
                f.write(f"{user};[authentication username={user} password={pw}];{NUMBER};{domain}\n")
        kam_csv = os.path.join(work, "kamailio-users.csv")
        with open(kam_csv, "w") as f:
            f.write("SEQUENTIAL\n")
            for n in range(a.agents):
                f.write(f"agent{n + 1};[authentication username=agent{n + 1} password=secret];{NUMBER};contoso.example\n")
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        kamailio = subprocess.Popen(
            [kam, "-DD", "-E", "-f", os.path.join(ROOT, "tests/peers/kamailio/forward-load.cfg"),
             "-l", f"udp:127.0.0.1:{kam_port}", "-A", f'UAS="sip:127.0.0.1:{uas_kam}"',
             *(["-A", "NOAUTH"] if a.inbound else []),
             "-P", os.path.join(work, "k.pid"), "-Y", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(kamailio)
        wait_options(kam_port)
        results = {}
        if a.inbound:
            router_csv = kam_csv = None
        for label, port, pid, users in (("switchboard", sip, router.pid, router_csv),
                                        ("kamailio", kam_port, kamailio.pid, kam_csv)):
            cpu0 = cpu_seconds(pid)
            try:
                ok, failed, wall = run_sipp(port, users, a.calls, a.rate, work, label)
            except FileNotFoundError:
                sys.exit(f"SIPp did not run against {label}: see {work}/{label}.sipp.log")
            cpu = cpu_seconds(pid) - cpu0
            per = cpu / ok * 1e3 if ok else float("inf")
            results[label] = (ok / wall if wall else 0.0, per, failed)
            print(f"{label:12} {ok:6d} calls completed, {failed:5d} failed in {wall:6.1f} s: {ok / wall:7.1f} calls/s, "
                  f"server CPU {cpu:6.2f} s = {per:6.2f} ms per call")
            if label == "switchboard":
                shed = overload_refused(base)
                if shed:
                    print(f"{'':12} {shed} INVITEs (first tries and digest answers) were refused with 503 while "
                          f"the edge was overloaded (docs/contact-center.md, Overload)")
        (ours, ours_cpu, ours_failed), (theirs, theirs_cpu, _) = results["switchboard"], results["kamailio"]
        ratio = lambda x, y: f"{x / y:.2f}" if y else "n/a"
        what = ("customers' calls to the tenant's number, sent on by the queue's no-agents route"
                if a.inbound else "agents' outside calls")
        print(f"ratio switchboard/kamailio: calls/s {ratio(ours, theirs)}, CPU per call {ratio(ours_cpu, theirs_cpu)} "
              f"(offered {a.rate}/s, {a.calls} calls of 2 s each, {what}; the router also anchors both legs' media)")
        if ours_failed or not ours:
            print(f"the router completed {ours:.0f}/s and failed {ours_failed}: see {work} (router.log, *.sipp.log)")
            work = None
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["pkill", "-f", "sipp -sn uas -i 127.0.0.1"], check=False)
        if work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
