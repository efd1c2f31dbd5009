"""Queries behind a queued job's wait: the jobs a worker takes before it, and the pace at
which jobs have lately ended and produced their tokens."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from db.schema import jobs
from db.states import JobStatus


def jobs_ahead(priority: int, released_at: datetime) -> Select[Any]:
    """The queued jobs a worker takes before one of `priority` queued at `released_at`: those
    of a more urgent priority (a lower number), and those of its own queued earlier (each
    priority's messages are served first in, first out). A batch's jobs not yet released
    have no message and wait for their feeder, not in this order."""
    return select(func.count()).where(
        jobs.c.status == JobStatus.QUEUED,
        jobs.c.released_at.is_not(None),
        or_(
            jobs.c.priority < priority,
            and_(jobs.c.priority == priority, jobs.c.released_at < released_at),
        ),
    )


def recent_pace(window_s: float) -> Select[Any]:
    """Over the jobs that succeeded in the last `window_s` seconds (an index holds them by
    their end): (how many, seconds from the earliest one's start to now, their output tokens,
    their seconds from the first token to the end, their seconds from the start to the first
    token, how many made a token)."""
    since = func.now() - timedelta(seconds=window_s)

    def seconds(span: Any) -> Any:
        return func.coalesce(func.sum(func.extract("epoch", span)), 0)

    generated = jobs.c.first_token_at.is_not(None)
    return select(
        func.count(),
        func.extract("epoch", func.now() - func.min(jobs.c.started_at)),
        func.coalesce(func.sum(jobs.c.completion_tokens).filter(generated), 0),
        seconds(jobs.c.finished_at - jobs.c.first_token_at),
        seconds(jobs.c.first_token_at - jobs.c.started_at),
        func.count().filter(generated),
    ).where(
        jobs.c.status == JobStatus.SUCCEEDED,
        jobs.c.finished_at > since,
        jobs.c.started_at.is_not(None),
    )
