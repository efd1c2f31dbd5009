"""The worker's stall watch: an engine silent while the worker watched is given up; silence
while the worker itself was stopped (SIGSTOP, a host stall) is not the engine's fault."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from vqueue.settings import Settings
from worker.active_runs import ActiveRun
from worker.runner import JobRunner
from worker.supervisor import FROZEN_AFTER_S, Supervisor

STALL_S = 30.0


class NoCancels:
    @contextmanager
    def connect(self) -> Iterator[Any]:
        rows = SimpleNamespace(all=list)
        yield SimpleNamespace(execute=lambda statement: SimpleNamespace(scalars=lambda: rows))


def supervisor_with_a_run() -> tuple[Supervisor, JobRunner, list[BaseException]]:
    """A supervisor over the real runner's bookkeeping of one run, no engine behind it; the
    engine deaths the runner is told of."""
    settings = Settings(engine_stall_s=STALL_S, lease_s=3600, cancel_poll_s=0.25)
    dead: list[BaseException] = []
    runner = JobRunner(None, None, None, None, dead.append)  # type: ignore[arg-type]
    runner.runs.add("00000000-0000-0000-0000-000000000001", ActiveRun(attempt=1))
    return Supervisor(settings, NoCancels(), runner, "w1"), runner, dead  # type: ignore[arg-type]


def test_an_engine_silent_while_the_worker_watched_is_given_up() -> None:
    supervisor, runner, dead = supervisor_with_a_run()
    runner.runs.last_progress = time.monotonic() - STALL_S - 1
    supervisor.run_once()
    assert len(dead) == 1
    assert "no output from the engine" in str(dead[0])


def test_silence_while_the_worker_was_stopped_is_not_a_stall() -> None:
    supervisor, runner, dead = supervisor_with_a_run()
    # Stopped for longer than the stall limit: neither the engine's output nor this round ran.
    stopped_s = STALL_S + 10
    runner.runs.last_progress = time.monotonic() - stopped_s
    supervisor._last_round_end = time.monotonic() - stopped_s
    supervisor.run_once()
    assert dead == []
    assert runner.stalled_for() < FROZEN_AFTER_S
    # Awake and watching, an engine that stays silent is given up again.
    runner.runs.last_progress = time.monotonic() - STALL_S - 1
    supervisor.run_once()
    assert len(dead) == 1


def test_a_short_wait_between_rounds_does_not_hide_a_stall() -> None:
    supervisor, runner, dead = supervisor_with_a_run()
    runner.runs.last_progress = time.monotonic() - STALL_S - 1
    supervisor._last_round_end = time.monotonic() - FROZEN_AFTER_S / 2
    supervisor.run_once()
    assert len(dead) == 1
