"""Submit, poll and list jobs."""

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from redis.exceptions import RedisError

from api.deps import ResourcesDep
from api.errors import NotFoundError, ServiceUnavailableError
from api.job_views import job_public
from api.schemas import ErrorResponse, JobCreate, JobPublic, JobsPublic
from api.token_log import text_so_far
from db.jobs import count_jobs, fail_queued_job, get_job, insert_job, list_jobs
from db.schema import jobs
from db.states import JobStatus

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No job with this id"}
}


def parse_job_id(job_id: str) -> uuid.UUID:
    """Any id that is not one of ours is simply unknown: 404, whatever its shape."""
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFoundError(f"no job {job_id!r}") from None


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobPublic,
    responses={503: {"model": ErrorResponse, "description": "Queue unavailable"}},
)
async def submit_job(body: JobCreate, resources: ResourcesDep, response: Response) -> JobPublic:
    job_id = uuid.uuid4()
    messages = None if body.messages is None else [m.model_dump(mode="json") for m in body.messages]
    statement = insert_job(
        job_id,
        prompt=body.prompt,
        messages=messages,
        params=body.sampling(),
        model=resources.settings.model_name,
    ).returning(jobs)
    # Commit first, enqueue after: a worker never sees an id whose row is not there yet.
    async with resources.db.begin() as conn:
        row = (await conn.execute(statement)).mappings().one()
    try:
        await resources.enqueuer.enqueue(str(job_id))
    except Exception as exc:
        log.error("job %s: enqueue failed: %s", job_id, exc)
        async with resources.db.begin() as conn:
            await conn.execute(fail_queued_job(job_id, "the queue was unavailable at submit"))
        raise ServiceUnavailableError("the job queue is unavailable; try again shortly") from exc
    response.headers["Location"] = f"/jobs/{job_id}"
    return job_public(row)


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def read_job(job_id: str, resources: ResourcesDep) -> JobPublic:
    async with resources.db.connect() as conn:
        row = (await conn.execute(get_job(parse_job_id(job_id)))).mappings().first()
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
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: JobStatus | None = None,
) -> JobsPublic:
    async with resources.db.connect() as conn:
        rows = (await conn.execute(list_jobs(limit=limit, offset=offset, status=status))).mappings()
        data = [job_public(row) for row in rows]
        count = (await conn.execute(count_jobs(status=status))).scalar_one()
    return JobsPublic(data=data, count=count)
