"""The body of a webhook event: Standard Webhooks' `{type, timestamp, data}` with OpenAI's
`id`, `object` and `created_at` beside them (a receiver written for either reads it), its
`data` the object the API's own GET shows for the job, response or batch when the event is
first sent."""

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from api.batches.views import batch_public, tally_jobs
from api.jobs.views import job_public
from api.openai.batch_views import batch_object
from api.responses.views import response_id, response_object
from db.batches import get_batch
from db.jobs import get_job
from db.responses import is_deleted


def message_id(delivery_id: uuid.UUID) -> str:
    """The delivery's `webhook-id`: the same on every try, so receivers can drop repeats."""
    return f"msg_{delivery_id.hex}"


async def event_body(conn: AsyncConnection, delivery: Mapping[str, Any]) -> str:
    """The event as JSON text, stored and then sent as is on every try."""
    when = delivery["due_at"]
    event = {
        "id": message_id(delivery["id"]),
        "object": "event",
        "type": delivery["type"],
        "created_at": int(when.timestamp()),
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "data": await _subject(conn, delivery),
    }
    return orjson.dumps(event).decode()


async def _subject(conn: AsyncConnection, delivery: Mapping[str, Any]) -> dict[str, Any]:
    if delivery["job_id"] is not None:
        job = (await conn.execute(get_job(delivery["job_id"]))).mappings().first()
        if job is None or is_deleted(job["response"]):
            return _gone(delivery["job_id"], delivery["type"])
        if job["response"] is not None:
            return response_object(job)
        return job_public(job).model_dump(mode="json")
    batch = (await conn.execute(get_batch(delivery["batch_id"], None))).mappings().first()
    if batch is None:
        return _gone(delivery["batch_id"], delivery["type"])
    tally = (await tally_jobs(conn, [batch["id"]]))[batch["id"]]
    if "openai" in (batch["metadata"] or {}):
        return batch_object(batch, tally)
    return batch_public(batch, tally).model_dump(mode="json")


def _gone(subject_id: uuid.UUID, event_type: str) -> dict[str, Any]:
    """What was deleted before its event went out: its id, and that it is gone."""
    kind = event_type.split(".")[0]
    shown = response_id(subject_id) if kind == "response" else str(subject_id)
    return {"id": shown, "object": kind, "deleted": True}
