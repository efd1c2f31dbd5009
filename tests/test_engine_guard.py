"""The engine never outlives its worker: the parent-death signal, and the reaper of stale
engines, with real processes killed the way the OOM killer does (SIGKILL to one process)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from worker.engine_guard import OWNER_ENV, reap_stale_engines, stale_engines, start_time

# A stand-in worker: marks itself as an engine owner, starts one "engine" process (which
# arms the guard, as vLLM's plugin loader does in the engine core, unless told not to),
# prints the engine's pid and sleeps.
WORKER = """
import subprocess, sys, time
from worker.engine_guard import mark_as_owner
mark_as_owner()
guard = "from worker.engine_guard import die_with_parent; die_with_parent(); " if {guard} else ""
engine = subprocess.Popen([sys.executable, "-c", guard + "print('up', flush=True); "
                           "import time; time.sleep(600)"], stdout=subprocess.PIPE, text=True)
assert engine.stdout.readline().strip() == "up"
print(engine.pid, flush=True)
time.sleep(600)
"""


def start_worker(guard: bool) -> tuple[subprocess.Popen[str], int]:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(guard=guard)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the kill below reaches this process alone, not a group
    )
    assert worker.stdout is not None
    with worker.stdout:
        return worker, int(worker.stdout.readline())


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while start_time(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_engine_dies_when_its_worker_is_killed() -> None:
    worker, engine = start_worker(guard=True)
    assert start_time(engine) is not None
    worker.kill()  # SIGKILL to the worker's main process only
    worker.wait()
    assert gone_within(engine, 5)


def test_a_stale_engine_is_reaped_by_the_next_worker() -> None:
    # Without the guard (as before it, or a race), the engine outlives its worker...
    worker, engine = start_worker(guard=False)
    worker.kill()
    worker.wait()
    try:
        assert not gone_within(engine, 1.5)
        assert engine in [process.pid for process in stale_engines()]
        # ...until the next worker starts: it kills it and waits until it is gone.
        reaped = reap_stale_engines(timeout_s=10)
        assert engine in [process.pid for process in reaped]
        assert start_time(engine) is None
    finally:
        if start_time(engine) is not None:
            os.kill(engine, signal.SIGKILL)


def test_a_live_workers_engine_is_left_alone() -> None:
    worker, engine = start_worker(guard=True)
    try:
        assert engine not in [process.pid for process in stale_engines()]
        reap_stale_engines(timeout_s=1)
        assert start_time(engine) is not None
    finally:
        worker.kill()
        worker.wait()
    assert gone_within(engine, 5)


@pytest.mark.parametrize("mark", ["", None])
def test_the_guard_does_nothing_outside_a_workers_engine(mark: str | None) -> None:
    env = {key: value for key, value in os.environ.items() if key != OWNER_ENV}
    if mark is not None:
        env[OWNER_ENV] = mark
    # `vllm serve` loads the same plugin: it must not arm anything there, nor exit.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from worker.engine_guard import die_with_parent as d; d(); print('still here')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "still here", done.stderr
