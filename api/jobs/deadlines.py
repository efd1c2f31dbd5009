"""A submit's deadline: when the caller needs the job done by (`deadline_s` in the body, or a
`Cancel-After` header, the earlier of the two), and whether the queue can meet it.

At submit the queue's estimate of the job's finish (api/jobs/waiting.py) is compared with the
deadline. Where it says the deadline will be missed, the submit is refused with 429 and a
Retry-After of about how late it would be, or, with `on_infeasible: "accept"`, queued with a
warning. Before any job has ended lately there is no estimate, and the job is queued. Once
queued, a job still waiting at its deadline expires; one still running is cancelled with its
text so far kept (worker/run_limit.py).
"""

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Header

from api.core.errors import TooManyRequestsError
from api.jobs.schemas import MAX_DEADLINE_S, JobCreate
from api.jobs.waiting import WaitEstimator

CancelAfter = Annotated[
    float | None,
    Header(
        alias="Cancel-After",
        gt=0,
        le=MAX_DEADLINE_S,
        description="Seconds from now by which the job must be done; as `deadline_s`",
    ),
]


def deadline_s_of(body: JobCreate, cancel_after: float | None) -> float | None:
    """The job's deadline in seconds from now, if it has one: the earlier of the two."""
    asked = [seconds for seconds in (body.deadline_s, cancel_after) if seconds is not None]
    return min(asked) if asked else None


async def judge_deadline(
    waits: WaitEstimator, body: JobCreate, deadline_at: datetime
) -> str | None:
    """None where the estimate meets the deadline (or there is none yet); a warning to return
    where it does not and the caller accepts that; else raises 429."""
    wait = await waits.wait_if_submitted(body.priority, body.max_tokens)
    if wait is None or wait.estimated_finish_at is None:
        return None
    late_s = (wait.estimated_finish_at - deadline_at).total_seconds()
    if late_s <= 0:
        return None
    finish_in_s = (wait.estimated_finish_at - datetime.now(UTC)).total_seconds()
    said = (
        f"the deadline cannot be met: at the queue's pace the job would finish in about "
        f"{finish_in_s:.0f}s ({wait.position} jobs ahead), {late_s:.0f}s after its deadline"
    )
    if body.on_infeasible == "accept":
        return said
    raise TooManyRequestsError(
        f'{said}; retry later, give it more time, or send on_infeasible="accept" to queue it '
        "anyway",
        math.ceil(late_s),
    )


def deadline_at_of(deadline_s: float | None, now: datetime) -> datetime | None:
    return None if deadline_s is None else now + timedelta(seconds=deadline_s)
