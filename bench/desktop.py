#!/usr/bin/env python3
"""Desktop app benchmark (not a test): cold start to first paint, resident memory when idle, and
CPU per call-second during an Opus call beside baresip.

It starts a router and the real desktop app (under Xvfb when there is no display), waits for
the UI's first paint (the app logs `first_paint_unix_ms` when the UI calls `ui_ready` after its
first frame), lets it idle, then sums the memory of the app process and every process under it
(WebKitWebProcess, WebKitNetworkProcess, …). It prints one line per run and the medians.

With `--call SECONDS` it then measures a call: the router runs the demo contact center
(`crates/router/demo.toml`, free loopback ports), the window is the demo's agent
(`SWITCHBOARD_AGENT`, as in the window tests) and is driven over WebDriver (tauri-driver and
WebKitWebDriver, as the window tests drive it): Ready, then Answer when a queue call rings.
The caller is baresip (Debian's 1.0) dialling the demo number and pressing 1. Both ends are
softphones on the same devices: a PulseAudio server of the script's own with a null sink, where
speech-like audio plays (the room) and each plays what it hears, and whose monitor is each one's
microphone (ALSA's pulse plugin for both, through cpal for the app). Over SECONDS of
the answered call it prints the CPU time (user + system) of the app's process (the call engine:
SIP, Opus, RTP, jitter buffer, devices; and WebKit's UI side, which runs in it), of the app with
its WebKit processes (the window drawing the call's timer and quality), and of baresip, with
the ratios; and, measured as long before the call, the same window Ready with no call; and the
app's threads by name (the call pump, the sound server's and cpal's threads, GTK's and WebKit's),
the busiest first, in the call and before it. The codec is checked: the window's call must be
Opus.

    python3 bench/desktop.py [--runs 5] [--idle 10] [--drop-caches] [--call 60]

Build first: `npm --prefix ui run build && cargo build -p switchboard-router -p switchboard-desktop
-p switchboard-tenant-sim` (and `bash tests/peers/install.sh` for baresip and tauri-driver)
(`--release` binaries with SWITCHBOARD_BIN_DIR=target/release for shipping figures).
`--drop-caches` (root only) empties the page cache before the first run, so it is a true cold start.
"""
import argparse
import json
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
import urllib.error
import urllib.request
from pathlib import Path

from proctree import cpu_seconds, descendants, thread_cpu, thread_delta

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


class WebDriver:
    """The few W3C WebDriver commands the call needs, over tauri-driver (JSON over HTTP)."""

    def __init__(self, url: str, app: Path):
        self.url = url
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "wry", "tauri:options": {"application": str(app)}}}}
        self.session = self.post("/session", caps)["sessionId"]

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def click(self, selector: str, timeout: float = 30) -> None:
        end = time.time() + timeout
        last = ""
        while time.time() < end:
            try:
                e = self.post(f"/session/{self.session}/element",
                              {"using": "css selector", "value": selector})
                eid = next(iter(e.values()))
                self.post(f"/session/{self.session}/execute/sync", {
                    "script": "arguments[0].scrollIntoView({block: 'center'})", "args": [e]})
                self.post(f"/session/{self.session}/element/{eid}/click", {})
                return
            except urllib.error.HTTPError as err:
                last = err.read().decode(errors="replace")[:300]
                time.sleep(0.2)
        raise SystemExit(f"{selector} was not clickable within {timeout} s: {last}")

    def attr(self, selector: str, name: str) -> str | None:
        try:
            return self.post(f"/session/{self.session}/execute/sync", {
                "script": "const e = document.querySelector(arguments[0]);"
                          " return e ? e.getAttribute(arguments[1]) : null;",
                "args": [selector, name]})
        except urllib.error.HTTPError:
            return None

    def wait_attr(self, selector: str, name: str, value: str, timeout: float = 30) -> None:
        end = time.time() + timeout
        while self.attr(selector, name) != value:
            if time.time() > end:
                raise SystemExit(f"{selector} [{name}] is {self.attr(selector, name)!r}, "
                                 f"not {value!r}, after {timeout} s")
            time.sleep(0.2)

    def close(self) -> None:
        try:
            req = urllib.request.Request(f"{self.url}/session/{self.session}", method="DELETE")
            urllib.request.urlopen(req, timeout=20).close()
        except OSError:
            pass


def wait_for(what: str, timeout: float, check):
    end = time.time() + timeout
    while time.time() < end:
        v = check()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"{what}: not within {timeout} s")


def app_pid(app: Path) -> int | None:
    """The running app's process (started by WebKitWebDriver)."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "exe") == str(app.resolve()):
                    return int(d.name)
            except OSError:
                pass
    return None


def own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call_run(app: Path, seconds: float, work: Path) -> None:
    """The window answers an Opus queue call from baresip; CPU of each over `seconds`."""
    import media  # baresip, PulseAudio and the speech-like signal, as the media benchmark has them

    for prog in ("baresip", "tauri-driver", "WebKitWebDriver", "pulseaudio"):
        if not shutil.which(prog) and not (Path.home() / ".cargo/bin" / prog).exists():
            raise SystemExit(f"{prog} not found: bash tests/peers/install.sh")
    bins = bin_dir()
    sim_bin, router_bin = bins / "switchboard-tenant-sim", bins / "switchboard-router"
    if not sim_bin.is_file():
        raise SystemExit(f"{sim_bin} not built; see this script's help")
    procs: list[subprocess.Popen] = []
    driver = None
    pulse = media.Pulse(str(work))  # sets PULSE_SERVER for everything started from here
    bob = None
    wd = None
    try:
        sim_port, router_port, sip = free_port(), free_port(), media.free_port()
        procs.append(subprocess.Popen([str(sim_bin), "--listen", f"127.0.0.1:{sim_port}"],
                                      stdout=open(work / "tenant-sim.log", "w"),
                                      stderr=subprocess.STDOUT))
        demo = (ROOT / "crates/router/demo.toml").read_text()
        if "127.0.0.1:7760" not in demo:
            raise SystemExit("crates/router/demo.toml changed: no SIP listener 127.0.0.1:7760")
        config = work / "router-call.toml"
        config.write_text(demo.replace("127.0.0.1:7760", f"127.0.0.1:{sip}"))
        procs.append(subprocess.Popen(
            [str(router_bin), "--listen", f"127.0.0.1:{router_port}", "--data-dir",
             str(work / "router-call"), "--config", str(config)],
            stdout=open(work / "router-call.log", "w"), stderr=subprocess.STDOUT))
        router = f"http://127.0.0.1:{router_port}"
        wait_http(router + "/v1/health", 30)
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/info", 30)

        config_dir = work / "call-config"
        config_dir.mkdir()
        (config_dir / "tenant.toml").write_text(
            f'authority = "http://127.0.0.1:{sim_port}/5b1dc0de-7e4a-4c1e-9d1a-5317c4b0a4d0/v2.0"\n'
            'client_id = "8f3b2a61-1c57-4d0e-a7b2-5c3a9e6d1f20"\n')
        agent = "AdeleV@contoso.example"
        driver_port, native_port = free_port(), free_port()
        tauri_driver = shutil.which("tauri-driver") or str(Path.home() / ".cargo/bin/tauri-driver")
        env = dict(os.environ, SWITCHBOARD_CONFIG_DIR=str(config_dir),
                   SWITCHBOARD_DATA_DIR=str(work / "call-data"), SWITCHBOARD_ROUTER_URL=router,
                   SWITCHBOARD_AGENT=agent, SWITCHBOARD_LOG="info")
        driver = subprocess.Popen(
            [tauri_driver, "--port", str(driver_port), "--native-port", str(native_port),
             "--native-driver", shutil.which("WebKitWebDriver") or "WebKitWebDriver"],
            env=env, stdout=open(work / "tauri-driver.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)

        def listening(port: int) -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for("tauri-driver and WebKitWebDriver to listen", 20,
                 lambda: listening(driver_port) and listening(native_port))
        wd = WebDriver(f"http://127.0.0.1:{driver_port}", app)
        wd.wait_attr('[data-testid="phone-registration"]', "data-state", "registered", 60)
        wd.click('[data-testid="work-state"] option[value="ready"]')

        def agent_state() -> str:
            with urllib.request.urlopen(f"{router}/v1/agents/me?agent={agent}", timeout=5) as r:
                return json.loads(r.read()).get("state", "")

        wait_for("the router to have the agent Ready", 30, lambda: agent_state() == "ready")
        # The same window Ready with no call, as long: what the call adds is the difference.
        pid = wait_for("the app's process", 10, lambda: app_pid(app))
        time.sleep(2)
        i0 = (own_cpu_seconds(pid), cpu_seconds(pid))
        it0 = thread_cpu(pid)
        time.sleep(seconds)
        i1 = (own_cpu_seconds(pid), cpu_seconds(pid))
        idle_threads = thread_delta(it0, thread_cpu(pid))
        idle_app, idle_tree = i1[0] - i0[0], i1[1] - i0[1]

        # The room: speech-like audio played into the sink, whose monitor both microphones
        # are. Both ends then capture, encode, decode and play on the same devices.
        speech = work / "speech.wav"
        media.write_wav(str(speech), media.speech_like(int(seconds) + 30))
        procs.append(subprocess.Popen(["paplay", str(speech)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        bob = media.Baresip(str(work), "alsa,default", player="alsa,default")
        bob.command("dial", f"sip:+18005550100@127.0.0.1:{sip}")
        bob.wait_for("Call established", 20)
        time.sleep(0.8)
        bob.command("sndcode", "1")  # billing: Adele's queue
        wd.click('[data-testid="answer"]', 60)
        wd.wait_attr('[data-testid="in-call"]', "data-testid", "in-call", 20)
        time.sleep(2)  # past the answer's own work
        c0 = (own_cpu_seconds(pid), cpu_seconds(pid), media.cpu_seconds(bob.proc.pid))
        t0 = thread_cpu(pid)
        time.sleep(seconds)
        c1 = (own_cpu_seconds(pid), cpu_seconds(pid), media.cpu_seconds(bob.proc.pid))
        threads = thread_delta(t0, thread_cpu(pid))
        log = re.sub(r"\x1b\[[0-9;]*m", "", (work / "tauri-driver.log").read_text(errors="replace"))
        codecs = sorted(set(re.findall(r"call media agreed.*?codec=\"?([A-Za-z0-9]+)", log)
                            + re.findall(r"codec=\"?([A-Za-z0-9]+).*?call media agreed", log)))
        if not any(c.lower().startswith("opus") for c in codecs):
            raise SystemExit(f"the window's call was not Opus (codecs in its log: {codecs}); "
                             f"see {work / 'tauri-driver.log'}")
        bob.command("hangup")
        app_s, tree_s, bob_s = (b - a for a, b in zip(c0, c1))
        print(f"call: {seconds:.0f} s of an Opus call answered in the window (codecs logged: "
              f"{', '.join(codecs)})")
        print(f"  CPU per call-second: the app {app_s / seconds * 1000:.1f} ms, the app with "
              f"WebKit {tree_s / seconds * 1000:.1f} ms, baresip {bob_s / seconds * 1000:.1f} ms")
        print(f"  the same window Ready with no call: the app {idle_app / seconds * 1000:.1f} ms, "
              f"with WebKit {idle_tree / seconds * 1000:.1f} ms; the call adds "
              f"{(app_s - idle_app) / seconds * 1000:.1f} ms to the app")
        if bob_s > 0:
            print(f"  ratio to baresip: the app {app_s / bob_s:.2f}x, with WebKit "
                  f"{tree_s / bob_s:.2f}x")
        print("  the app's threads, Ready with no call (ms per second): " + ", ".join(
            f"{name} {t / seconds * 1000:.1f}" for name, t in idle_threads[:6]))
        print("  the app's threads in the call (ms per call-second): " + ", ".join(
            f"{name} {t / seconds * 1000:.1f}" for name, t in threads[:10]))
    finally:
        if bob:
            bob.stop()
        if wd:
            wd.close()  # the session's end closes the window before its driver goes
        if driver:
            os.killpg(driver.pid, signal.SIGTERM)
            try:
                driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        pulse.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds idle before measuring memory")
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--call", type=float, default=0,
                    help="then seconds of an Opus call answered in the window, beside baresip")
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
            if starts:
                print(f"median: first paint {statistics.median(starts):.0f} ms; idle RSS "
                      f"{statistics.median(rsss) / 1024:.1f} MiB; idle PSS "
                      f"{statistics.median(psss) / 1024:.1f} MiB")
            if a.call > 0:
                call_run(app, a.call, work)
        finally:
            rproc.terminate()
            rproc.wait(timeout=10)


if __name__ == "__main__":
    main()
