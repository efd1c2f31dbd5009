"""The runs on a worker's engine, by (job id, attempt): what the task threads, the engine loop,
the supervisor and the rebalancer all read and change under one lock."""

import asyncio
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    HANDED_BACK = "handed_back"
    # A newer attempt of the job started elsewhere (this worker was paused or cut off past its
    # lease): this run's text and result are no longer wanted.
    SUPERSEDED = "superseded"


@dataclass
class ActiveRun:
    attempt: int
    task: "asyncio.Task[Any] | None" = None
    reason: StopReason | None = None
    # When stop() was called (monotonic), to log how long the abort took to land.
    stop_at: float | None = None
    generating: bool = False  # its first token came
    priority: int = 0
    since: float = 0.0  # when it went to the engine (monotonic)


class ActiveRuns:
    def __init__(self) -> None:
        # By (job id, attempt): a worker that was paused past its lease may run a newer
        # attempt of a job beside the old one, and each must find its own entry.
        self._runs: dict[tuple[str, int], ActiveRun] = {}
        # When the engine last gave an output, or was handed jobs (monotonic): with runs on
        # it and nothing for long, the engine is stuck (see `stalled_for`).
        self.last_progress = time.monotonic()
        self._lock = threading.Lock()

    def add(self, job_id: str, run: ActiveRun) -> None:
        with self._lock:
            if not self._runs:
                self.last_progress = time.monotonic()  # an idle engine is not stalled
            self._runs[(job_id, run.attempt)] = run

    def remove(self, job_id: str, attempt: int) -> None:
        with self._lock:
            self._runs.pop((job_id, attempt), None)

    def started(
        self, job_id: str, attempt: int, task: "asyncio.Task[Any] | None"
    ) -> tuple[ActiveRun, bool]:
        """The run, its task now known (a stop from now on cancels it), and whether it was
        stopped before (no task to cancel then: the run must not start)."""
        with self._lock:
            run = self._runs[(job_id, attempt)]
            run.task = task
            return run, run.reason is not None

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def all(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._runs)

    def stalled_for(self) -> float:
        """Seconds since the engine last made progress while it held runs; 0 when idle."""
        with self._lock:
            if not self._runs:
                return 0.0
        return time.monotonic() - self.last_progress

    def held_count(self) -> int:
        """Runs that are not being stopped."""
        with self._lock:
            return sum(run.reason is None for run in self._runs.values())

    def waiting_count(self) -> int:
        """Runs with no token yet (waiting, or in prefill)."""
        with self._lock:
            return sum(not run.generating for run in self._runs.values())

    def last_scheduled(self, count: int) -> list[tuple[str, int]]:
        """Up to `count` runs with no token yet that are not being stopped, those the engine
        schedules last first (the least urgent, then the newest)."""
        with self._lock:
            waiting = [
                (run.priority, run.since, job_id, attempt)
                for (job_id, attempt), run in self._runs.items()
                if not run.generating and run.reason is None
            ]
        waiting.sort(reverse=True)
        return [(job_id, attempt) for _, _, job_id, attempt in waiting[:count]]

    def mark_stopped(
        self, job_id: str, reason: StopReason, attempt: int | None, unless_generating: bool
    ) -> tuple[bool, list["asyncio.Task[Any]"]]:
        """Mark a job's runs (or only that attempt's) as stopping for `reason`; whether any
        was, and the tasks to cancel on the engine loop."""
        tasks = []
        stopped = False
        with self._lock:
            for (run_job, run_attempt), run in self._runs.items():
                if run_job != job_id or attempt not in (None, run_attempt):
                    continue
                # A cancel overrides a hand-back still under way: the job ends cancelled.
                if run.reason is not None and not (
                    reason is StopReason.CANCELLED and run.reason is StopReason.HANDED_BACK
                ):
                    continue
                if unless_generating and run.generating:
                    continue
                run.reason = reason
                run.stop_at = time.monotonic()
                stopped = True
                if run.task is not None:
                    tasks.append(run.task)
        return stopped, tasks
