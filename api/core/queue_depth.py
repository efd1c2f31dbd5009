"""The queue's depth, in jobs and tokens, as one API process knows it: refreshed from
Postgres at most once a second, by one request at a time, and counted up by what this process
queued since."""

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from db.queue_load import queued_load

DEPTH_MAX_AGE_S = 1.0


class QueueDepth:
    """The queued jobs and their tokens, refreshed at most once a second by one request at a
    time."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self.jobs = 0
        self.tokens = 0
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self._at > DEPTH_MAX_AGE_S:
            async with self._lock:
                if time.monotonic() - self._at > DEPTH_MAX_AGE_S:
                    async with self._db.connect() as conn:
                        jobs_now, tokens_now = (await conn.execute(queued_load())).one()
                    self.jobs, self.tokens = int(jobs_now), int(tokens_now)
                    self._at = time.monotonic()

    def add(self, jobs_added: int, tokens_added: int) -> None:
        """Count what this process just queued, until the next refresh."""
        self.jobs += jobs_added
        self.tokens += tokens_added
