"""How long a queued job will wait: its place in the queue, and when it should start and end.

The estimate comes from what the workers did lately (the jobs that succeeded in the last
PACE_WINDOW_S seconds): a queued job starts when a slot frees, and slots free at the rate
jobs end, of any priority (the next free slot goes to the most urgent job queued), so the job
at place `n` starts after about `n + 1` more jobs end. It then takes the recent time to a
first token, and its `max_tokens` at the recent time per token of one job. Before any job has
ended lately there is no pace to go by: the place is known, the times are not.
"""

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from db.pace import jobs_ahead, recent_pace, running_jobs
from db.queue_load import DEFAULT_MAX_TOKENS
from db.states import JobStatus

PACE_WINDOW_S = 120.0
# Every queued job's reader asks: one read of the pace serves an API process this long.
PACE_CACHE_S = 2.0


class QueueWait(BaseModel):
    """Where a queued job stands, and when it should start and finish."""

    position: int = Field(description="Queued jobs that workers take before this one (0: next)")
    estimated_start_at: datetime | None = Field(
        description="When it should start, at the pace jobs ended lately; null until one has"
    )
    estimated_finish_at: datetime | None = Field(
        description="When it should end, if it produces all of its max_tokens"
    )
    jobs_per_s: float | None = Field(description="How fast jobs ended lately, all workers")


class Pace(NamedTuple):
    jobs_per_s: float
    first_token_s: float
    per_token_s: float


class WaitEstimator:
    """`slots`: how many jobs the live workers hold at most, all together (None: unknown)."""

    def __init__(self, db: AsyncEngine, slots: Callable[[], int | None] = lambda: None) -> None:
        self._db = db
        self._slots = slots
        self._pace: tuple[float, Pace] | None = None
        self._lock = asyncio.Lock()

    async def wait_of(self, row: Mapping[str, Any]) -> QueueWait | None:
        """The job's wait, while it is queued with a message and not past its queue timeout
        (None otherwise: an expired job will not run, it waits for the reconciler to fail it)."""
        if row["status"] != JobStatus.QUEUED or row["released_at"] is None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            return None
        async with self._db.connect() as conn:
            ahead = (await conn.execute(jobs_ahead(row["priority"], row["released_at"]))).scalar()
        pace = await self.pace()
        if pace is None:
            return QueueWait(
                position=int(ahead or 0),
                estimated_start_at=None,
                estimated_finish_at=None,
                jobs_per_s=None,
            )
        return estimate(int(ahead or 0), _max_tokens(row["params"]), pace, datetime.now(UTC))

    async def wait_if_submitted(self, priority: int, max_tokens: int) -> QueueWait | None:
        """The wait of a job of `priority` submitted now (None before there is a pace). Where
        a worker has a slot free for it, it starts at once."""
        now = datetime.now(UTC)
        async with self._db.connect() as conn:
            ahead = int((await conn.execute(jobs_ahead(priority, now))).scalar() or 0)
            running = int((await conn.execute(running_jobs())).scalar() or 0)
        pace = await self.pace()
        if pace is None:
            return None
        free = max((self._slots() or 0) - running, 0)
        return estimate(ahead, max_tokens, pace, now, free_slots=free)

    async def pace(self) -> Pace | None:
        """The recent pace, read by one caller at a time (the others take its read)."""
        if (cached := self._cached()) is not None:
            return cached
        async with self._lock:
            if (cached := self._cached()) is not None:
                return cached
            async with self._db.connect() as conn:
                found = (await conn.execute(recent_pace(PACE_WINDOW_S))).one()
            pace = pace_of(*found)
            # No pace yet is asked again: the first jobs' ends show at once, not a while later.
            self._pace = None if pace is None else (time.monotonic(), pace)
            return pace

    def _cached(self) -> Pace | None:
        if self._pace is not None and time.monotonic() - self._pace[0] < PACE_CACHE_S:
            return self._pace[1]
        return None


def pace_of(
    ended: int,
    since_first_start_s: Any,
    tokens: int,
    generating_s: Any,
    to_first_token_s: Any,
    generated: int,
) -> Pace | None:
    """The pace from recent_pace's figures; None when too little ended to tell."""
    if not ended or since_first_start_s is None or not tokens or not generated:
        return None
    span = min(max(float(since_first_start_s), 1.0), PACE_WINDOW_S)
    return Pace(
        jobs_per_s=ended / span,
        first_token_s=float(to_first_token_s) / generated,
        per_token_s=float(generating_s) / tokens,
    )


def estimate(
    position: int, max_tokens: int, pace: Pace, now: datetime, free_slots: int = 0
) -> QueueWait:
    """`free_slots`: slots free now, which the first jobs in line take without waiting for
    another job to end."""
    ends_awaited = max(position + 1 - free_slots, 0)
    start = now + timedelta(seconds=ends_awaited / pace.jobs_per_s)
    run_s = pace.first_token_s + max_tokens * pace.per_token_s
    return QueueWait(
        position=position,
        estimated_start_at=start,
        estimated_finish_at=start + timedelta(seconds=run_s),
        jobs_per_s=round(pace.jobs_per_s, 3),
    )


def _max_tokens(params: Mapping[str, Any]) -> int:
    asked = params.get("max_tokens")
    return asked if isinstance(asked, int) else DEFAULT_MAX_TOKENS
