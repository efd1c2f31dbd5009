"""How many of the host's cores a run kept busy, in all and by part of the stack (Linux /proc).

Several workers on one host share its CPUs with the API, Postgres, Redis and the load
generator; this tells whether a run was short of CPU, and which part took it. Processes are
put in the group of their nearest ancestor (or themselves) that names one, so the API's
uvicorn children count as the API and the engine core as the engine, not as its worker.
"""

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")
TICKS_S = os.sysconf("SC_CLK_TCK")

# Matched against a process's command line, in this order; the bench itself by its pid.
GROUPS = (
    ("engine core", ("VLLM::",)),
    ("worker", ("celeryd", "-m worker")),
    ("api", ("-m api",)),
    ("postgres", ("postgres",)),
    ("redis", ("redis-server",)),
)
BENCH = "bench and its clients"
# The bench's own engine, up beside the stack while the two sides take turns (turns.py).
BARE_ENGINE = "bare engine"


def _processes() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, command line, CPU ticks so far). The ticks are user + system of
    all its threads, and of its children that ended and were waited for: the bench's client
    processes live for one run each."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited meanwhile
            continue
        # The command name (2nd field) may hold spaces: the fields that follow come after ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), cmdline, sum(map(int, fields[11:15])))
    return found


def _own_group(pid: int, cmdline: str, bench_pid: int) -> str | None:
    if pid == bench_pid:
        return BENCH
    for group, needles in GROUPS:
        if any(needle in cmdline for needle in needles):
            return group
    return None


def _named_ancestry(
    pid: int, processes: dict[int, tuple[int, str, int]], bench_pid: int
) -> Iterator[str]:
    """The groups named by a process and its ancestors, nearest first."""
    seen = set()
    while pid in processes and pid not in seen:
        seen.add(pid)
        parent, cmdline, _ = processes[pid]
        if (group := _own_group(pid, cmdline, bench_pid)) is not None:
            yield group
        pid = parent


def group_of(pid: int, processes: dict[int, tuple[int, str, int]], bench_pid: int) -> str:
    groups = _named_ancestry(pid, processes, bench_pid)
    nearest = next(groups, "other")
    if nearest != "engine core":
        return nearest
    # An engine core (and its own processes) is its worker's, or the bench's own.
    owner = next((group for group in groups if group != "engine core"), None)
    return BARE_ENGINE if owner == BENCH else nearest


def _host_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the host since boot; idle and iowait are not busy."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class CpuUse:
    """Started before a run, read after it: cores kept busy over the run, by group."""

    def __init__(self) -> None:
        self._bench = os.getpid()
        self._started = time.monotonic()
        self._host = _host_ticks()
        self._ticks = {pid: ticks for pid, (_, _, ticks) in _processes().items()}

    def read(self) -> dict[str, object]:
        seconds = time.monotonic() - self._started
        busy, _ = _host_ticks()
        processes = _processes()
        used: Counter[str] = Counter()
        for pid, (_, _, ticks) in processes.items():
            # A process born during the run counts from zero.
            used[group_of(pid, processes, self._bench)] += ticks - self._ticks.get(pid, 0)
        return {
            "seconds": round(seconds, 2),
            "cores": os.cpu_count(),
            "host_busy_cores": round((busy - self._host[0]) / TICKS_S / seconds, 2),
            "busy_cores": {
                group: round(ticks / TICKS_S / seconds, 2)
                for group, ticks in used.most_common()
                if ticks > 0
            },
        }
