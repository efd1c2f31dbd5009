"""A job's attempts on a worker: claimed with a lease, the lease renewed, the outcome recorded
once (returning the summary a stream ends with), or the job handed back to the queue.

Like every state change in db/jobs.py, each is a conditional UPDATE on the allowed source
states and the attempt, so a job delivered twice or raced for changes at most once.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, Update, cast, func, literal_column, select, update

from db.conflicts import locked_in_id_order
from db.jobs import array_param, id_among, interval_s
from db.schema import jobs
from db.states import JobStatus, sources_of
from db.transitions import job_move

# What the end of a job's stream reports (api/job_views.job_summary): every column a client
# sees but the texts of the job's input and output.
SUMMARY_COLUMNS = (
    "id",
    "status",
    "priority",
    "timeout_s",
    "expires_at",
    "deadline_at",
    "cancel_requested_at",
    "model",
    "attempt",
    "finish_reason",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
    "started_at",
    "first_token_at",
    "finished_at",
    "batch_id",
    "custom_id",
    "metadata",
)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """What a worker reads of a job it has claimed: its input and how to run it
    (worker/prompts.py, worker/runner.py), and the times its metrics are measured from
    (worker/recorder.py). Only these columns come back: the rows are decoded in the worker
    beside its busy engine loop, on every job's way to the engine, and the other 20 columns
    (batch, owner, idempotency, lease, result...) are not used there."""

    id: uuid.UUID
    attempt: int
    prompt: str | None
    messages: list[dict[str, Any]] | None
    prompt_token_ids: list[int] | None
    params: dict[str, Any]
    priority: int
    timeout_s: int
    created_at: datetime
    started_at: datetime | None
    tools: dict[str, Any] | None  # vqueue/contract/tools.py ToolUse.stored(), for chat jobs
    deadline_at: datetime | None  # past it, a run is cancelled, its text so far kept
    # A response (api/responses/): a new attempt goes on from the text of the last one
    # (vqueue/contract/carry.py).
    continues: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ClaimedJob":
        return cls(*(row[name] for name in CLAIMED_COLUMNS))


CLAIMED_COLUMNS = tuple(field.name for field in fields(ClaimedJob))


def _claimed(name: str) -> Any:
    if name == "continues":
        return jobs.c.response.is_not(None).label(name)
    return jobs.c[name]


def _quoted(name: str) -> Any:
    # A constant, not a parameter: json_build_object cannot type an untyped parameter.
    return literal_column(f"'{name}'")


def summary_json() -> Any:
    """A row's SUMMARY_COLUMNS as one JSON object, written by Postgres (one text value to
    fetch, no per-column decoding in Python)."""
    pairs = [part for name in SUMMARY_COLUMNS for part in (_quoted(name), jobs.c[name])]
    return cast(func.json_build_object(*pairs), Text)


def claim_jobs(job_ids: list[uuid.UUID], worker: str, lease_s: float) -> Update:
    """Queued -> running with a new attempt and a lease, for every job of the list that is
    still queued; returns their CLAIMED_COLUMNS only to the claimant.

    An expired job is not claimed: the reconciler fails it. The rows are locked in id order,
    so two workers claiming overlapping lists (a message delivered twice) wait for each
    other instead of deadlocking; the second then finds the job running and skips it."""
    move = job_move(JobStatus.RUNNING)
    claimable = locked_in_id_order(id_among(job_ids), move.guard, jobs.c.expires_at > func.now())
    return (
        update(jobs)
        .where(claimable)
        .values(
            **move.values,
            attempt=jobs.c.attempt + 1,
            worker=worker,
            started_at=func.now(),
            lease_expires_at=func.now() + interval_s(lease_s),
            first_token_at=None,
            text=None,
            error=None,
        )
        .returning(*(_claimed(name) for name in CLAIMED_COLUMNS))
    )


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt of a job produced, to be recorded by `finish_jobs`."""

    job_id: uuid.UUID
    attempt: int
    status: JobStatus
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_at: datetime | None = None
    error: str | None = None
    logprobs: str | None = None  # vqueue/contract/logprobs.py encode(), where asked for
    tool_calls: str | None = None  # vqueue/contract/tools.py ToolCalls.encode(), where offered


# How a run ends (`expired` is only for a job that never ran). Each is reached from exactly
# these states, so one filter serves a mixed list.
RUN_OUTCOMES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_FINISHABLE = sorted(set.intersection(*(set(sources_of(s)) for s in RUN_OUTCOMES)))
assert all(set(sources_of(s)) == set(_FINISHABLE) for s in RUN_OUTCOMES)


def finish_jobs(results: list[AttemptResult]) -> Update:
    """Record each attempt's outcome in one statement, except where a newer attempt has started
    (that row does not change); returns the id and the summary_json() of each row recorded.

    Still `queued` with the same attempt means the reconciler requeued the job while this
    worker could not reach Postgres, and nobody claimed it since: the result is kept."""
    assert results
    assert all(result.status in RUN_OUTCOMES for result in results)
    fields: dict[str, list[Any]] = {
        "id": [r.job_id for r in results],
        "attempt": [r.attempt for r in results],
        "status": [str(r.status) for r in results],
        "text": [r.text for r in results],
        "finish_reason": [r.finish_reason for r in results],
        "prompt_tokens": [r.prompt_tokens for r in results],
        "completion_tokens": [r.completion_tokens for r in results],
        "first_token_at": [r.first_token_at for r in results],
        "error": [r.error for r in results],
        "logprobs": [r.logprobs for r in results],
        "tool_calls": [r.tool_calls for r in results],
    }
    finished = (
        func.unnest(
            *(array_param(f"finished_{name}", name, items) for name, items in fields.items())
        )
        .table_valued(*fields)
        .render_derived(name="finished")
    )
    return (
        update(jobs)
        .where(
            locked_in_id_order(id_among(fields["id"]), jobs.c.status.in_(_FINISHABLE)),
            jobs.c.id == finished.c.id,
            jobs.c.attempt == finished.c.attempt,
            jobs.c.status.in_(_FINISHABLE),
        )
        .values(
            **{name: finished.c[name] for name in list(fields)[2:]},
            finished_at=func.now(),
            lease_expires_at=None,
        )
        .returning(jobs.c.id, jobs.c.attempt, summary_json().label("summary"))
    )


def hand_back_job(job_id: uuid.UUID, attempt: int) -> Update:
    """Running -> queued: a worker shutting down, or making room for another's, returns a job
    it did not finish; not one whose cancel was asked for (nothing is returned then)."""
    move = job_move(JobStatus.QUEUED, only_from=[JobStatus.RUNNING])
    return (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.attempt == attempt,
            move.guard,
            jobs.c.cancel_requested_at.is_(None),
        )
        .values(**move.values, worker=None, lease_expires_at=None, released_at=func.now())
        .returning(jobs.c.id, jobs.c.priority)
    )


def renew_leases(job_ids: list[uuid.UUID], worker: str, lease_s: float) -> Update:
    """Extend the leases of the worker's running jobs; returns (id, attempt) of each renewed:
    a run of an older attempt than its row's is no longer wanted."""
    mine = (id_among(job_ids), jobs.c.status == JobStatus.RUNNING, jobs.c.worker == worker)
    return (
        update(jobs)
        .where(locked_in_id_order(*mine), *mine)
        .values(lease_expires_at=func.now() + interval_s(lease_s))
        .returning(jobs.c.id, jobs.c.attempt)
    )


def current_attempts(job_ids: list[uuid.UUID]) -> Select[Any]:
    """(id, attempt, status, worker) of each job, read without locks."""
    return select(jobs.c.id, jobs.c.attempt, jobs.c.status, jobs.c.worker).where(id_among(job_ids))
