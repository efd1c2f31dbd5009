"""Turns batch rows and their job counts into the public shapes of the API."""

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.batches.schemas import BatchCounts, BatchLinks, BatchPublic
from db.batches import batch_job_counts
from db.states import TERMINAL_STATES, JobStatus

# Per batch: jobs in each state, and the output tokens of the finished ones.
Tally = dict[str, int]


async def tally_jobs(conn: AsyncConnection, batch_ids: Sequence[uuid.UUID]) -> dict[Any, Tally]:
    tallies: dict[Any, Tally] = {batch_id: {} for batch_id in batch_ids}
    if batch_ids:
        for batch_id, status, count, tokens in await conn.execute(batch_job_counts(batch_ids)):
            tally = tallies[batch_id]
            tally[status] = count
            tally["tokens"] = tally.get("tokens", 0) + tokens
    return tallies


def _seconds_left(row: Mapping[Any, Any], counts: BatchCounts, done: int) -> float | None:
    started = row["started_at"]
    if row["finished_at"] is not None or started is None or done == 0:
        return None if row["finished_at"] is None else 0.0
    elapsed: float = (datetime.now(UTC) - started).total_seconds()
    return round((counts.total - done) * elapsed / done, 1)


def batch_public(row: Mapping[Any, Any], tally: Tally) -> BatchPublic:
    counts = BatchCounts(
        total=row["total"],
        **{status.value: tally.get(status, 0) for status in JobStatus},
    )
    done = sum(tally.get(status, 0) for status in TERMINAL_STATES)
    batch_id = str(row["id"])
    return BatchPublic(
        id=row["id"],
        status=row["status"],
        format=row["format"],
        filename=row["filename"],
        priority=row["priority"],
        defaults=row["defaults"],
        counts=counts,
        skipped=row["skipped"],
        line_errors=row["line_errors"],
        completion_tokens=tally.get("tokens", 0),
        estimated_seconds_left=_seconds_left(row, counts, done),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cancel_requested_at=row["cancel_requested_at"],
        webhook=row.get("webhook"),
        links=BatchLinks(
            self=f"/batches/{batch_id}",
            results=f"/batches/{batch_id}/results",
            jobs=f"/batches/{batch_id}/jobs",
            cancel=f"/batches/{batch_id}/cancel",
        ),
    )
