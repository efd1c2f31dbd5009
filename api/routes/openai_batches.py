"""OpenAI's Files and Batch APIs, backed by vqueue's batches.

An uploaded file (purpose `batch`) is kept in Postgres; creating a batch from it reads it as
OpenAI batch input and stores it like `POST /batches` does. The output and error files are
not stored: their content is streamed from the batch's finished jobs when asked for, so they
are available (partially) while the batch runs.
"""

import io
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import insert, select

from api.auth import Caller, CallerDep
from api.batch_schemas import BatchOptions
from api.batch_store import store_batch
from api.batch_upload import Upload
from api.batch_views import tally_jobs
from api.deps import Resources, ResourcesDep, first_row
from api.openai_errors import OPENAI_ERRORS, OpenAIError, from_validation, invalid_request
from api.openai_requests import ENDPOINTS
from api.openai_views import batch_output_line
from api.routes.batches import cancel_batch_now, load_batch
from db.batches import batch_results, list_openai_batches
from db.schema import files, jobs, owned_by
from db.states import BatchStatus, JobStatus

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)

OUTPUT, ERRORS = "output", "errors"


def file_id(file_uuid: uuid.UUID, kind: str | None = None) -> str:
    return f"file-{file_uuid.hex}" + (f"-{kind}" if kind else "")


def parse_file_id(value: str) -> tuple[uuid.UUID, str | None]:
    """(uuid, None) for an uploaded file; (batch uuid, "output"/"errors") for a batch's."""
    rest = value.removeprefix("file-")
    hex_part, _, kind = rest.partition("-")
    try:
        if rest == value or kind not in ("", OUTPUT, ERRORS):
            raise ValueError
        return uuid.UUID(hex=hex_part), kind or None
    except ValueError:
        raise OpenAIError(404, f"no file {value!r}", param="file_id") from None


def parse_openai_batch_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=value.removeprefix("batch_"))
    except ValueError:
        raise OpenAIError(404, f"no batch {value!r}", param="batch_id") from None


@router.post("/files")
async def create_file(
    request: Request, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    """A batch input file (multipart: `file` and `purpose=batch`)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid_request("upload the file as multipart/form-data", "file")
    # api/body_limit.py bounds the body at the batch limit.
    form = await request.form(max_files=1, max_fields=4)
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch":
            raise invalid_request("purpose: only 'batch' files are accepted here", "purpose")
        if upload is None or isinstance(upload, str):
            raise invalid_request("file: a file is required", "file")
        content = await upload.read()
        if not content:
            raise invalid_request("file: the file is empty", "file")
        row = {
            "id": uuid.uuid4(),
            "purpose": "batch",
            "filename": upload.filename or "upload.jsonl",
            "bytes": len(content),
            "content": content,
            "owner_id": caller.owner_id,
        }
    finally:
        await form.close()
    async with resources.db.begin() as conn:
        stored = await conn.execute(insert(files).returning(files.c.created_at), row)
        row["created_at"] = stored.scalar_one()
    return _file_object(row)


def _file_object(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id(row["id"]),
        "object": "file",
        "bytes": row["bytes"],
        "created_at": int(row["created_at"].timestamp()),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
    }


async def _stored_file(
    resources: Resources, caller: Caller, file_uuid: uuid.UUID, name: str
) -> Any:
    query = select(files).where(files.c.id == file_uuid, owned_by(files.c.owner_id, caller.scope))
    row = await first_row(resources.db, query)
    if row is None:
        raise OpenAIError(404, f"no file {name!r}", param="file_id")
    return row


async def _openai_batch_row(
    resources: Resources, caller: Caller, batch_uuid: uuid.UUID, name: str
) -> Any:
    row = await load_batch(resources, batch_uuid, caller)
    if row is None or not (row["metadata"] or {}).get("openai"):
        raise OpenAIError(404, f"no batch {name!r}", param="batch_id")
    return row


@router.get("/files/{file_name}")
async def read_file(file_name: str, resources: ResourcesDep, caller: CallerDep) -> dict[str, Any]:
    file_uuid, kind = parse_file_id(file_name)
    if kind is None:
        return _file_object(await _stored_file(resources, caller, file_uuid, file_name))
    batch = await _openai_batch_row(resources, caller, file_uuid, file_name)
    return {
        "id": file_name,
        "object": "file",
        "bytes": None,  # generated from the jobs when read
        "created_at": int(batch["created_at"].timestamp()),
        "filename": f"batch_{file_uuid.hex}_{kind}.jsonl",
        "purpose": "batch_output",
        "status": "processed",
    }


@router.get("/files/{file_name}/content", response_model=None)
async def read_file_content(file_name: str, resources: ResourcesDep, caller: CallerDep) -> Response:
    file_uuid, kind = parse_file_id(file_name)
    if kind is None:
        row = await _stored_file(resources, caller, file_uuid, file_name)
        return Response(bytes(row["content"]), media_type="application/jsonl")
    batch = await _openai_batch_row(resources, caller, file_uuid, file_name)
    openai = batch["metadata"]["openai"]
    wanted = {JobStatus.SUCCEEDED} if kind == OUTPUT else {JobStatus.FAILED, JobStatus.CANCELLED}
    query = batch_results(batch["id"], by_completion=False).where(jobs.c.status.in_(wanted))

    async def lines() -> AsyncIterator[bytes]:
        async with resources.db.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=1000))
            async for row in result.mappings():
                yield batch_output_line(row, openai["endpoint"], openai["model"])

    return StreamingResponse(lines(), media_type="application/jsonl")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, max_length=16)


@router.post("/batches")
async def create_openai_batch(
    request: Request, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    try:
        body = BatchCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise from_validation(exc) from None
    if body.endpoint not in ENDPOINTS:
        raise invalid_request(f"endpoint: must be one of {', '.join(ENDPOINTS)}", "endpoint")
    file_uuid, kind = parse_file_id(body.input_file_id)
    if kind is not None:
        raise invalid_request(
            "input_file_id: a batch's output cannot be its input", "input_file_id"
        )
    stored = await _stored_file(resources, caller, file_uuid, body.input_file_id)
    content = bytes(stored["content"])
    upload = Upload(io.BytesIO(content), len(content), "", stored["filename"], None)
    metadata = {
        "openai": {
            "input_file_id": body.input_file_id,
            "endpoint": body.endpoint,
            "completion_window": body.completion_window,
            "metadata": body.metadata,
            "model": resources.settings.model_name,
        }
    }
    row = await store_batch(
        resources,
        caller,
        upload,
        BatchOptions(format="openai"),
        idempotency_key=None,
        request_hash=None,
        openai_endpoint=body.endpoint,
        metadata=metadata,
    )
    assert row is not None
    resources.feeder.wake()
    return await _batch_object(resources, row)


async def _batch_object(resources: Resources, row: Mapping[str, Any]) -> dict[str, Any]:
    async with resources.db.connect() as conn:
        tally = (await tally_jobs(conn, [row["id"]]))[row["id"]]
    openai = row["metadata"]["openai"]
    status = BatchStatus(row["status"])
    failed = tally.get(JobStatus.FAILED, 0) + tally.get(JobStatus.CANCELLED, 0)

    def at(value: Any) -> int | None:
        return None if value is None else int(value.timestamp())

    finished = row["finished_at"]
    return {
        "id": f"batch_{row['id'].hex}",
        "object": "batch",
        "endpoint": openai["endpoint"],
        "errors": None,
        "input_file_id": openai["input_file_id"],
        "completion_window": openai["completion_window"],
        "status": status.value,
        "output_file_id": file_id(row["id"], OUTPUT),
        "error_file_id": file_id(row["id"], ERRORS) if failed else None,
        "created_at": at(row["created_at"]),
        "in_progress_at": at(row["started_at"]),
        "expires_at": at(row["created_at"] + timedelta(hours=24)),
        "finalizing_at": None,
        "completed_at": at(finished) if status == BatchStatus.COMPLETED else None,
        "failed_at": at(finished) if status == BatchStatus.FAILED else None,
        "expired_at": None,
        "cancelling_at": at(row["cancel_requested_at"]),
        "cancelled_at": at(finished) if status == BatchStatus.CANCELLED else None,
        "request_counts": {
            "total": row["total"],
            "completed": tally.get(JobStatus.SUCCEEDED, 0),
            "failed": failed,
        },
        "metadata": openai["metadata"],
    }


@router.get("/batches/{batch_name}")
async def read_openai_batch(
    batch_name: str, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    batch_uuid = parse_openai_batch_id(batch_name)
    row = await _openai_batch_row(resources, caller, batch_uuid, batch_name)
    return await _batch_object(resources, row)


@router.get("/batches")
async def list_openai_batches_route(
    resources: ResourcesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    after_uuid = parse_openai_batch_id(after) if after else None
    async with resources.db.connect() as conn:
        query = list_openai_batches(limit=limit + 1, after=after_uuid, scope=caller.scope)
        rows = (await conn.execute(query)).mappings().all()
    data = [await _batch_object(resources, row) for row in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


@router.post("/batches/{batch_name}/cancel")
async def cancel_openai_batch(
    batch_name: str, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    batch_uuid = parse_openai_batch_id(batch_name)
    batch = await _openai_batch_row(resources, caller, batch_uuid, batch_name)
    row = await cancel_batch_now(resources, batch)
    return await _batch_object(resources, row)
