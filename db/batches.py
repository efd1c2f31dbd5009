"""Every query on batches and on the jobs of a batch.

A batch's jobs are written with COPY and left unreleased (no broker message, released_at NULL);
the batch feeder releases them a window at a time, oldest batch first, so a batch of 50,000
never sits in the broker ahead of everybody else's jobs.
"""

import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
from psycopg import AsyncConnection
from sqlalchemy import Delete, Select, Update, and_, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import Insert

from db.attempts import SUMMARY_COLUMNS
from db.conflicts import locked_in_id_order
from db.schema import batches, jobs, owned_by
from db.states import TERMINAL_STATES, BatchStatus, JobStatus
from db.stored_text import json_to_stored, to_stored
from db.transitions import batch_move, either, job_move

ACTIVE_JOB_STATES = (JobStatus.QUEUED, JobStatus.RUNNING)

# The columns COPY fills for each job of a batch, in this order (see job_copy_row()).
JOB_COPY_COLUMNS = (
    "id",
    "status",
    "prompt",
    "messages",
    "prompt_token_ids",
    "params",
    "model",
    "priority",
    "timeout_s",
    "expires_at",
    "batch_id",
    "batch_line",
    "custom_id",
    "metadata",
    "released_at",
    "owner_id",
    "tools",
    "release_rank",
)


def _json(value: Any) -> str | None:
    # COPY's text format takes JSON columns as their text.
    return None if value is None else orjson.dumps(value).decode()


# COPY bypasses the columns' types: the callers' text is escaped here as StoredText and
# StoredJSON would (db/stored_text.py).
def job_copy_row(
    batch_id: uuid.UUID,
    *,
    line: int,
    prompt: str | None,
    messages: list[dict[str, str]] | None,
    params: dict[str, Any],
    prompt_token_ids: list[int] | None = None,
    custom_id: str | None,
    metadata: dict[str, Any] | None,
    model: str | None,
    priority: int,
    timeout_s: int,
    expires_at: Any,
    owner_id: uuid.UUID,
    tools: dict[str, Any] | None = None,
    release_rank: int | None = None,
) -> tuple[Any, ...]:
    """`release_rank`: its place in the order the feeder releases the batch (its line's,
    where not given)."""
    return (
        uuid.uuid4(),
        JobStatus.QUEUED.value,
        None if prompt is None else to_stored(prompt),
        _json(json_to_stored(messages)),
        prompt_token_ids,
        _json(json_to_stored(params)),
        model,
        priority,
        timeout_s,
        expires_at,
        batch_id,
        line,
        None if custom_id is None else to_stored(custom_id),
        _json(json_to_stored(metadata)),
        None,
        owner_id,
        _json(json_to_stored(tools)),
        line if release_rank is None else release_rank,
    )


async def copy_jobs(conn: AsyncConnection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY the rows into jobs on the caller's transaction; returns how many went in."""
    count = 0
    statement = f"COPY jobs ({', '.join(JOB_COPY_COLUMNS)}) FROM STDIN"
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)
            count += 1
    return count


def insert_batch() -> Insert:
    """A new batch; returns its id, or no row when its owner's Idempotency-Key is taken."""
    conflict = ["owner_id", "idempotency_key"]
    return insert(batches).on_conflict_do_nothing(index_elements=conflict).returning(batches.c.id)


def start_batch(batch_id: uuid.UUID, *, total: int, skipped: int, line_errors: Any) -> Update:
    """validating -> in_progress, in the transaction that stored its jobs."""
    move = batch_move(BatchStatus.IN_PROGRESS)
    return (
        update(batches)
        .where(batches.c.id == batch_id, move.guard)
        .values(
            **move.values,
            total=total,
            skipped=skipped,
            line_errors=line_errors,
            started_at=func.now(),
        )
        .returning(batches)
    )


# `scope`: the owner whose batches a caller may see, None for all (see api/core/auth.py).


def get_batch(batch_id: uuid.UUID, scope: uuid.UUID | None) -> Select[Any]:
    return select(batches).where(batches.c.id == batch_id, owned_by(batches.c.owner_id, scope))


def get_batch_by_idempotency_key(owner_id: uuid.UUID, key: str) -> Select[Any]:
    return select(batches).where(batches.c.owner_id == owner_id, batches.c.idempotency_key == key)


def list_batches(
    *, limit: int, offset: int, status: BatchStatus | None, scope: uuid.UUID | None
) -> Select[Any]:
    query = (
        select(batches).order_by(batches.c.created_at.desc(), batches.c.id).limit(limit)
    ).offset(offset)
    query = query.where(owned_by(batches.c.owner_id, scope))
    if status is not None:
        query = query.where(batches.c.status == status)
    return query


def count_batches(*, status: BatchStatus | None, scope: uuid.UUID | None) -> Select[Any]:
    query = select(func.count()).select_from(batches).where(owned_by(batches.c.owner_id, scope))
    if status is not None:
        query = query.where(batches.c.status == status)
    return query


def batch_job_counts(batch_ids: Sequence[uuid.UUID]) -> Select[Any]:
    """(batch_id, status, jobs, completion tokens) for each status present."""
    return (
        select(
            jobs.c.batch_id,
            jobs.c.status,
            func.count(),
            func.coalesce(func.sum(jobs.c.completion_tokens), 0),
        )
        .where(jobs.c.batch_id.in_(batch_ids))
        .group_by(jobs.c.batch_id, jobs.c.status)
    )


def batch_results(
    batch_id: uuid.UUID, *, by_completion: bool, statuses: Collection[str] = TERMINAL_STATES
) -> Select[Any]:
    """The finished jobs of a batch (those of `statuses`), in input order or in the order they
    finished: each job's summary (db.attempts.SUMMARY_COLUMNS), line, text, sampling
    parameters, log probabilities and tools."""
    order = (jobs.c.finished_at, jobs.c.batch_line) if by_completion else (jobs.c.batch_line,)
    return (
        select(
            *(jobs.c[name] for name in SUMMARY_COLUMNS),
            jobs.c.batch_line,
            jobs.c.text,
            jobs.c.params,
            jobs.c.logprobs,
            jobs.c.tools,
            jobs.c.tool_calls,
        )
        .where(jobs.c.batch_id == batch_id, jobs.c.status.in_(statuses))
        .order_by(*order)
    )


def batch_jobs(
    batch_id: uuid.UUID, *, limit: int, offset: int, status: JobStatus | None
) -> Select[Any]:
    query = (
        select(jobs)
        .where(jobs.c.batch_id == batch_id)
        .order_by(jobs.c.batch_line)
        .limit(limit)
        .offset(offset)
    )
    if status is not None:
        query = query.where(jobs.c.status == status)
    return query


def request_cancel_batch(batch_id: uuid.UUID) -> Update:
    move = batch_move(BatchStatus.CANCELLING)
    return (
        update(batches)
        .where(batches.c.id == batch_id, move.guard)
        .values(**move.values, cancel_requested_at=func.now())
        .returning(batches)
    )


def cancel_batch_queued_jobs(batch_id: uuid.UUID) -> Update:
    """Its queued jobs end at once; the released ones' broker messages are skipped on claim."""
    move = job_move(JobStatus.CANCELLED, only_from=[JobStatus.QUEUED])
    queued = (jobs.c.batch_id == batch_id, move.guard)
    return (
        update(jobs)
        .where(locked_in_id_order(*queued), *queued)
        .values(
            **move.values,
            cancel_requested_at=func.now(),
            finished_at=func.now(),
            error="cancelled with its batch while queued",
        )
        .returning(jobs.c.id, jobs.c.attempt, jobs.c.released_at.is_not(None))
    )


def cancel_batch_running_jobs(batch_id: uuid.UUID) -> Update:
    """Its running jobs are aborted by their workers, keeping their partial text."""
    running = (jobs.c.batch_id == batch_id, jobs.c.status == JobStatus.RUNNING)
    return (
        update(jobs)
        .where(locked_in_id_order(*running), *running)
        .values(cancel_requested_at=func.coalesce(jobs.c.cancel_requested_at, func.now()))
    )


# The batch feeder's statements.


def open_batches() -> Select[Any]:
    """Batches whose jobs may still need releasing, oldest first."""
    return (
        select(batches.c.id)
        .where(batches.c.status == BatchStatus.IN_PROGRESS)
        .order_by(batches.c.created_at)
    )


def released_backlog() -> Select[Any]:
    """How many released jobs of each batch wait in the broker (queued, not yet claimed)."""
    return (
        select(jobs.c.batch_id, func.count())
        .where(
            jobs.c.batch_id.in_(open_batches().with_only_columns(batches.c.id)),
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.released_at.is_not(None),
        )
        .group_by(jobs.c.batch_id)
    )


def release_jobs(batch_id: uuid.UUID, count: int) -> Update:
    """Mark the next `count` jobs of a batch, in its release order, as handed to the broker."""
    next_ids = (
        select(jobs.c.id)
        .where(
            jobs.c.batch_id == batch_id,
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.released_at.is_(None),
        )
        .order_by(jobs.c.release_rank)
        .limit(count)
        .with_for_update(skip_locked=True)
    )
    return (
        update(jobs)
        .where(jobs.c.id.in_(next_ids.scalar_subquery()))
        .values(released_at=func.now())
        .returning(jobs.c.id, jobs.c.priority)
    )


def finish_batches() -> Update:
    """Open batches with no queued or running job left are over."""
    no_active_jobs = ~exists().where(
        and_(jobs.c.batch_id == batches.c.id, jobs.c.status.in_(ACTIVE_JOB_STATES))
    )
    move = either(
        batch_move(BatchStatus.CANCELLED, only_from=[BatchStatus.CANCELLING]),
        batch_move(BatchStatus.COMPLETED, only_from=[BatchStatus.IN_PROGRESS]),
    )
    return (
        update(batches)
        .where(move.guard, no_active_jobs)
        .values(
            **move.values,
            finished_at=func.now(),
        )
        .returning(batches.c.id, batches.c.status)
    )


def fail_interrupted_uploads(older_than_s: float) -> Update:
    """A batch still validating long after its upload began lost its API process midway."""
    move = batch_move(BatchStatus.FAILED)
    return (
        update(batches)
        .where(
            move.guard,
            batches.c.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s),
        )
        .values(
            **move.values,
            error="the upload was interrupted before its jobs were stored; upload it again",
            finished_at=func.now(),
        )
        .returning(batches.c.id)
    )


def list_openai_batches(
    *, limit: int, after: uuid.UUID | None, scope: uuid.UUID | None
) -> Select[Any]:
    """Batches made through /v1/batches, newest first, after the batch `after` if given."""
    query = (
        select(batches)
        .where(batches.c.metadata["openai"].is_not(None), owned_by(batches.c.owner_id, scope))
        .order_by(batches.c.created_at.desc(), batches.c.id)
        .limit(limit)
    )
    if after is not None:
        cursor = select(batches.c.created_at).where(batches.c.id == after).scalar_subquery()
        query = query.where(batches.c.created_at < cursor)
    return query


def delete_batch(batch_id: uuid.UUID) -> Delete:
    """A batch whose upload failed before it started (its jobs go with it)."""
    return delete(batches).where(batches.c.id == batch_id)
