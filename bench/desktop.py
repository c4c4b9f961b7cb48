#!/usr/bin/env python3
"""Desktop app benchmark (not a test): cold start to first paint, and resident memory when idle.

It starts a router and the real desktop app (under Xvfb when there is no display), waits for
the UI's first paint (the app logs `first_paint_unix_ms` when the UI calls `ui_ready` after its
first frame), lets it idle, then sums the memory of the app process and every process under it
(WebKitWebProcess, WebKitNetworkProcess, …). It prints one line per run and the medians.

    python3 bench/desktop.py [--runs 5] [--idle 10] [--drop-caches]

Build first: `npm --prefix ui run build && cargo build -p switchboard-router -p switchboard-desktop`
(`--release` binaries with SWITCHBOARD_BIN_DIR=target/release for shipping figures).
`--drop-caches` (root only) empties the page cache before the first run, so it is a true cold start.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from proctree import descendants

ROOT = Path(__file__).resolve().parent.parent


def bin_dir() -> Path:
    if os.environ.get("SWITCHBOARD_BIN_DIR"):
        return Path(os.environ["SWITCHBOARD_BIN_DIR"])
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kib(pid: int) -> tuple[int, int, list[str]]:
    """(sum of RSS, sum of PSS, process names) over pid's tree."""
    rss = pss = 0
    names = []
    for p in descendants(pid):
        try:
            names.append(Path(f"/proc/{p}/comm").read_text().strip())
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss, names


def wait_http(url: str, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def one_run(app: Path, router_url: str, idle: float, workdir: Path) -> tuple[float, int, int, list[str]]:
    log = workdir / f"app-{time.time_ns()}.log"
    env = dict(os.environ, SWITCHBOARD_ROUTER_URL=router_url, SWITCHBOARD_LOG="info",
               SWITCHBOARD_CONFIG_DIR=str(workdir / "config"))
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen([str(app)], env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        first_paint = None
        end = time.time() + 60
        while time.time() < end and first_paint is None:
            text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
            m = re.search(r"first_paint_unix_ms=(\d+)", text)
            if m:
                first_paint = int(m.group(1)) / 1000.0
            elif proc.poll() is not None:
                raise SystemExit(f"the app exited ({proc.returncode}); see {log}")
            else:
                time.sleep(0.02)
        if first_paint is None:
            raise SystemExit(f"no first paint within 60 s; see {log}")
        time.sleep(idle)
        rss, pss, names = memory_kib(proc.pid)
        return (first_paint - t0) * 1000.0, rss, pss, names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds idle before measuring memory")
    ap.add_argument("--drop-caches", action="store_true")
    a = ap.parse_args()

    app, router = bin_dir() / "switchboard-desktop", bin_dir() / "switchboard-router"
    for b in (app, router):
        if not b.is_file():
            raise SystemExit(f"{b} not built; see this script's help")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if not shutil.which("xvfb-run"):
            raise SystemExit("no display and no xvfb-run: apt-get install xvfb xauth")
        os.execvp("xvfb-run", ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
                               sys.executable, *sys.argv])

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        rlog = open(work / "router.log", "w")
        rproc = subprocess.Popen([str(router), "--listen", f"127.0.0.1:{port}", "--data-dir",
                                  str(work / "data")], stdout=rlog, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/v1/health", 30)
            starts, rsss, psss = [], [], []
            for i in range(a.runs):
                if a.drop_caches and i == 0 and os.geteuid() == 0:
                    subprocess.run(["sync"], check=False)
                    Path("/proc/sys/vm/drop_caches").write_text("3\n")
                ms, rss, pss, names = one_run(app, url, a.idle, work)
                starts.append(ms); rsss.append(rss); psss.append(pss)
                print(f"run {i + 1}: first paint {ms:.0f} ms; idle memory RSS {rss / 1024:.1f} MiB, "
                      f"PSS {pss / 1024:.1f} MiB over {len(names)} processes ({', '.join(sorted(set(names)))})")
            print(f"median: first paint {statistics.median(starts):.0f} ms; idle RSS "
                  f"{statistics.median(rsss) / 1024:.1f} MiB; idle PSS {statistics.median(psss) / 1024:.1f} MiB")
        finally:
            rproc.terminate()
            rproc.wait(timeout=10)


if __name__ == "__main__":
    main()
