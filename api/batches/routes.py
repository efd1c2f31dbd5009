"""Bulk uploads: create, watch, download results, page through jobs, cancel, list."""

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.batches.dry_run import BatchDryRun, dry_run
from api.batches.schemas import BatchesPublic, BatchOptions, BatchPublic
from api.batches.service import FeederDep, cancel_batch_now, load_batch, parse_batch_id
from api.batches.store import fingerprint, store_batch
from api.batches.upload import receive_upload
from api.batches.views import batch_public, tally_jobs
from api.core.auth import CallerDep
from api.core.callers import Caller
from api.core.error_schemas import ErrorDetail, ErrorResponse
from api.core.errors import BadRequestError, ConflictError, NotFoundError
from api.core.resources import Resources, ResourcesDep, first_row
from api.core.wire_json import line_safe_json
from api.jobs.schemas import JobsPublic
from api.jobs.service import IdempotencyKey
from api.jobs.services import JobServicesDep
from api.jobs.views import job_public, token_logprobs, usage_of
from api.webhooks.admission import webhook_refusal
from db.batches import (
    batch_jobs,
    batch_results,
    count_batches,
    get_batch_by_idempotency_key,
    list_batches,
)
from db.states import BatchStatus, JobStatus

router = APIRouter(tags=["batches"])
log = logging.getLogger(__name__)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No batch with this id"}
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The prompts file: a multipart form with the file in `file`, or the "
        "raw file as the body (JSONL, OpenAI batch JSONL, CSV with a `prompt` column, or "
        "plain text with one prompt per line).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/jsonl": {"schema": {"type": "string", "format": "binary"}},
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
RESULT_CHUNK_BYTES = 64 * 1024


async def _public(resources: Resources, row: Mapping[Any, Any]) -> BatchPublic:
    async with resources.db.connect() as conn:
        tallies = await tally_jobs(conn, [row["id"]])
    return batch_public(row, tallies[row["id"]])


async def _existing(resources: Resources, batch_id: str, caller: Caller) -> Mapping[Any, Any]:
    row = await load_batch(resources, parse_batch_id(batch_id), caller)
    if row is None:
        raise NotFoundError(f"no batch {batch_id!r}")
    return row


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchPublic,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"model": BatchDryRun, "description": "dry_run=true: what the batch would be"},
        400: {"model": ErrorResponse, "description": "Not a usable upload"},
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused with another file"},
        413: {"model": ErrorResponse, "description": "Over the size or prompt-count limit"},
        415: {"model": ErrorResponse, "description": "The format cannot be told"},
        422: {"model": ErrorResponse, "description": "Bad lines, named by line number"},
        429: {"model": ErrorResponse, "description": "Over one of this key's limits"},
        503: {"model": ErrorResponse, "description": "Queue full, or database unavailable"},
    },
)
async def create_batch(
    request: Request,
    resources: ResourcesDep,
    feeder: FeederDep,
    services: JobServicesDep,
    caller: CallerDep,
    options: Annotated[BatchOptions, Query()],
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BatchPublic | JSONResponse:
    """Store every prompt of the file as a job of one batch; its jobs go to the workers a
    window at a time (docs/api.md, *Batches*). With dry_run=true, store nothing and answer
    with the lines' checks, token counts and an estimate (200)."""
    options.sampling_defaults()  # a bad default is a 422 before the upload is read
    webhook = options.webhook(resources.settings.webhook_progress_interval_s)
    if (
        webhook is not None
        and not options.dry_run
        and (refused := await webhook_refusal(resources, caller, webhook["url"]))
    ):
        # Its webhook is named by query parameters here.
        detail = ErrorDetail(field="webhook_url", message=refused.message)
        raise BadRequestError(refused.message, [detail])
    upload = await receive_upload(request, resources.settings.max_batch_bytes)
    if options.dry_run:
        try:
            found = await dry_run(resources, services.context, upload, options)
        finally:
            upload.close()
        return JSONResponse(found.model_dump(mode="json"))
    try:
        request_hash = fingerprint(upload, options) if idempotency_key else None
        if idempotency_key:
            existing = await _by_idempotency_key(resources, caller, idempotency_key)
            if existing is not None:
                return await _replay(resources, existing, request_hash, response)
        row = await store_batch(
            resources,
            caller,
            upload,
            options,
            services.context,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            webhook=webhook,
        )
    finally:
        upload.close()
    if row is None:
        assert idempotency_key is not None
        existing = await _by_idempotency_key(resources, caller, idempotency_key)
        assert existing is not None
        return await _replay(resources, existing, request_hash, response)
    feeder.wake()
    response.headers["Location"] = f"/batches/{row['id']}"
    return batch_public(row, {JobStatus.QUEUED: row["total"]})


async def _by_idempotency_key(
    resources: Resources, caller: Caller, key: str
) -> Mapping[Any, Any] | None:
    return await first_row(resources.db, get_batch_by_idempotency_key(caller.owner_id, key))


async def _replay(
    resources: Resources, row: Mapping[Any, Any], request_hash: str | None, response: Response
) -> BatchPublic:
    if row["request_hash"] != request_hash:
        raise ConflictError("this Idempotency-Key was already used with a different upload")
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/batches/{row['id']}"
    return await _public(resources, row)


@router.get("/batches/{batch_id}", response_model=BatchPublic, responses=NOT_FOUND)
async def read_batch(batch_id: str, resources: ResourcesDep, caller: CallerDep) -> BatchPublic:
    return await _public(resources, await _existing(resources, batch_id, caller))


@router.get("/batches", response_model=BatchesPublic)
async def read_batches(
    resources: ResourcesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: BatchStatus | None = None,
) -> BatchesPublic:
    """Newest first."""
    async with resources.db.connect() as conn:
        query = list_batches(limit=limit, offset=offset, status=status, scope=caller.scope)
        rows = (await conn.execute(query)).mappings().all()
        tallies = await tally_jobs(conn, [row["id"] for row in rows])
        count_query = count_batches(status=status, scope=caller.scope)
        count = (await conn.execute(count_query)).scalar_one()
    return BatchesPublic(data=[batch_public(row, tallies[row["id"]]) for row in rows], count=count)


def _result_line(row: Mapping[Any, Any]) -> bytes:
    return line_safe_json(
        {
            "custom_id": row["custom_id"],
            "line": row["batch_line"],
            "job_id": row["id"],
            "status": row["status"],
            "text": row["text"],
            "finish_reason": row["finish_reason"],
            "usage": usage_of(row).model_dump(),
            "error": row["error"],
            "metadata": row["metadata"],
            "logprobs": token_logprobs(row["logprobs"]),
        },
        newline=True,
    )


@router.get(
    "/batches/{batch_id}/results",
    responses={
        **NOT_FOUND,
        200: {"content": {"application/jsonl": {}}, "description": "One line per finished job"},
    },
    response_class=StreamingResponse,
)
async def read_batch_results(
    batch_id: str,
    resources: ResourcesDep,
    caller: CallerDep,
    order: Annotated[str, Query(pattern="^(input|completion)$")] = "input",
) -> StreamingResponse:
    """JSONL, one line per finished job (succeeded, failed or cancelled), in input order or
    in the order they finished. While the batch runs, only the finished lines are there."""
    row = await _existing(resources, batch_id, caller)
    query = batch_results(row["id"], by_completion=order == "completion")

    async def lines() -> AsyncIterator[bytes]:
        buffer = bytearray()
        # A server-side cursor: 50,000 results are never all in memory at once.
        async with resources.db.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=1000))
            async for result_row in result.mappings():
                buffer += _result_line(result_row)
                if len(buffer) >= RESULT_CHUNK_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
        if buffer:
            yield bytes(buffer)

    filename = f"batch-{row['id']}-results.jsonl"
    return StreamingResponse(
        lines(),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/batches/{batch_id}/jobs", response_model=JobsPublic, responses=NOT_FOUND)
async def read_batch_jobs(
    batch_id: str,
    resources: ResourcesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: JobStatus | None = None,
) -> JobsPublic:
    """The batch's jobs in input order."""
    row = await _existing(resources, batch_id, caller)
    async with resources.db.connect() as conn:
        query = batch_jobs(row["id"], limit=limit, offset=offset, status=status)
        data = [job_public(job) for job in (await conn.execute(query)).mappings()]
        tally = (await tally_jobs(conn, [row["id"]]))[row["id"]]
    states = [status] if status is not None else list(JobStatus)
    count = sum(tally.get(state, 0) for state in states)
    return JobsPublic(data=data, count=count)


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchPublic,
    responses={
        **NOT_FOUND,
        202: {"model": BatchPublic, "description": "Running jobs are being aborted"},
        409: {"model": ErrorResponse, "description": "The batch already ended"},
    },
)
async def cancel_batch(
    batch_id: str, resources: ResourcesDep, caller: CallerDep, response: Response
) -> BatchPublic:
    """Queued jobs are cancelled at once, running ones aborted by their workers (keeping their
    partial text); the results so far stay downloadable. 200 once nothing runs, else 202."""
    row = await cancel_batch_now(resources, await _existing(resources, batch_id, caller))
    public = await _public(resources, row)
    if public.status == BatchStatus.CANCELLING:
        response.status_code = 202
    return public
