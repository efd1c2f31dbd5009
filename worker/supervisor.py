"""A worker's watch over its running jobs: renews their leases and acts on cancel requests."""

import logging
import time
import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.attempts import renew_leases
from db.jobs import cancel_requested
from vqueue.periodic import PeriodicThread
from vqueue.settings import Settings
from worker.runner import JobRunner, StopReason

log = logging.getLogger(__name__)

SLOW_ROUND_S = 1.0


class Supervisor:
    def __init__(self, settings: Settings, db: Engine, runner: JobRunner, worker_name: str) -> None:
        self.settings = settings
        self.db = db
        self.runner = runner
        self.worker_name = worker_name
        self._last_renewal = time.monotonic()
        self._thread = PeriodicThread(
            "supervisor", settings.cancel_poll_s, self.run_once, (SQLAlchemyError,)
        )
        self.start, self.close = self._thread.start, self._thread.close

    def run_once(self) -> None:
        started = time.monotonic()
        active = [uuid.UUID(job_id) for job_id in self.runner.active_ids()]
        if not active:
            return
        # Renew well before the lease runs out, so one slow round is not a lost job.
        renew = time.monotonic() - self._last_renewal >= self.settings.lease_s / 3
        with self.db.begin() as conn:
            if renew:
                conn.execute(renew_leases(active, self.worker_name, self.settings.lease_s))
                self._last_renewal = time.monotonic()
            cancelled = conn.execute(cancel_requested(active)).scalars().all()
        for job_id in cancelled:
            log.info("job %s: cancel requested, aborting", job_id)
            self.runner.stop(str(job_id), StopReason.CANCELLED)
        took = time.monotonic() - started
        if took > SLOW_ROUND_S:
            # Cancels and lease renewals wait on this round: say when it is slow.
            log.warning("supervisor round took %.1fs for %d jobs", took, len(active))
