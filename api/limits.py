"""What a submit must pass before anything is written: the key's own limits (429) and the
global bound on the queue (503). Each answer carries Retry-After.

- queued jobs per key: the key's jobs waiting now, plus the ones being submitted;
- tokens per key per day (UTC): prompt and output tokens of its jobs finished today. A job
  is admitted while the key is under its limit, so the last one may take it past the limit;
- queue depth, all keys together: counted at most once a second per API process, so the
  bound may be overshot by one second's submits.
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import Caller
from api.deps import Resources
from api.errors import OverloadedError, TooManyRequestsError
from db.schema import jobs
from db.states import JobStatus

# Retry-After for a full queue: long enough for the workers to drain some of it.
QUEUE_FULL_RETRY_S = 5
DEPTH_MAX_AGE_S = 1.0


def _queued(owner: uuid.UUID | None = None) -> Select[Any]:
    query = select(func.count()).where(jobs.c.status == JobStatus.QUEUED)
    return query if owner is None else query.where(jobs.c.owner_id == owner)


def _tokens_since(owner: uuid.UUID, since: datetime) -> Select[Any]:
    tokens = func.coalesce(jobs.c.prompt_tokens, 0) + func.coalesce(jobs.c.completion_tokens, 0)
    return select(func.coalesce(func.sum(tokens), 0)).where(
        jobs.c.owner_id == owner, jobs.c.finished_at >= since
    )


class QueueDepth:
    """The number of queued jobs, refreshed at most once a second by one request at a time."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._value = 0
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> int:
        if time.monotonic() - self._at > DEPTH_MAX_AGE_S:
            async with self._lock:
                if time.monotonic() - self._at > DEPTH_MAX_AGE_S:
                    async with self._db.connect() as conn:
                        self._value = (await conn.execute(_queued())).scalar_one()
                    self._at = time.monotonic()
        return self._value

    def add(self, jobs_added: int) -> None:
        """Count what this process just queued, until the next refresh."""
        self._value += jobs_added


async def admit(resources: Resources, caller: Caller, new_jobs: int) -> None:
    """Raise unless `new_jobs` more jobs may be queued for this caller now."""
    bound = resources.settings.max_queued_jobs
    if await resources.depth.current() + new_jobs > bound:
        raise OverloadedError(
            f"the queue is full ({bound} jobs waiting); try again shortly", QUEUE_FULL_RETRY_S
        )
    if caller.max_queued_jobs is None and caller.tokens_per_day is None:
        return
    async with resources.db.connect() as conn:
        if (limit := caller.max_queued_jobs) is not None:
            waiting = (await conn.execute(_queued(caller.owner_id))).scalar_one()
            if waiting + new_jobs > limit:
                raise TooManyRequestsError(
                    f"this key may have {limit} jobs queued; it has {waiting} and this request "
                    f"adds {new_jobs}",
                    QUEUE_FULL_RETRY_S,
                )
        if (limit := caller.tokens_per_day) is not None:
            now = datetime.now(UTC)
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            used = (await conn.execute(_tokens_since(caller.owner_id, midnight))).scalar_one()
            if used >= limit:
                tomorrow = midnight + timedelta(days=1)
                raise TooManyRequestsError(
                    f"this key has used its {limit} tokens for today (UTC)",
                    int((tomorrow - now).total_seconds()) + 1,
                )
    resources.depth.add(new_jobs)
