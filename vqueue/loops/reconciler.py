"""Makes Postgres and the broker agree again, whatever was lost in between.

Every API process and worker runs this loop (so a dead worker's jobs are requeued even while
no other worker is up); a Postgres advisory lock lets one of them do each round:
- running jobs whose worker died (lease lapsed and no heartbeat) are queued and sent again,
  or failed once they used every attempt;
- queued jobs past their queue timeout or deadline expire instead of running stale;
- queued jobs the broker does not know (the API crashed between commit and enqueue, or Redis
  lost its data) are sent again;
- batches whose upload was cut off by the death of its API process are failed.
Sending a job twice is harmless: only one delivery can claim it.
"""

import logging
import uuid
from typing import Any

from sqlalchemy import Engine

from db.batches import fail_interrupted_uploads
from db.conflicts import retry_conflicts
from db.jobs import (
    expire_queued_jobs,
    give_up_lost_jobs,
    queued_among,
    requeue_lost_jobs,
    stale_queued_jobs,
)
from db.locks import exclusive_round
from db.states import JobStatus
from vqueue.contract.queueing import JobQueue
from vqueue.loops.periodic import ControlLoop
from vqueue.settings import Settings

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x76717565  # "vque"
BATCH = 1000
# Storing even a 50,000-line upload takes seconds; one still validating after this was cut off.
UPLOAD_INTERRUPTED_AFTER_S = 600


class Reconciler(ControlLoop):
    NAME = "reconciler"

    def __init__(self, settings: Settings, db: Engine, queue: JobQueue) -> None:
        super().__init__(settings, db, queue, settings.reconcile_interval_s)

    def run_once(self) -> dict[str, int]:
        """One round; returns how many jobs each rule touched (empty if another worker held it)."""
        settings = self.settings
        live = self.queue.live_workers()

        def round_in_postgres() -> tuple[Any, ...] | None:
            with exclusive_round(self.db, ADVISORY_LOCK_KEY) as conn:
                if conn is None:
                    return None
                lease = settings.lease_s
                return (
                    conn.execute(requeue_lost_jobs(settings.max_attempts, live, lease)).all(),
                    conn.execute(give_up_lost_jobs(settings.max_attempts, live, lease)).all(),
                    conn.execute(expire_queued_jobs()).all(),
                    conn.execute(stale_queued_jobs(settings.requeue_grace_s, BATCH)).all(),
                    conn.execute(fail_interrupted_uploads(UPLOAD_INTERRUPTED_AFTER_S)).all(),
                )

        found = retry_conflicts(round_in_postgres, "reconciling")
        if found is None:
            return {}
        requeued, given_up, expired, stale, interrupted = found
        # Sent after the commit, like every enqueue: a worker must find the row queued.
        self.queue.send_many([(str(job_id), priority) for job_id, priority in requeued])
        for rows, status in ((given_up, JobStatus.FAILED), (expired, JobStatus.EXPIRED)):
            ended = [(str(job_id), attempt) for job_id, attempt in rows]
            self.queue.announce_ended(ended, status, settings.stream_retention_s)
        priorities = {str(job_id): priority for job_id, priority in stale}
        unknown = self.queue.unknown(list(priorities))
        self.queue.send_many([(job_id, priorities[job_id]) for job_id in unknown])
        pruned = self._prune_enqueued_set()
        counts = {
            "requeued": len(requeued),
            "given_up": len(given_up),
            "expired": len(expired),
            "resent": len(unknown),
            "pruned": pruned,
            "interrupted_uploads": len(interrupted),
        }
        if any(counts.values()):
            log.info("reconciled: %s", counts)
        return counts

    def _prune_enqueued_set(self) -> int:
        """Drop ids of jobs no longer queued (a claim can race ahead of the submit's record)."""
        sample = self.queue.enqueued_sample(BATCH)
        if not sample:
            return 0
        with self.db.connect() as conn:
            ids = [uuid.UUID(job_id) for job_id in sample]
            queued = {str(job_id) for job_id in conn.execute(queued_among(ids)).scalars()}
        stale = [job_id for job_id in sample if job_id not in queued]
        self.queue.prune(stale)
        return len(stale)
