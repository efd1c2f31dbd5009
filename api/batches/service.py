"""What the batch routes share with the OpenAI Batch API: a batch id, loading a batch the
caller may see, cancelling one, the batch feeder."""

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import Depends, Request

from api.core.callers import Caller
from api.core.errors import ConflictError, NotFoundError
from api.core.job_ends import announce_ended
from api.core.resources import Resources, first_row
from db.batches import (
    cancel_batch_queued_jobs,
    cancel_batch_running_jobs,
    finish_batches,
    get_batch,
    request_cancel_batch,
)
from db.conflicts import retry_conflicts_async
from db.states import BatchStatus, JobStatus
from vqueue.loops.batch_feeder import BatchFeeder


async def get_feeder(request: Request) -> BatchFeeder:
    """This process's batch feeder, woken when a batch is stored so its jobs start at once."""
    feeder: BatchFeeder = request.app.state.feeder
    return feeder


FeederDep = Annotated[BatchFeeder, Depends(get_feeder)]


def parse_batch_id(batch_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(batch_id)
    except ValueError:
        raise NotFoundError(f"no batch {batch_id!r}") from None


async def load_batch(
    resources: Resources, batch_uuid: uuid.UUID, caller: Caller
) -> Mapping[Any, Any] | None:
    """The batch, if this caller may see it."""
    return await first_row(resources.db, get_batch(batch_uuid, caller.scope))


async def cancel_batch_now(resources: Resources, batch: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """Cancel a batch the caller may see (see cancel_batch); returns its row afterwards."""
    batch_uuid = batch["id"]

    async def cancel() -> Sequence[Any]:
        async with resources.db.begin() as conn:
            row = (await conn.execute(request_cancel_batch(batch_uuid))).mappings().first()
            if row is None:
                row = (await conn.execute(get_batch(batch_uuid, None))).mappings().one()
                if row["status"] in (BatchStatus.COMPLETED, BatchStatus.FAILED):
                    raise ConflictError(
                        f"the batch already {row['status']}; it cannot be cancelled"
                    )
                if row["status"] == BatchStatus.VALIDATING:
                    raise ConflictError("the batch is still being stored; cancel it once it starts")
            cancelled = (await conn.execute(cancel_batch_queued_jobs(batch_uuid))).all()
            await conn.execute(cancel_batch_running_jobs(batch_uuid))
            await conn.execute(finish_batches())
            return cancelled

    cancelled = await retry_conflicts_async(cancel, "cancelling a batch")
    # Readers of released jobs may be waiting on their streams; unreleased ones have none.
    ended = [(str(job_id), attempt) for job_id, attempt, released in cancelled if released]
    await announce_ended(resources, ended, JobStatus.CANCELLED, f"batch {batch_uuid}")
    async with resources.db.connect() as conn:
        row: Mapping[Any, Any] = (await conn.execute(get_batch(batch_uuid, None))).mappings().one()
    return row
