"""Releases the jobs of batches to the broker a window at a time.

A batch's jobs are stored unreleased. Each round (every VQUEUE_BATCH_FEED_INTERVAL_S, and at
once after an upload) the feeder tops the number of batch jobs waiting in the broker up to
the window, shared evenly between the open batches, oldest first, each in input order. Single
jobs go to the broker directly, at the same priorities, so:
- a single job waits behind at most a window of batch jobs, never behind a 50,000-line batch;
- a batch always has a window of jobs in the broker, which the workers take in turn with
  single jobs (FIFO within a priority), so a stream of single jobs does not starve it.
The default window is twice the engine slots of the live workers: enough to keep every engine
full while the next round comes. Like the reconciler it runs in every API process and worker,
one at a time by advisory lock; a release whose send is lost is re-sent by the reconciler.
"""

import logging
import math

from sqlalchemy import Engine

from db.batches import finish_batches, open_batches, release_jobs, released_backlog
from db.locks import exclusive_round
from vqueue.contract.queueing import JobQueue
from vqueue.loops.periodic import ControlLoop
from vqueue.settings import Settings

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x76716266  # "vqbf"
MIN_WINDOW = 64


class BatchFeeder(ControlLoop):
    NAME = "batch-feeder"

    def __init__(self, settings: Settings, db: Engine, queue: JobQueue) -> None:
        super().__init__(settings, db, queue, settings.batch_feed_interval_s)

    def window(self) -> int:
        if self.settings.batch_window:
            return self.settings.batch_window
        return max(MIN_WINDOW, 2 * self.queue.engine_slots())

    def run_once(self) -> dict[str, int]:
        """One round; returns how many jobs it released and batches it finished."""
        window = self.window()
        released: list[tuple[str, int]] = []
        with exclusive_round(self.db, ADVISORY_LOCK_KEY) as conn:
            if conn is None:
                return {}
            batch_ids = list(conn.execute(open_batches()).scalars())
            waiting = sum(count for _, count in conn.execute(released_backlog()))
            budget = window - waiting
            if batch_ids and budget > 0:
                share = math.ceil(budget / len(batch_ids))
                for batch_id in batch_ids:
                    count = min(share, budget - len(released))
                    if count <= 0:
                        break
                    rows = conn.execute(release_jobs(batch_id, count)).all()
                    released += [(str(job_id), priority) for job_id, priority in rows]
            finished = conn.execute(finish_batches()).all()
        # Sent after the commit, like every enqueue: a worker must find the row queued.
        self.queue.send_many(released)
        if finished:
            log.info("batches finished: %s", ", ".join(f"{i} {s}" for i, s in finished))
        return {"released": len(released), "finished": len(finished)}
