"""Claims in bulk: the jobs a worker has just been handed move to running in one round trip.

Each task thread that receives a message hands its job ids to the claimer and waits. One
thread takes every id that has gathered, drops them from the broker's enqueued set with one
SREM, and claims them with one UPDATE ... RETURNING. With hundreds of jobs arriving at once
this replaces hundreds of Redis and Postgres round trips (each contending for the GIL with
the engine loop) by a few, so jobs reach the engine together, in its first prefill steps.
"""

import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine

from db.jobs import claim_jobs
from vqueue.queueing import JobQueue

log = logging.getLogger(__name__)

# Ids per statement: bounded, so a flood of deliveries makes several quick rounds.
MAX_CLAIM = 512

Row = Mapping[Any, Any]


class Claimer:
    def __init__(self, db: Engine, queue: JobQueue, worker_name: str, lease_s: float) -> None:
        self._db = db
        self._queue = queue
        self._worker_name = worker_name
        self._lease_s = lease_s
        self._pending: list[tuple[list[str], Future[dict[str, Row]]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="claimer", daemon=True)
        self._thread.start()

    def claim(self, job_ids: list[str]) -> dict[str, Row]:
        """The rows of the jobs claimed, now running as a new attempt of ours, by id; a job
        that is not queued (it ended, another worker has it, or it expired) is left out.
        Raises what the round trip raised."""
        future: Future[dict[str, Row]] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker is shutting down")
            self._pending.append((job_ids, future))
        self._wake.set()
        return future.result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch = self._take()
                if self._pending:
                    self._wake.set()
                closed = self._closed
            if batch:
                self._settle(batch)
            if closed and not batch:
                return

    def _take(self) -> list[tuple[list[str], "Future[dict[str, Row]]"]]:
        """Pending requests up to MAX_CLAIM ids in all (at least one request)."""
        count, ids = 0, 0
        for job_ids, _ in self._pending:
            if count and ids + len(job_ids) > MAX_CLAIM:
                break
            count, ids = count + 1, ids + len(job_ids)
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    def _settle(self, batch: list[tuple[list[str], "Future[dict[str, Row]]"]]) -> None:
        try:
            rows = self._claim([job_id for job_ids, _ in batch for job_id in job_ids])
        except Exception as exc:
            # The jobs stay queued; the reconciler sends them again after its grace period.
            for _, future in batch:
                future.set_exception(exc)
            return
        for job_ids, future in batch:
            # A job delivered twice in one batch runs once: the first delivery takes the row.
            mine = {job_id: rows.pop(job_id) for job_id in job_ids if job_id in rows}
            future.set_result(mine)

    def _claim(self, job_ids: list[str]) -> dict[str, Row]:
        unique = list(dict.fromkeys(job_ids))
        self._queue.prune(unique)  # taken off the queue: no longer "enqueued"
        statement = claim_jobs(
            [uuid.UUID(job_id) for job_id in unique], self._worker_name, self._lease_s
        )
        with self._db.begin() as conn:
            claimed = conn.execute(statement).mappings().all()
        if len(unique) > 1:
            log.debug("claimed %d of %d jobs in one round trip", len(claimed), len(unique))
        return {str(row["id"]): row for row in claimed}
