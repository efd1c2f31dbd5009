"""Submit, poll, list and cancel jobs."""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from redis.exceptions import RedisError

from api.core.auth import CallerDep
from api.core.callers import Caller
from api.core.error_schemas import ErrorDetail, ErrorResponse
from api.core.errors import BadRequestError, ConflictError, NotFoundError
from api.core.limits import admit, input_tokens
from api.core.resources import Resources, ResourcesDep, first_row
from api.jobs.cancel import cancel_job as cancel_job_now
from api.jobs.deadlines import CancelAfter, deadline_at_of, deadline_s_of, judge_deadline
from api.jobs.follower import load_job
from api.jobs.schemas import JobCreate, JobPublic, JobsPublic
from api.jobs.service import (
    NOT_FOUND,
    IdempotencyKey,
    new_job_row,
    parse_job_id,
    request_fingerprint,
)
from api.jobs.services import JobServicesDep
from api.jobs.token_log import text_so_far
from api.jobs.views import job_public
from api.webhooks.admission import webhook_refusal
from db.jobs import (
    count_jobs,
    get_job,
    get_job_by_idempotency_key,
    list_jobs,
)
from db.states import JobStatus

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)


async def _by_idempotency_key(
    resources: Resources, caller: Caller, key: str
) -> Mapping[str, Any] | None:
    return await first_row(resources.db, get_job_by_idempotency_key(caller.owner_id, key))


def _replay(row: Mapping[str, Any], fingerprint: str | None, response: Response) -> JobPublic:
    if row["request_hash"] != fingerprint:
        raise ConflictError("this Idempotency-Key was already used with a different request body")
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/jobs/{row['id']}"
    return job_public(row)


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobPublic,
    responses={
        400: {
            "model": ErrorResponse,
            "description": "The prompt's tokens and max_tokens are over the model's context",
        },
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another body"},
        429: {
            "model": ErrorResponse,
            "description": "Over one of this key's limits, or its deadline cannot be met",
        },
        503: {"model": ErrorResponse, "description": "Queue full, or database unavailable"},
    },
)
async def submit_job(
    body: JobCreate,
    resources: ResourcesDep,
    services: JobServicesDep,
    caller: CallerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    cancel_after: CancelAfter = None,
) -> JobPublic:
    fingerprint = request_fingerprint(body) if idempotency_key else None
    deadline_at = deadline_at_of(deadline_s_of(body, cancel_after), datetime.now(UTC))
    if idempotency_key:
        # A retry of a request that got through is answered whatever the limits say now.
        existing = await _by_idempotency_key(resources, caller, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint, response)
    if (refused := await services.context.refusal(body, body.max_tokens)) is not None:
        field = next(
            name for name in ("prompt", "messages", "prompt_token_ids") if getattr(body, name)
        )
        raise BadRequestError(refused, [ErrorDetail(field=field, message=refused)])
    if body.webhook is not None and (
        hook_refused := await webhook_refusal(resources, caller, body.webhook.url)
    ):
        detail = ErrorDetail(field=hook_refused.param, message=hook_refused.message)
        raise BadRequestError(hook_refused.message, [detail])
    warning = None
    if deadline_at is not None:
        warning = await judge_deadline(services.waits, body, deadline_at)
    await admit(resources, caller, 1, input_tokens(body))
    values = new_job_row(
        body,
        resources.settings,
        caller,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        deadline_at=deadline_at,
        webhook=None if body.webhook is None else body.webhook.stored(),
    )
    # Committed, then enqueued, together with whatever other submits arrived meanwhile.
    row = await services.submitter.submit(values)
    if row is None:
        # Another request with this key was committed meanwhile.
        assert idempotency_key is not None
        existing = await _by_idempotency_key(resources, caller, idempotency_key)
        assert existing is not None
        return _replay(existing, fingerprint, response)
    response.headers["Location"] = f"/jobs/{row['id']}"
    public = job_public(row)
    public.warning = warning
    return public


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def read_job(
    job_id: str, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> JobPublic:
    row = await load_job(services, parse_job_id(job_id), caller.scope)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    text = None
    if row["status"] == JobStatus.QUEUED:
        return job_public(row, queue=await services.waits.wait_of(row))
    if row["status"] == JobStatus.RUNNING:
        try:
            text = await text_so_far(resources.redis, job_id, row["attempt"])
        except RedisError as exc:
            log.warning("job %s: text so far unavailable: %s", job_id, exc)
    return job_public(row, text)


@router.get("/jobs", response_model=JobsPublic)
async def read_jobs(
    resources: ResourcesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: JobStatus | None = None,
) -> JobsPublic:
    async with resources.db.connect() as conn:
        page = list_jobs(limit=limit, offset=offset, status=status, scope=caller.scope)
        data = [job_public(row) for row in (await conn.execute(page)).mappings()]
        count = (await conn.execute(count_jobs(status=status, scope=caller.scope))).scalar_one()
    return JobsPublic(data=data, count=count)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobPublic,
    responses={
        **NOT_FOUND,
        202: {"model": JobPublic, "description": "Running: the abort is under way"},
        409: {"model": ErrorResponse, "description": "The job already succeeded or failed"},
    },
)
async def cancel_job(
    job_id: str, resources: ResourcesDep, caller: CallerDep, response: Response
) -> JobPublic:
    """A queued job is cancelled at once (200); a running one is aborted by its worker within
    VQUEUE_CANCEL_POLL_S, keeping its partial text (202). Cancelling again changes nothing."""
    job_uuid = parse_job_id(job_id)
    outcome = await cancel_job_now(resources, job_uuid, caller.scope, f"job {job_id}")
    if outcome.row is not None:
        if outcome.aborting:
            response.status_code = 202
        return job_public(outcome.row)
    row = await first_row(resources.db, get_job(job_uuid, caller.scope))
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    if row["status"] != JobStatus.CANCELLED:
        raise ConflictError(f"the job already {row['status']}; it cannot be cancelled")
    return job_public(row)
