"""Group commit for submits: concurrent POST /jobs share one INSERT, one COMMIT and one
Redis pipeline of enqueues, instead of paying three round trips each.

One request's row that Postgres refuses (text it cannot store, say) must not fail the others
it was grouped with, whoever sent them: the group is then inserted again row by row, and only
the refused row's request fails, with a 400 that says why.

A request hands its row to the submitter and awaits it. One task takes everything that has
gathered, inserts it (idempotency-key conflicts insert nothing and come back as None), commits,
and only then enqueues the batch: the order "committed, then enqueued" holds for each job. The
batch goes out in about two task messages per live worker (vqueue/contract/task_messages.py).
"""

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.core.background import BackgroundTask
from api.core.errors import BadRequestError, ServiceUnavailableError
from api.ops.live_workers import LiveWorkers
from db.jobs import fail_unqueued_jobs, insert_jobs
from vqueue.contract.task_messages import jobs_per_message, queue_enqueue_writes

log = logging.getLogger(__name__)

MAX_BATCH = 500
ENQUEUE_ATTEMPTS = 3

Pending = tuple[dict[str, Any], "asyncio.Future[Mapping[Any, Any] | None]"]


class Submitter:
    def __init__(
        self, db: AsyncEngine, broker: Redis, queue: str, per_message: int, workers: LiveWorkers
    ) -> None:
        self._db = db
        self._broker = broker
        self._queue = queue
        self._per_message = per_message
        self._workers = workers
        self._pending: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._task = BackgroundTask("submitter", self._run)

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def submit(self, row: dict[str, Any]) -> Mapping[Any, Any] | None:
        """Insert and enqueue one job; None when its idempotency key already exists."""
        future: asyncio.Future[Mapping[Any, Any] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append((row, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._wakeup.set()
            await self._flush_isolated(batch)

    async def _flush_isolated(self, batch: list[Pending]) -> None:
        try:
            await self._flush(batch)
        except (DataError, IntegrityError) as exc:
            if len(batch) == 1:
                first_line = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
                refused = BadRequestError(f"the request cannot be stored: {first_line}")
                if not batch[0][1].done():
                    batch[0][1].set_exception(refused)
                return
            # A row Postgres refused: it alone fails, not the group it came with.
            log.warning("a group of %d submits was refused (%s); each goes alone", len(batch), exc)
            for pending in batch:
                await self._flush_isolated([pending])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    async def _flush(self, batch: list[Pending]) -> None:
        async with self._db.begin() as conn:
            result = await conn.execute(insert_jobs(), [row for row, _ in batch])
            inserted = {row["id"]: row for row in result.mappings().all()}
        queued = [(str(job_id), row["priority"]) for job_id, row in inserted.items()]
        try:
            await self._enqueue(queued)
        except Exception as exc:
            log.error("enqueue of %d jobs failed: %s", len(queued), exc)
            await self._fail_unqueued(list(inserted))
            error = ServiceUnavailableError("the job queue is unavailable; try again shortly")
            for _, future in batch:
                future.set_exception(error)
            return
        for row, future in batch:
            future.set_result(inserted.get(row["id"]))

    async def _enqueue(self, queued: list[tuple[str, int]]) -> None:
        workers = self._workers
        size = jobs_per_message(
            len(queued), workers.count, self._per_message, workers.smallest_max_jobs
        )
        for attempt in range(ENQUEUE_ATTEMPTS):
            pipe = self._broker.pipeline(transaction=False)
            queue_enqueue_writes(pipe, queued, self._queue, size)
            try:
                await pipe.execute()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # A pooled connection that Redis dropped fails once; a fresh one may not.
                # Pushing a message twice is harmless (only one delivery can claim the job).
                if attempt == ENQUEUE_ATTEMPTS - 1:
                    raise
                log.warning("enqueue failed, retrying: %s", exc)
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _fail_unqueued(self, job_ids: list[Any]) -> None:
        # Nothing may stay queued with no message behind it and nobody told.
        async with self._db.begin() as conn:
            await conn.execute(fail_unqueued_jobs(job_ids, "the queue was unavailable at submit"))
