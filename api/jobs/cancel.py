"""Cancelling one job, as the jobs and the Responses routes both do: a queued job ends at
once (and its readers are told), a running one is marked for its worker to abort."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.core.job_ends import announce_ended
from api.core.resources import Resources
from db.jobs import cancel_queued_job, request_cancel_running_job
from db.states import JobStatus


@dataclass(frozen=True)
class CancelOutcome:
    # The job as the cancel left it; None when it was neither queued nor running (or not
    # visible to the caller): the route says which.
    row: Mapping[Any, Any] | None
    # Still running, its abort asked for (its worker stops it within VQUEUE_CANCEL_POLL_S).
    aborting: bool = False


async def cancel_job(
    resources: Resources, job_id: uuid.UUID, scope: uuid.UUID | None, what: str
) -> CancelOutcome:
    async with resources.db.begin() as conn:
        row = (await conn.execute(cancel_queued_job(job_id, scope))).mappings().first()
        if row is None:
            running = await conn.execute(request_cancel_running_job(job_id, scope))
            return CancelOutcome(running.mappings().first(), aborting=True)
    # Readers of a job that never ran learn here that it ended.
    await announce_ended(resources, [(str(job_id), row["attempt"])], JobStatus.CANCELLED, what)
    return CancelOutcome(row)
