"""Process-tree helpers shared by the benchmark scripts (Linux /proc)."""
import os
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    parent_of = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent_of[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent_of.items() if pp == p)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants, in seconds."""
    ticks = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each of pid's live threads, summed by thread name."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for t in tasks:
        try:
            stat = (t / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return out


def thread_delta(before: dict[str, float], after: dict[str, float]) -> list[tuple[str, float]]:
    """What each thread name took between two thread_cpu readings, the busiest first (a thread
    that ended in between is left out: its time is in the process's total only)."""
    d = [(name, after[name] - before.get(name, 0.0)) for name in after]
    return sorted((x for x in d if x[1] > 0), key=lambda x: -x[1])
