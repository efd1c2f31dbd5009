"""OpenAI's Files API: batch input files kept in Postgres, and each batch's output and error
files, streamed from its finished jobs when asked for (so partial while it runs)."""

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.core.auth import CallerDep
from api.core.resources import ResourcesDep
from api.openai.errors import OPENAI_ERRORS, OpenAIError, invalid_request
from api.openai.files import (
    OUTPUT,
    batch_output_line,
    file_object,
    openai_batch_row,
    parse_file_id,
    stored_file,
)
from api.openai.lists import list_page
from db.batches import batch_results
from db.files import delete_file, insert_file, list_files
from db.states import JobStatus

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)


@router.post("/files")
async def create_file(
    request: Request, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    """A batch input file (multipart: `file` and `purpose=batch`)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid_request("upload the file as multipart/form-data", "file")
    # api/core/body_limit.py bounds the body at the batch limit.
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
        stored = await conn.execute(insert_file(row))
        row["created_at"] = stored.scalar_one()
    return file_object(row)


@router.get("/files")
async def list_files_route(
    resources: ResourcesDep,
    caller: CallerDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    """The uploaded files, as OpenAI lists them (a batch's output and error files are named by
    the batch, not listed)."""
    after_uuid = None
    if after is not None:
        after_uuid, kind = parse_file_id(after)
        if kind is not None:
            raise invalid_request("after: must name an uploaded file", "after")
    query = list_files(
        caller.scope,
        limit=limit + 1,
        newest_first=order == "desc",
        after=after_uuid,
        purpose=purpose,
    )
    async with resources.db.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    data = [file_object(row) for row in rows[:limit]]
    return list_page(data, has_more=len(rows) > limit)


@router.delete("/files/{file_name}")
async def delete_file_route(
    file_name: str, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    """An uploaded file; batches made from it keep their jobs and results."""
    file_uuid, kind = parse_file_id(file_name)
    if kind is not None:
        raise invalid_request(
            "file_id: a batch's output and error files are made from its jobs; they go when "
            "the batch's jobs do",
            "file_id",
        )
    async with resources.db.begin() as conn:
        deleted = (await conn.execute(delete_file(file_uuid, caller.scope))).first()
    if deleted is None:
        raise OpenAIError(404, f"no file {file_name!r}", param="file_id")
    return {"id": file_name, "object": "file", "deleted": True}


@router.get("/files/{file_name}")
async def read_file(file_name: str, resources: ResourcesDep, caller: CallerDep) -> dict[str, Any]:
    file_uuid, kind = parse_file_id(file_name)
    if kind is None:
        return file_object(await stored_file(resources, caller, file_uuid, file_name))
    batch = await openai_batch_row(resources, caller, file_uuid, file_name)
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
        row = await stored_file(resources, caller, file_uuid, file_name)
        return Response(bytes(row["content"]), media_type="application/jsonl")
    batch = await openai_batch_row(resources, caller, file_uuid, file_name)
    openai = batch["metadata"]["openai"]
    wanted = (
        {JobStatus.SUCCEEDED}
        if kind == OUTPUT
        else {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
    )
    query = batch_results(batch["id"], by_completion=False, statuses=wanted)

    async def lines() -> AsyncIterator[bytes]:
        async with resources.db.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=1000))
            async for row in result.mappings():
                yield batch_output_line(row, openai["endpoint"], openai["model"])

    return StreamingResponse(lines(), media_type="application/jsonl")
