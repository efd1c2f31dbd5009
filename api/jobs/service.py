"""What the job routes share with the other features: a job id, an Idempotency-Key, a new
job's row."""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Header

from api.core.callers import Caller
from api.core.error_schemas import ErrorResponse
from api.core.errors import NotFoundError
from api.jobs.schemas import JobCreate
from db.jobs import job_row
from vqueue.settings import Settings

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
    deadline_at: datetime | None = None,
    response: dict[str, Any] | None = None,
    webhook: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A validated request as the values of a new queued job (POST /jobs and /v1)."""
    queue_timeout_s = body.queue_timeout_s or settings.queue_timeout_s
    return job_row(
        uuid.uuid4(),
        prompt=body.prompt,
        messages=body.messages_json(),
        prompt_token_ids=body.prompt_token_ids,
        tools=body.tools_json(),
        params=body.sampling(),
        model=settings.model_name,
        priority=body.priority,
        timeout_s=body.timeout_s or settings.max_job_timeout_s,
        expires_at=datetime.now(UTC) + timedelta(seconds=queue_timeout_s),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        metadata=metadata,
        owner_id=caller.owner_id,
        deadline_at=deadline_at,
        response=response,
        webhook=webhook,
    )
