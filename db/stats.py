"""Queries behind GET /stats and GET /metrics: the queue as Postgres sees it, whole (scope
None: an admin, a scraper) or one owner's part of it."""

import uuid
from typing import Any

from sqlalchemy import Select, func, select

from db.schema import batches, jobs, owned_by, webhook_deliveries
from db.states import TERMINAL_STATES, BatchStatus, DeliveryStatus, JobStatus


def queued_by_priority(scope: uuid.UUID | None = None) -> Select[Any]:
    """(priority, jobs waiting, of which released to the broker) per priority present."""
    return (
        select(
            jobs.c.priority,
            func.count(),
            func.count(jobs.c.released_at),
        )
        .where(jobs.c.status == JobStatus.QUEUED, owned_by(jobs.c.owner_id, scope))
        .group_by(jobs.c.priority)
    )


def running_jobs(scope: uuid.UUID | None = None) -> Select[Any]:
    return select(func.count()).where(
        jobs.c.status == JobStatus.RUNNING, owned_by(jobs.c.owner_id, scope)
    )


def oldest_queued(scope: uuid.UUID | None = None) -> Select[Any]:
    """Seconds the longest-waiting queued job has waited (None when none waits)."""
    age = func.extract("epoch", func.now() - func.min(jobs.c.created_at))
    return select(age).where(jobs.c.status == JobStatus.QUEUED, owned_by(jobs.c.owner_id, scope))


def open_batches(scope: uuid.UUID | None = None) -> Select[Any]:
    return select(func.count()).where(
        batches.c.status.in_([BatchStatus.IN_PROGRESS, BatchStatus.CANCELLING]),
        owned_by(batches.c.owner_id, scope),
    )


def finished_by_status(owner_id: uuid.UUID) -> Select[Any]:
    """(status, jobs, output tokens) of one owner's ended jobs (the whole queue's figures
    are counters in Redis, vqueue/contract/metrics.py)."""
    return (
        select(jobs.c.status, func.count(), func.coalesce(func.sum(jobs.c.completion_tokens), 0))
        .where(jobs.c.owner_id == owner_id, jobs.c.status.in_(sorted(TERMINAL_STATES)))
        .group_by(jobs.c.status)
    )


def webhook_backlog() -> Select[Any, Any]:
    """(webhook deliveries pending, seconds the longest-overdue one has been due, or None)."""
    d = webhook_deliveries
    due_since = func.min(d.c.next_attempt_at).filter(d.c.next_attempt_at <= func.now())
    overdue = func.extract("epoch", func.now() - due_since)
    return select(func.count(), overdue).where(d.c.status == DeliveryStatus.PENDING)
