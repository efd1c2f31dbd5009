"""The engine never outlives its worker.

vLLM runs its engine core (and, under it, its executor's workers) in processes of their own.
When the worker's main process dies without shutting the engine down (SIGKILL, the OOM
killer, a crash), those processes would live on under init, holding the engine's memory (on a
GPU, the whole card), and the next worker could not start. Three things prevent it:

- the worker marks its environment with its own identity (`OWNER_ENV`) before it builds the
  engine, so every engine process inherits the mark;
- `die_with_parent` runs in each engine process (a vLLM general plugin, which vLLM loads in
  the engine core and in every executor worker): the kernel sends it SIGKILL when its parent
  dies (PR_SET_PDEATHSIG), and it exits at once if its parent is already gone;
- `reap_stale_engines` runs when a worker starts: engine processes whose owner is dead (left
  over from a kill before this guard, or by a race) are killed and waited for, or the worker
  refuses to start, naming them.

Supervisors add the process group (vqueue.dev.stack_supervisor) or the cgroup (systemd's
KillMode=control-group, a container's PID namespace) on top.
"""

import ctypes
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vqueue.contract.wire import ENGINE_OWNER_ENV as OWNER_ENV

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PROC = Path("/proc")


class StaleEngineError(RuntimeError):
    """An engine process of a dead worker holds on, and this worker cannot end it."""


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or
    None if there is no such live process."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; the fields after it are plain.
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None  # exited, not yet reaped
    return fields[19]


def owner_mark(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid)}"


def mark_as_owner() -> None:
    """Called by the worker before it builds its engine: the engine's processes inherit it."""
    os.environ[OWNER_ENV] = owner_mark()


def _owner_alive(mark: str) -> bool:
    pid, _, started = mark.partition(":")
    return pid.isdigit() and start_time(int(pid)) == started


def set_parent_death_signal(sig: int) -> None:
    """The kernel sends `sig` to this process when the thread that forked it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def die_with_parent() -> None:
    """vLLM plugin entry point: in an engine process of a vqueue worker, die with the parent.

    A no-op anywhere else (the worker itself, `vllm serve`, a test that builds an engine)."""
    mark = os.environ.get(OWNER_ENV)
    if not mark or mark.partition(":")[0] == str(os.getpid()):
        return
    parent = os.getppid()
    set_parent_death_signal(signal.SIGKILL)
    # The parent may have died before the signal was armed: then we were re-parented.
    if os.getppid() != parent or not _owner_alive(mark):
        os._exit(1)


@dataclass(frozen=True)
class EngineProcess:
    pid: int
    owner: str
    command: str


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def _command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def stale_engines() -> list[EngineProcess]:
    """Processes marked as some worker's engine whose worker is no longer alive."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        mark = _environ(int(entry.name)).get(OWNER_ENV)
        if mark and not _owner_alive(mark):
            found.append(EngineProcess(int(entry.name), mark, _command(int(entry.name))))
    return found


def reap_stale_engines(timeout_s: float = 30.0) -> list[EngineProcess]:
    """Kill the engine processes of dead workers and wait until they are gone (their memory
    freed); returns them. Raises StaleEngineError naming any that cannot be ended."""
    stale = stale_engines()
    refused = []
    for process in stale:
        log.warning(
            "reaping pid %d (%s), an engine process of dead worker %s",
            process.pid,
            process.command,
            process.owner.partition(":")[0],
        )
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            refused.append(process)
    deadline = time.monotonic() + timeout_s
    left = [p for p in stale if p not in refused]
    while left and time.monotonic() < deadline:
        left = [p for p in left if start_time(p.pid) is not None]
        time.sleep(0.1)
    if refused or left:
        names = ", ".join(f"pid {p.pid} ({p.command})" for p in [*refused, *left])
        raise StaleEngineError(
            f"engine processes of a dead worker still hold on: {names}; end them and restart"
        )
    return stale
