"""The pace the workers kept lately, and the work ahead: the queries behind a batch's dry run
and a queued job's wait."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, func, or_, select

from db.schema import jobs
from db.states import JobStatus


def _succeeded_lately(window_s: float) -> tuple[ColumnElement[bool], ...]:
    """The jobs that ran and succeeded in the last `window_s` seconds (an index holds the
    succeeded jobs by their end)."""
    since = func.now() - timedelta(seconds=window_s)
    return (
        jobs.c.status == JobStatus.SUCCEEDED,
        jobs.c.finished_at > since,
        jobs.c.started_at.is_not(None),
    )


def recent_output(window_s: float) -> Select[Any]:
    """(jobs, output tokens, seconds from the first one's start to the last one's end) of the
    jobs that succeeded in the last `window_s` seconds."""
    span = func.extract("epoch", func.max(jobs.c.finished_at) - func.min(jobs.c.started_at))
    return select(func.count(), func.coalesce(func.sum(jobs.c.completion_tokens), 0), span).where(
        *_succeeded_lately(window_s)
    )


def recent_pace(window_s: float) -> Select[Any]:
    """Over the jobs that succeeded in the last `window_s` seconds: (how many, seconds from
    the earliest one's start to now, their output tokens, their seconds from the first token
    to the end, their seconds from the start to the first token, how many made a token)."""

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
    ).where(*_succeeded_lately(window_s))


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


def running_jobs() -> Select[Any]:
    """How many jobs hold a worker's slot now."""
    return select(func.count()).where(jobs.c.status == JobStatus.RUNNING)


def output_ahead(priority: int) -> Select[int, Any]:
    """(jobs, output tokens at most) queued or running at `priority` or before it (0 first):
    what runs before, or beside, a job of that priority submitted now."""
    max_tokens = jobs.c.params["max_tokens"].astext.cast(Integer)
    return select(func.count(), func.coalesce(func.sum(max_tokens), 0)).where(
        jobs.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        jobs.c.priority <= priority,
    )
