"""Keeps the local stack's processes running (`make up`, `make run`): a part that dies is
restarted with backoff, and a part that cannot start never stops the parts that run.

Each part runs in a process group of its own. When its main process exits, whatever it left
in that group (a worker's vLLM engine processes) is killed with it before the restart, so a
new worker never finds the old engine holding the memory. Every restart is logged and counted
in the metrics hash (`vqueue_process_restarts_total` in GET /metrics).
"""

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from vqueue.contract.metrics import METRICS_KEY, RESTARTS_PREFIX
from vqueue.contract.wire import ENGINE_OWNER_ENV
from vqueue.settings import Settings

log = logging.getLogger("vqueue.dev.stack")

# Backoff after a part exits: doubled after each exit that followed a short run.
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
# A part that ran this long before it exited is restarted with the first backoff again.
STABLE_AFTER_S = 120.0
STOP_GRACE_S = 60.0


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@dataclass
class Part:
    name: str
    command: list[str]
    process: "subprocess.Popen[bytes] | None" = None
    started_at: float = 0.0
    next_start: float = 0.0
    backoff_s: float = FIRST_BACKOFF_S
    starts: int = 0
    last_exit: str | None = None
    # Set by `hold`: stopped on purpose, not restarted until released.
    held: bool = False


class StackSupervisor:
    def __init__(self, settings: Settings, commands: dict[str, list[str]]) -> None:
        self.settings = settings
        self.parts = {name: Part(name, command) for name, command in commands.items()}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._redis = Redis.from_url(settings.redis_url, socket_timeout=2)

    def pid_file(self, name: str) -> Path:
        return self.settings.run_dir / f"{name}.pid"

    def run(self) -> None:
        """Until `request_stop()` or `stop()`: start the parts, restart those that exit."""
        while not self._stopping.is_set():
            self.tick()
            self._stopping.wait(0.2)

    def request_stop(self) -> None:
        """Make `run` return (from a signal handler, say); `stop` then stops the parts."""
        self._stopping.set()

    def tick(self) -> None:
        for name, part in self.parts.items():
            wanted = hold_file(self.settings.run_dir, name).exists()
            if wanted and not part.held:
                self.hold(name)
            elif part.held and not wanted:
                self.release(name)
        now = time.monotonic()
        with self._lock:
            for part in self.parts.values():
                if part.process is not None and part.process.poll() is not None:
                    self._on_exit(part, now)
                if part.process is None and not part.held and now >= part.next_start:
                    self._start(part, now)

    def _start(self, part: Part, now: float) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        # An engine mark inherited from whoever started us is not the part's own.
        env = {key: value for key, value in os.environ.items() if key != ENGINE_OWNER_ENV}
        with open(self.settings.run_dir / f"{part.name}.log", "ab") as out:
            part.process = subprocess.Popen(
                part.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own group: stopped, and cleaned up after, as one.
                start_new_session=True,
            )
        part.started_at = now
        part.starts += 1
        if part.starts > 1:
            log.warning(
                "restarted %s (pid %d) after it %s", part.name, part.process.pid, part.last_exit
            )
            self._count_restart(part.name)
        else:
            log.info("started %s (pid %d)", part.name, part.process.pid)
        # Last: whoever finds the new pid finds the restart counted too.
        self.pid_file(part.name).write_text(f"{part.process.pid}\n")

    def _on_exit(self, part: Part, now: float) -> None:
        assert part.process is not None
        pid, code = part.process.pid, part.process.returncode
        # What the part left behind in its group (a worker's engine) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        part.process = None
        part.last_exit = describe_exit(code)
        if part.held or self._stopping.is_set():
            self.pid_file(part.name).unlink(missing_ok=True)
            return
        if now - part.started_at >= STABLE_AFTER_S:
            part.backoff_s = FIRST_BACKOFF_S
        part.next_start = now + part.backoff_s
        log.warning(
            "%s (pid %d) %s after %.0fs; restarting in %.0fs",
            part.name,
            pid,
            part.last_exit,
            now - part.started_at,
            part.backoff_s,
        )
        part.backoff_s = min(part.backoff_s * 2, MAX_BACKOFF_S)

    def _count_restart(self, name: str) -> None:
        try:
            self._redis.hincrby(METRICS_KEY, f"{RESTARTS_PREFIX}{name}", 1)
        except RedisError as exc:
            log.warning("restart of %s not counted: %s", name, exc)

    def hold(self, name: str) -> None:
        """Stop a part (SIGTERM, then its group) and keep it stopped until `release`."""
        with self._lock:
            part = self.parts[name]
            part.held = True
            process = part.process
        if process is not None:
            stop_process(process)
            log.info("%s (pid %d) held: stopped until released", name, process.pid)

    def release(self, name: str) -> None:
        with self._lock:
            part = self.parts[name]
            part.held, part.next_start, part.backoff_s = False, 0.0, FIRST_BACKOFF_S

    def stop(self) -> None:
        """Stop every part, the last started first (the worker hands its jobs back)."""
        self._stopping.set()
        with self._lock:
            processes = [p.process for p in reversed(self.parts.values()) if p.process]
        for process in processes:
            stop_process(process)
        with self._lock:
            for part in self.parts.values():
                part.process = None
                self.pid_file(part.name).unlink(missing_ok=True)
        self._redis.close()


def hold_file(run_dir: Path, name: str) -> Path:
    """Present while a part is held (`python -m vqueue.dev.stack hold NAME`)."""
    return run_dir / f"{name}.hold"


def stop_group(pid: int, exited: Callable[[float], bool]) -> None:
    """SIGTERM to a part's main process (a worker shuts its engine down cleanly), then, once
    `exited(seconds)` says it ended or STOP_GRACE_S passed, SIGKILL to what is left of its
    process group."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not exited(STOP_GRACE_S):
        log.warning("pid %d did not stop in %.0fs; killing it", pid, STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_process(process: "subprocess.Popen[bytes]") -> None:
    """`stop_group` for a part this process started, reaped after."""

    def exited(timeout_s: float) -> bool:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    stop_group(process.pid, exited)
    process.wait()
