"""Submit, poll, list and cancel jobs."""

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Header, Query, Response
from redis.exceptions import RedisError

from api.auth import Caller, CallerDep
from api.deps import Resources, ResourcesDep, first_row
from api.errors import ConflictError, NotFoundError
from api.job_follower import load_job
from api.job_views import job_public
from api.limits import admit
from api.schemas import ErrorResponse, JobCreate, JobPublic, JobsPublic
from api.token_log import text_so_far
from db.jobs import (
    cancel_queued_job,
    count_jobs,
    get_job,
    get_job_by_idempotency_key,
    job_row,
    list_jobs,
    request_cancel_running_job,
)
from db.states import JobStatus
from vqueue.contract import EntryKind, LogEntry
from vqueue.settings import Settings

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No job with this id"}
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retries with the same key and body return the same job",
    ),
]


def parse_job_id(job_id: str) -> uuid.UUID:
    """Any id that is not one of ours is simply unknown: 404, whatever its shape."""
    try:
        # The id of an OpenAI-style response (chatcmpl-<id>, cmpl-<id>) names its job too.
        return uuid.UUID(job_id.removeprefix("chatcmpl-").removeprefix("cmpl-"))
    except ValueError:
        raise NotFoundError(f"no job {job_id!r}") from None


def request_fingerprint(body: JobCreate) -> str:
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def new_job_row(
    body: JobCreate,
    settings: Settings,
    caller: Caller,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A validated request as the values of a new queued job (POST /jobs and /v1)."""
    queue_timeout_s = body.queue_timeout_s or settings.queue_timeout_s
    return job_row(
        uuid.uuid4(),
        prompt=body.prompt,
        messages=body.messages_json(),
        params=body.sampling(),
        model=settings.model_name,
        priority=body.priority,
        timeout_s=body.timeout_s or settings.max_job_timeout_s,
        expires_at=datetime.now(UTC) + timedelta(seconds=queue_timeout_s),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        metadata=metadata,
        owner_id=caller.owner_id,
    )


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
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another body"},
        429: {"model": ErrorResponse, "description": "Over one of this key's limits"},
        503: {"model": ErrorResponse, "description": "Queue full, or database unavailable"},
    },
)
async def submit_job(
    body: JobCreate,
    resources: ResourcesDep,
    caller: CallerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    fingerprint = request_fingerprint(body) if idempotency_key else None
    if idempotency_key:
        # A retry of a request that got through is answered whatever the limits say now.
        existing = await _by_idempotency_key(resources, caller, idempotency_key)
        if existing is not None:
            return _replay(existing, fingerprint, response)
    await admit(resources, caller, 1)
    values = new_job_row(
        body,
        resources.settings,
        caller,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
    )
    # Committed, then enqueued, together with whatever other submits arrived meanwhile.
    row = await resources.submitter.submit(values)
    if row is None:
        # Another request with this key was committed meanwhile.
        assert idempotency_key is not None
        existing = await _by_idempotency_key(resources, caller, idempotency_key)
        assert existing is not None
        return _replay(existing, fingerprint, response)
    response.headers["Location"] = f"/jobs/{row['id']}"
    return job_public(row)


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def read_job(job_id: str, resources: ResourcesDep, caller: CallerDep) -> JobPublic:
    row = await load_job(resources, parse_job_id(job_id), caller.scope)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    text = None
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
    async with resources.db.begin() as conn:
        row = (await conn.execute(cancel_queued_job(job_uuid, caller.scope))).mappings().first()
        if row is None:
            running = await conn.execute(request_cancel_running_job(job_uuid, caller.scope))
            if (row := running.mappings().first()) is not None:
                response.status_code = 202
                return job_public(row)
            row = (await conn.execute(get_job(job_uuid, caller.scope))).mappings().first()
            if row is None:
                raise NotFoundError(f"no job {job_id!r}")
            if row["status"] != JobStatus.CANCELLED:
                raise ConflictError(f"the job already {row['status']}; it cannot be cancelled")
            return job_public(row)
    # Readers of a job that never ran learn here that it ended.
    end = LogEntry(job_id, row["attempt"], EntryKind.END, 0, status=JobStatus.CANCELLED)
    try:
        retention = resources.settings.stream_retention_s
        await anyio.to_thread.run_sync(resources.queue.publish_ends, [end], retention)
        await anyio.to_thread.run_sync(resources.queue.count_finished, JobStatus.CANCELLED, 1)
    except (RedisError, OSError) as exc:
        log.warning("job %s: cancel not announced to streams: %s", job_id, exc)
    return job_public(row)
