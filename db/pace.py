"""Queries behind a batch's dry run: the pace the workers kept lately, and the work ahead."""

from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, Select, func, select

from db.schema import jobs
from db.states import JobStatus


def recent_output(window_s: float) -> Select[Any]:
    """(jobs, output tokens, seconds from the first one's start to the last one's end) of the
    jobs that succeeded in the last `window_s` seconds."""
    since = func.now() - timedelta(seconds=window_s)
    span = func.extract("epoch", func.max(jobs.c.finished_at) - func.min(jobs.c.started_at))
    return select(func.count(), func.coalesce(func.sum(jobs.c.completion_tokens), 0), span).where(
        jobs.c.status == JobStatus.SUCCEEDED,
        jobs.c.finished_at > since,
        jobs.c.started_at.is_not(None),
    )


def output_ahead(priority: int) -> Select[int, Any]:
    """(jobs, output tokens at most) queued or running at `priority` or before it (0 first):
    what runs before, or beside, a job of that priority submitted now."""
    max_tokens = jobs.c.params["max_tokens"].astext.cast(Integer)
    return select(func.count(), func.coalesce(func.sum(max_tokens), 0)).where(
        jobs.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        jobs.c.priority <= priority,
    )
