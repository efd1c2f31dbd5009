"""Jobs' rows, read many at a time: the ids asked for while a query is out go in the next one.

Every stream reads its job's row twice: when it opens, and when the job's END arrives, for the
done event. A burst's jobs open their streams together and, being of one length, end within a
few engine steps of each other: one query per stream was 64 reads per API process at each end
of a 256-job burst on the GPU, each taking a pooled connection (and pinging it), while those
jobs' clients waited for their done events. Here they share one query, `id = ANY(...)`.

A read never returns data older than its caller: an id asked for while a query is running
waits for the next one (that query may have started before the change the caller reacts to,
e.g. a job's END). Asked for twice before its query starts, an id is read once.
"""

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Row = Mapping[str, Any]
# One query's ids: bounded, so a flood of readers makes several quick rounds.
MAX_IDS = 512


class JobRows:
    def __init__(self, query: Callable[[list[uuid.UUID]], Awaitable[list[Row]]]) -> None:
        """`query(ids)`: the rows of those of the jobs that exist (each with its "id")."""
        self._query = query
        self._waiting: dict[uuid.UUID, asyncio.Future[Row | None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def read(self, job_id: uuid.UUID) -> Row | None:
        """The job's row, or None: read by a query that started after this call."""
        future = self._waiting.get(job_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[job_id] = future
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_rounds(), name="job-rows")
        # A caller that goes away (a client disconnecting) does not cancel the others' read.
        return await asyncio.shield(future)

    async def _read_rounds(self) -> None:
        try:
            while self._waiting:
                # The other streams woken by the same message ask in this turn of the loop.
                await asyncio.sleep(0)
                taken = dict(itertools.islice(self._waiting.items(), MAX_IDS))
                for job_id in taken:
                    del self._waiting[job_id]
                await self._read_round(taken)
        except asyncio.CancelledError:  # the app is shutting down
            for future in self._waiting.values():
                future.cancel()
            raise

    async def _read_round(self, taken: dict[uuid.UUID, "asyncio.Future[Row | None]"]) -> None:
        try:
            rows = {row["id"]: row for row in await self._query(list(taken))}
        except asyncio.CancelledError:
            for future in taken.values():
                future.cancel()
            raise
        except Exception as exc:
            for future in taken.values():
                future.set_exception(exc)
                future.exception()  # its callers may all be gone: not an unretrieved error
            return
        for job_id, future in taken.items():
            future.set_result(rows.get(job_id))
