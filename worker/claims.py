"""Claims in bulk: the jobs a worker has just been handed move to running in one round trip.

Each task thread that receives a message hands its job ids to the claimer and waits. One
thread (worker/gather.py) takes every id that has gathered, claims them with one UPDATE ...
RETURNING and, once the task threads have their rows, drops them from the broker's enqueued
set with one SREM. With hundreds of jobs arriving at once this replaces hundreds of Redis
and Postgres round trips (each contending for the GIL with the engine loop) by a few, so
jobs reach the engine together, in its first prefill steps.
"""

import logging
import uuid
from typing import Any

from sqlalchemy import Engine

from db.attempts import ClaimedJob, claim_jobs
from db.conflicts import retry_conflicts
from vqueue.contract.queueing import JobQueue
from vqueue.contract.task_messages import MAX_JOBS_PER_MESSAGE
from worker.gather import Gatherer

log = logging.getLogger(__name__)

# Ids per statement: bounded, so a flood of deliveries makes several quick rounds. The API's
# messages are no bigger (unless VQUEUE_JOBS_PER_MESSAGE asks for more).
MAX_CLAIM = MAX_JOBS_PER_MESSAGE


class Claimer:
    def __init__(self, db: Engine, queue: JobQueue, worker_name: str, lease_s: float) -> None:
        # One statement, its own transaction: no BEGIN and COMMIT round trips. In a burst each
        # round trip is another wait for the GIL beside the engine loop and the task threads
        # (up to the 5 ms switch interval), and the claim is on every job's path to the engine.
        self._db = db.execution_options(isolation_level="AUTOCOMMIT")
        self._queue = queue
        self._worker_name = worker_name
        self._lease_s = lease_s
        self._rounds: Gatherer[list[str], dict[str, ClaimedJob]] = Gatherer(
            "claimer", self._serve, len, MAX_CLAIM, then=self._prune
        )

    def claim(self, job_ids: list[str]) -> dict[str, ClaimedJob]:
        """The rows of the jobs claimed, now running as a new attempt of ours, by id; a job
        that is not queued (it ended, another worker has it, or it expired) is left out.
        Raises what the round trip raised."""
        return self._rounds.submit(job_ids).result()

    def close(self) -> None:
        self._rounds.close()

    def _serve(self, deliveries: list[list[str]]) -> list[dict[str, ClaimedJob]]:
        # If this raises, the jobs stay queued; the reconciler sends them again later.
        rows = self._claim([job_id for job_ids in deliveries for job_id in job_ids])
        # A job delivered twice in one round runs once: the first delivery takes the row.
        return [
            {job_id: rows.pop(job_id) for job_id in job_ids if job_id in rows}
            for job_ids in deliveries
        ]

    def _prune(self, deliveries: list[list[str]]) -> None:
        # Taken off the queue: no longer "enqueued", claimed or not. A job whose claim failed
        # stays queued, its message spent: out of the set, the reconciler sends it again.
        # After the claim, off the jobs' path to the engine; an id left in the set a while
        # (or for good, if the worker dies now) the reconciler drops itself once it runs.
        self._queue.prune(dict.fromkeys(job_id for job_ids in deliveries for job_id in job_ids))

    def _claim(self, job_ids: list[str]) -> dict[str, ClaimedJob]:
        unique = list(dict.fromkeys(job_ids))
        statement = claim_jobs(
            [uuid.UUID(job_id) for job_id in unique], self._worker_name, self._lease_s
        )

        def claim() -> Any:
            with self._db.connect() as conn:
                return conn.execute(statement).mappings().all()

        claimed = retry_conflicts(claim, "claiming jobs")
        if len(unique) > 1:
            log.debug("claimed %d of %d jobs in one round trip", len(claimed), len(unique))
        return {str(row["id"]): ClaimedJob.from_row(row) for row in claimed}
