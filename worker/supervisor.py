"""A worker's watch over its running jobs: renews their leases, acts on cancel requests, and
stops runs that a newer attempt has superseded (this worker was paused or cut off past its
lease, and the job was claimed again): their text and result are no longer wanted. An engine
that holds runs and gives no output for VQUEUE_ENGINE_STALL_S is stuck: the worker exits
rather than renew leases it cannot honour, and its jobs run elsewhere. Silence while the worker
itself was not running (stopped, or the host stalled) says nothing about the engine, and is not
counted."""

import logging
import time
import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.attempts import current_attempts, renew_leases
from db.conflicts import retry_conflicts
from db.jobs import cancel_requested
from db.states import JobStatus
from vqueue.loops.periodic import PeriodicThread
from vqueue.settings import Settings
from worker.active_runs import StopReason
from worker.runner import JobRunner

log = logging.getLogger(__name__)

SLOW_ROUND_S = 1.0
# A wait between rounds this much longer than asked means this process was not running.
FROZEN_AFTER_S = 5.0


class Supervisor:
    def __init__(self, settings: Settings, db: Engine, runner: JobRunner, worker_name: str) -> None:
        self.settings = settings
        self.db = db
        self.runner = runner
        self.worker_name = worker_name
        self._last_renewal = time.monotonic()
        self._last_round_end = time.monotonic()
        self._thread = PeriodicThread(
            "supervisor", settings.cancel_poll_s, self.run_once, (SQLAlchemyError,)
        )
        self.start, self.close = self._thread.start, self._thread.close

    def run_once(self) -> None:
        try:
            self._round()
        finally:
            self._last_round_end = time.monotonic()

    def _round(self) -> None:
        started = time.monotonic()
        frozen_s = started - self._last_round_end - self.settings.cancel_poll_s
        if frozen_s > FROZEN_AFTER_S:
            # Engine output was waiting for us, not the other way round.
            log.warning(
                "worker did not run for %.0fs (stopped, or the host stalled): engine silence "
                "is counted from now",
                frozen_s,
            )
            self.runner.engine_watch_restarted()
        runs = self.runner.active_runs()
        if not runs:
            return
        stalled = self.runner.stalled_for()
        if stalled > self.settings.engine_stall_s:
            # Renewing now would keep the jobs here forever; the worker exits instead.
            self.runner.on_engine_dead(
                RuntimeError(f"no output from the engine for {stalled:.0f}s with {len(runs)} runs")
            )
            return
        active = [uuid.UUID(job_id) for job_id in dict.fromkeys(job_id for job_id, _ in runs)]
        # Renew well before the lease runs out, so one slow round is not a lost job.
        if time.monotonic() - self._last_renewal >= self.settings.lease_s / 3:
            self._renew(runs, active)
            self._last_renewal = time.monotonic()
        with self.db.connect() as conn:
            cancelled = conn.execute(cancel_requested(active)).scalars().all()
        for job_id in cancelled:
            log.info("job %s: cancel requested, aborting", job_id)
            self.runner.stop(str(job_id), StopReason.CANCELLED)
        took = time.monotonic() - started
        if took > SLOW_ROUND_S:
            # Cancels and lease renewals wait on this round: say when it is slow.
            log.warning("supervisor round took %.1fs for %d jobs", took, len(active))

    def _renew(self, runs: list[tuple[str, int]], active: list[uuid.UUID]) -> None:
        def renew() -> set[tuple[str, int]]:
            with self.db.begin() as conn:
                statement = renew_leases(active, self.worker_name, self.settings.lease_s)
                return {(str(job_id), attempt) for job_id, attempt in conn.execute(statement)}

        renewed = retry_conflicts(renew, "renewing leases")
        if len(renewed) == len(runs):
            return
        with self.db.connect() as conn:
            rows = {str(row.id): row for row in conn.execute(current_attempts(active))}
        for job_id, attempt in runs:
            if (job_id, attempt) in renewed or (row := rows.get(job_id)) is None:
                continue
            # Requeued but not claimed since (its lease lapsed while this worker could not
            # reach Postgres): the run goes on, and its result is kept if it comes first.
            if row.attempt == attempt and row.status == JobStatus.QUEUED:
                continue
            if (
                row.attempt > attempt
                or row.status != JobStatus.RUNNING
                or row.worker != self.worker_name
            ):
                log.warning(
                    "job %s: attempt %d superseded (now attempt %d, %s on %s); stopping it",
                    job_id,
                    attempt,
                    row.attempt,
                    row.status,
                    row.worker,
                )
                self.runner.stop(job_id, StopReason.SUPERSEDED, attempt)
