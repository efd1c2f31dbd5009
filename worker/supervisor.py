"""A worker's watch over its running jobs: renews their leases and acts on cancel requests."""

import logging
import threading
import time
import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.jobs import cancel_requested, renew_leases
from vqueue.settings import Settings
from worker.runner import JobRunner, StopReason

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, settings: Settings, db: Engine, runner: JobRunner, worker_name: str) -> None:
        self.settings = settings
        self.db = db
        self.runner = runner
        self.worker_name = worker_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        # Renew well before the lease runs out, so one slow round is not a lost job.
        renew_every = self.settings.lease_s / 3
        last_renewal = time.monotonic()
        while not self._stop.wait(self.settings.cancel_poll_s):
            active = [uuid.UUID(job_id) for job_id in self.runner.active_ids()]
            if not active:
                continue
            try:
                with self.db.begin() as conn:
                    if time.monotonic() - last_renewal >= renew_every:
                        conn.execute(renew_leases(active, self.worker_name, self.settings.lease_s))
                        last_renewal = time.monotonic()
                    cancelled = conn.execute(cancel_requested(active)).scalars().all()
            except SQLAlchemyError as exc:
                log.warning("supervisor round failed: %s", exc)
                continue
            for job_id in cancelled:
                log.info("job %s: cancel requested, aborting", job_id)
                self.runner.stop(str(job_id), StopReason.CANCELLED)
