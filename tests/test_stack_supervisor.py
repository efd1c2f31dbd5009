"""The stack's supervisor with stand-in parts: what dies is restarted with backoff, what it
left in its process group dies with it, one part's failure never stops another."""

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.durability import gone, wait_until
from vqueue.contract.metrics import METRICS_KEY, RESTARTS_PREFIX
from vqueue.dev.stack_supervisor import FIRST_BACKOFF_S, StackSupervisor
from vqueue.settings import Settings

# A part that starts a child of its own (as a worker starts its engine), writes the child's
# pid next to its log, and sleeps.
WITH_CHILD = (
    "import subprocess, sys, time, pathlib; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "pathlib.Path(sys.argv[1]).write_text(str(child.pid)); time.sleep(600)"
)


def alive(pid: int) -> bool:
    return not gone([pid])


@pytest.fixture
def running(
    tmp_path: Path, settings: Settings, redis: Redis
) -> Iterator[tuple[StackSupervisor, Path]]:
    redis.hdel(METRICS_KEY, f"{RESTARTS_PREFIX}engine", f"{RESTARTS_PREFIX}broken")
    local = settings.model_copy(update={"run_dir": tmp_path})
    supervisor = StackSupervisor(
        local,
        {
            "engine": [sys.executable, "-c", WITH_CHILD, str(tmp_path / "child.pid")],
            "broken": [sys.executable, "-c", "raise SystemExit(3)"],
        },
    )
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    yield supervisor, tmp_path
    supervisor.stop()
    thread.join(10)


def part_pid(run_dir: Path, name: str) -> int | None:
    try:
        return int((run_dir / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def test_a_killed_part_is_restarted_and_its_leftovers_die(
    running: tuple[StackSupervisor, Path], redis: Redis
) -> None:
    supervisor, run_dir = running
    wait_until(lambda: (run_dir / "child.pid").exists() and part_pid(run_dir, "engine"), timeout=20)
    first = part_pid(run_dir, "engine")
    assert first is not None
    child = int((run_dir / "child.pid").read_text())
    (run_dir / "child.pid").unlink()
    os.kill(first, signal.SIGKILL)  # the main process alone
    wait_until(lambda: not alive(child), timeout=10)  # its group went with it
    wait_until(lambda: part_pid(run_dir, "engine") not in (None, first), timeout=20)
    assert redis.hget(METRICS_KEY, f"{RESTARTS_PREFIX}engine") == "1"
    assert "killed by SIGKILL" in str(supervisor.parts["engine"].last_exit)


def test_a_part_that_cannot_start_backs_off_and_stops_nothing(
    running: tuple[StackSupervisor, Path],
) -> None:
    supervisor, run_dir = running
    wait_until(lambda: supervisor.parts["broken"].starts >= 3, timeout=30)
    broken = supervisor.parts["broken"]
    # Each exit doubles the wait before the next start.
    assert broken.backoff_s >= FIRST_BACKOFF_S * 2 ** (broken.starts - 1)
    assert broken.last_exit == "exited with code 3"
    engine = part_pid(run_dir, "engine")
    assert engine is not None
    assert alive(engine)
    assert supervisor.parts["engine"].starts == 1


def test_a_held_part_stays_stopped_until_released(
    running: tuple[StackSupervisor, Path],
) -> None:
    _, run_dir = running
    wait_until(lambda: part_pid(run_dir, "engine"), timeout=20)
    first = part_pid(run_dir, "engine")
    assert first is not None
    (run_dir / "engine.hold").touch()
    wait_until(lambda: not alive(first), timeout=20)
    time.sleep(FIRST_BACKOFF_S * 2)
    assert part_pid(run_dir, "engine") is None
    (run_dir / "engine.hold").unlink()
    wait_until(lambda: part_pid(run_dir, "engine") not in (None, first), timeout=20)
