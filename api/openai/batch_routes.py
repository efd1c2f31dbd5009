"""OpenAI's Batch API, backed by vqueue's batches: a batch made from an uploaded input file is
read as OpenAI batch input and stored like `POST /batches` stores one (api/openai/file_routes.py
serves its files)."""

import io
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.batches.dry_run import dry_run
from api.batches.schemas import BatchOptions
from api.batches.service import FeederDep, cancel_batch_now
from api.batches.store import store_batch
from api.batches.upload import Upload
from api.batches.views import tally_jobs
from api.core.auth import CallerDep
from api.core.resources import Resources, ResourcesDep
from api.jobs.services import JobServicesDep
from api.openai.batch_dry_run import dry_run_batch, wants_dry_run
from api.openai.batch_views import batch_object
from api.openai.errors import OPENAI_ERRORS, from_validation, invalid_request
from api.openai.files import (
    openai_batch_row,
    parse_file_id,
    parse_openai_batch_id,
    stored_file,
)
from api.openai.lists import list_page
from api.openai.requests import ENDPOINTS
from api.webhooks.admission import webhook_refusal
from api.webhooks.schemas import BatchWebhook
from db.batches import list_openai_batches

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, max_length=16)
    # This service's own: where the batch's events go (api/webhooks/).
    webhook: BatchWebhook | None = None


@router.post("/batches")
async def create_openai_batch(
    request: Request,
    resources: ResourcesDep,
    services: JobServicesDep,
    feeder: FeederDep,
    caller: CallerDep,
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
    stored = await stored_file(resources, caller, file_uuid, body.input_file_id)
    content = bytes(stored["content"])
    upload = Upload(io.BytesIO(content), len(content), "", stored["filename"], None)
    if wants_dry_run(body.metadata):
        found = await dry_run(
            resources, services.context, upload, BatchOptions(format="openai"), body.endpoint
        )
        return dry_run_batch(
            found, body.endpoint, body.input_file_id, body.completion_window, body.metadata
        )
    webhook = None
    if body.webhook is not None:
        if refused := await webhook_refusal(resources, caller, body.webhook.url):
            raise invalid_request(refused.message, refused.param)
        webhook = body.webhook.stored(
            progress_interval_s=resources.settings.webhook_progress_interval_s
        )
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
        services.context,
        idempotency_key=None,
        request_hash=None,
        openai_endpoint=body.endpoint,
        metadata=metadata,
        webhook=webhook,
    )
    assert row is not None
    feeder.wake()
    return await _batch_object(resources, row)


async def _batch_object(resources: Resources, row: Mapping[str, Any]) -> dict[str, Any]:
    async with resources.db.connect() as conn:
        tally = (await tally_jobs(conn, [row["id"]]))[row["id"]]
    return batch_object(row, tally)


@router.get("/batches/{batch_name}")
async def read_openai_batch(
    batch_name: str, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    batch_uuid = parse_openai_batch_id(batch_name)
    row = await openai_batch_row(resources, caller, batch_uuid, batch_name)
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
    return list_page(data, has_more=len(rows) > limit)


@router.post("/batches/{batch_name}/cancel")
async def cancel_openai_batch(
    batch_name: str, resources: ResourcesDep, caller: CallerDep
) -> dict[str, Any]:
    batch_uuid = parse_openai_batch_id(batch_name)
    batch = await openai_batch_row(resources, caller, batch_uuid, batch_name)
    row = await cancel_batch_now(resources, batch)
    return await _batch_object(resources, row)
