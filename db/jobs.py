"""Every query on the jobs table, as statements that both the async API and sync workers run,
but a worker's own attempts (claim, lease, result, hand-back: db/attempts.py).

State changes are conditional UPDATEs filtered on the allowed source states (and the attempt),
so that two workers racing on one job, or a job delivered twice, change it at most once.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Select,
    Update,
    any_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.sql.dml import ReturningInsert

from db.conflicts import locked_in_id_order
from db.schema import ANONYMOUS_OWNER, jobs, owned_by
from db.states import JobStatus
from db.transitions import job_move


def interval_s(value: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


def array_param(name: str, column_name: str, items: list[Any]) -> BindParameter[Any]:
    """One array parameter typed like a jobs column. A list of any length is one parameter,
    so the statement's text is the same for every batch size: SQLAlchemy compiles it once and
    psycopg parses it once. A VALUES list or an IN list has a placeholder per item, and
    psycopg's parse of each new batch size's text (hundreds of placeholders) took 350 ms of a
    worker thread in one GPU run's burst."""
    return bindparam(name, items, type_=ARRAY(jobs.c[column_name].type))


def id_among(job_ids: list[uuid.UUID]) -> Any:
    """`jobs.id` is one of the list's, as one array parameter."""
    return jobs.c.id == any_(array_param("job_ids", "id", job_ids))


def job_row(
    job_id: uuid.UUID,
    *,
    prompt: str | None,
    messages: list[dict[str, str]] | None,
    params: dict[str, Any],
    model: str | None,
    priority: int,
    timeout_s: int,
    expires_at: datetime,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    metadata: dict[str, Any] | None = None,
    owner_id: uuid.UUID = ANONYMOUS_OWNER,
    prompt_token_ids: list[int] | None = None,
    tools: dict[str, Any] | None = None,
    deadline_at: datetime | None = None,
    response: dict[str, Any] | None = None,
    webhook: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of a new queued job, for insert_jobs(). A deadline is also the latest its
    wait in the queue may end."""
    if deadline_at is not None:
        expires_at = min(expires_at, deadline_at)
    return {
        "id": job_id,
        "owner_id": owner_id,
        "status": JobStatus.QUEUED,
        "prompt": prompt,
        "messages": messages,
        "prompt_token_ids": prompt_token_ids,
        "params": params,
        "model": model,
        "priority": priority,
        "timeout_s": timeout_s,
        "expires_at": expires_at,
        "deadline_at": deadline_at,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "metadata": metadata,
        "tools": tools,
        "response": response,
        "webhook": webhook,
    }


def insert_jobs() -> ReturningInsert[Any]:
    """Many job_row()s in one statement; a row whose owner already used its idempotency key is
    skipped."""
    conflict = ["owner_id", "idempotency_key"]
    return insert(jobs).on_conflict_do_nothing(index_elements=conflict).returning(jobs)


# `scope`: the owner whose jobs a caller may see, None for all (see api/core/auth.py).


def get_job(job_id: uuid.UUID, scope: uuid.UUID | None = None) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id, owned_by(jobs.c.owner_id, scope))


def get_jobs(job_ids: list[uuid.UUID]) -> Select[Any]:
    """Many jobs by id, whoever owns them (the caller checks the owner)."""
    return select(jobs).where(id_among(job_ids))


def get_job_by_idempotency_key(owner_id: uuid.UUID, key: str) -> Select[Any]:
    return select(jobs).where(jobs.c.owner_id == owner_id, jobs.c.idempotency_key == key)


def list_jobs(
    *, limit: int, offset: int, status: JobStatus | None, scope: uuid.UUID | None
) -> Select[Any]:
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit).offset(offset)
    query = query.where(owned_by(jobs.c.owner_id, scope))
    if status is not None:
        query = query.where(jobs.c.status == status)
    return query


def count_jobs(*, status: JobStatus | None, scope: uuid.UUID | None) -> Select[Any]:
    query = select(func.count()).select_from(jobs).where(owned_by(jobs.c.owner_id, scope))
    if status is not None:
        query = query.where(jobs.c.status == status)
    return query


def fail_unqueued_jobs(job_ids: list[uuid.UUID], error: str) -> Update:
    """Queued -> failed, for jobs that can never start (their enqueue failed)."""
    move = job_move(JobStatus.FAILED, only_from=[JobStatus.QUEUED])
    queued = (id_among(job_ids), move.guard)
    return (
        update(jobs)
        .where(locked_in_id_order(*queued), *queued)
        .values(**move.values, error=error, finished_at=func.now())
    )


def cancel_queued_job(job_id: uuid.UUID, scope: uuid.UUID | None = None) -> Update:
    move = job_move(JobStatus.CANCELLED, only_from=[JobStatus.QUEUED])
    return (
        update(jobs)
        .where(jobs.c.id == job_id, move.guard, owned_by(jobs.c.owner_id, scope))
        .values(
            **move.values,
            cancel_requested_at=func.now(),
            finished_at=func.now(),
            error="cancelled while queued",
        )
        .returning(jobs)
    )


def request_cancel_running_job(job_id: uuid.UUID, scope: uuid.UUID | None = None) -> Update:
    """Mark a running job for cancellation; its worker aborts it within VQUEUE_CANCEL_POLL_S."""
    return (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.status == JobStatus.RUNNING,
            owned_by(jobs.c.owner_id, scope),
        )
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, func.now()))
        .returning(jobs)
    )


def cancel_requested(job_ids: list[uuid.UUID]) -> Select[Any]:
    return select(jobs.c.id).where(
        id_among(job_ids),
        jobs.c.status == JobStatus.RUNNING,
        jobs.c.cancel_requested_at.is_not(None),
    )


# The reconciler's statements. Each is safe to run from several workers at once.


def _lost(live_workers: list[str], lease_s: float) -> list[Any]:
    # A lapsed lease of a worker that still heartbeats usually means it cannot reach
    # Postgres, not that it died: its result is on the way, and running the job again would
    # waste it. Only a lease lapsed for long (the worker lost track of the job) counts then.
    lost_track = jobs.c.lease_expires_at < func.now() - interval_s(max(10 * lease_s, 60))
    return [
        jobs.c.lease_expires_at < func.now(),
        or_(jobs.c.worker.is_(None), jobs.c.worker.not_in(live_workers), lost_track),
    ]


def requeue_lost_jobs(max_attempts: int, live_workers: list[str], lease_s: float) -> Update:
    """Running jobs whose worker died (lease lapsed, no heartbeat) go back to the queue."""
    move = job_move(JobStatus.QUEUED, only_from=[JobStatus.RUNNING])
    lost = (move.guard, *_lost(live_workers, lease_s), jobs.c.attempt < max_attempts)
    return (
        update(jobs)
        .where(locked_in_id_order(*lost, skip_locked=True), *lost)
        .values(**move.values, worker=None, lease_expires_at=None, released_at=func.now())
        .returning(jobs.c.id, jobs.c.priority)
    )


def give_up_lost_jobs(max_attempts: int, live_workers: list[str], lease_s: float) -> Update:
    """Lost jobs that already used every attempt fail instead of looping forever."""
    move = job_move(JobStatus.FAILED, only_from=[JobStatus.RUNNING])
    lost = (move.guard, *_lost(live_workers, lease_s), jobs.c.attempt >= max_attempts)
    return (
        update(jobs)
        .where(locked_in_id_order(*lost, skip_locked=True), *lost)
        .values(
            **move.values,
            error=f"gave up after {max_attempts} attempts: the worker running it was lost "
            "each time",
            finished_at=func.now(),
            lease_expires_at=None,
        )
        .returning(jobs.c.id, jobs.c.attempt)
    )


def expire_queued_jobs() -> Update:
    move = job_move(JobStatus.EXPIRED, only_from=[JobStatus.QUEUED])
    expired = (move.guard, jobs.c.expires_at <= func.now())
    missed_deadline = jobs.c.deadline_at.is_not(None) & (jobs.c.deadline_at <= jobs.c.expires_at)
    return (
        update(jobs)
        .where(locked_in_id_order(*expired, skip_locked=True), *expired)
        .values(
            **move.values,
            error=case(
                (missed_deadline, "expired: its deadline passed before it could start"),
                else_="expired: waited in the queue longer than its queue timeout",
            ),
            finished_at=func.now(),
        )
        .returning(jobs.c.id, jobs.c.attempt)
    )


def stale_queued_jobs(older_than_s: float, limit: int) -> Select[Any]:
    """Queued jobs released long enough ago that their message must be in the broker by now.

    A batch's jobs not yet released (released_at NULL) have no message by design."""
    return (
        select(jobs.c.id, jobs.c.priority)
        .where(
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.released_at < func.now() - interval_s(older_than_s),
        )
        .order_by(jobs.c.released_at)
        .limit(limit)
    )


def queued_among(job_ids: list[uuid.UUID]) -> Select[Any]:
    return select(jobs.c.id).where(id_among(job_ids), jobs.c.status == JobStatus.QUEUED)
