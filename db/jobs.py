"""Every query on the jobs table, as statements that both the async API and sync workers run.

State changes are conditional UPDATEs filtered on the allowed source states (and the attempt),
so that two workers racing on one job, or a job delivered twice, change it at most once.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Update, func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert

from db.schema import jobs
from db.states import JobStatus, sources_of


def insert_job(
    job_id: uuid.UUID,
    *,
    prompt: str | None,
    messages: list[dict[str, str]] | None,
    params: dict[str, Any],
    model: str | None,
) -> Insert:
    return insert(jobs).values(
        id=job_id,
        status=JobStatus.QUEUED,
        prompt=prompt,
        messages=messages,
        params=params,
        model=model,
    )


def get_job(job_id: uuid.UUID) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id)


def list_jobs(*, limit: int, offset: int, status: JobStatus | None) -> Select[Any]:
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit).offset(offset)
    if status is not None:
        query = query.where(jobs.c.status == status)
    return query


def count_jobs(*, status: JobStatus | None) -> Select[Any]:
    query = select(func.count()).select_from(jobs)
    if status is not None:
        query = query.where(jobs.c.status == status)
    return query


def claim_job(job_id: uuid.UUID, worker: str) -> Update:
    """Queued -> running with a new attempt; returns the row only to the one claimant."""
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(sources_of(JobStatus.RUNNING)))
        .values(
            status=JobStatus.RUNNING,
            attempt=jobs.c.attempt + 1,
            worker=worker,
            started_at=func.now(),
            first_token_at=None,
            text=None,
            error=None,
        )
        .returning(jobs)
    )


def finish_job(
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    *,
    text: str | None,
    finish_reason: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    first_token_at: datetime | None,
    error: str | None,
) -> Update:
    """Running -> terminal for this attempt only: a stale attempt finishing late changes nothing."""
    assert status.is_terminal
    return (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.attempt == attempt,
            jobs.c.status.in_(sources_of(status)),
            jobs.c.status == JobStatus.RUNNING,
        )
        .values(
            status=status,
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            first_token_at=first_token_at,
            error=error,
            finished_at=func.now(),
        )
        .returning(jobs.c.id)
    )


def fail_queued_job(job_id: uuid.UUID, error: str) -> Update:
    """Queued -> failed, for a job that can never start (e.g. it could not be enqueued)."""
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(sources_of(JobStatus.FAILED)))
        .where(jobs.c.status == JobStatus.QUEUED)
        .values(status=JobStatus.FAILED, error=error, finished_at=func.now())
    )
