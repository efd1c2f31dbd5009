"""Queries behind GET /stats and GET /metrics: the queue as Postgres sees it."""

from typing import Any

from sqlalchemy import Select, func, select

from db.schema import batches, jobs
from db.states import BatchStatus, JobStatus


def queued_by_priority() -> Select[Any]:
    """(priority, jobs waiting, of which released to the broker) per priority present."""
    return (
        select(
            jobs.c.priority,
            func.count(),
            func.count(jobs.c.released_at),
        )
        .where(jobs.c.status == JobStatus.QUEUED)
        .group_by(jobs.c.priority)
    )


def running_jobs() -> Select[Any]:
    return select(func.count()).where(jobs.c.status == JobStatus.RUNNING)


def oldest_queued() -> Select[Any]:
    """Seconds the longest-waiting queued job has waited (None when none waits)."""
    age = func.extract("epoch", func.now() - func.min(jobs.c.created_at))
    return select(age).where(jobs.c.status == JobStatus.QUEUED)


def open_batches() -> Select[Any]:
    return select(func.count()).where(
        batches.c.status.in_([BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING])
    )
