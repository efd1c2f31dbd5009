"""OpenAI-compatible endpoints: chat and text completions, streamed or not, and the model list.

Each choice of a request (`n`, one by default) is an ordinary job (committed to Postgres,
queued, run by a worker, visible at GET /jobs/{id}); the response `id` is `chatcmpl-<job id>`
or `cmpl-<job id>` of the first, and the `X-Job-Id` header carries them all, comma-separated.
A client that disconnects stops following the jobs, not the jobs themselves. Errors use
OpenAI's error object (see api/openai/errors.py).
"""

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from api.core.auth import CallerDep
from api.core.callers import Caller
from api.core.resources import Resources, ResourcesDep
from api.core.sse import SSE_HEADERS
from api.jobs.follower import Final, FollowEvent, JobFollower, while_key_valid
from api.jobs.schemas import JobCreate, JobSummary
from api.jobs.services import JobServices, JobServicesDep
from api.jobs.stream_cursor import StreamCursor
from api.openai.bodies import json_body, served_models
from api.openai.choices import choice_jobs, merged, submit_choices
from api.openai.errors import OPENAI_ERRORS, OpenAIError, from_validation, invalid_request
from api.openai.requests import (
    CHAT_COMPLETIONS,
    COMPLETIONS,
    OpenAIFieldError,
    choice_count,
    echo_text,
    job_fields,
)
from api.openai.views import Reply, failure
from api.ops.live_workers import worker_descriptions
from db.states import JobStatus

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)


@router.get("/models")
async def list_models(resources: ResourcesDep) -> dict[str, Any]:
    """As vLLM's server lists them: each with its root (the model loaded) and context length,
    from the workers that serve it (the settings' model, if none is live yet)."""
    created = int(time.time())
    settings = resources.settings
    served: dict[str, dict[str, Any]] = {
        settings.model_name: {"root": settings.model, "max_model_len": settings.max_model_len}
    }
    for worker in await worker_descriptions(resources.redis):
        served[worker["model"]] = {
            "root": worker["root"],
            "max_model_len": worker["max_model_len"],
        }
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vqueue",
            **found,
            "parent": None,
            "permission": [_permission(created)],
        }
        for name, found in served.items()
    ]
    return {"object": "list", "data": data}


def _permission(created: int) -> dict[str, Any]:
    """vLLM's model permission object, which some clients read."""
    return {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": False,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def _validated(fields: dict[str, Any]) -> JobCreate:
    try:
        return JobCreate.model_validate(fields)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def _complete(
    request: Request,
    resources: Resources,
    services: JobServices,
    caller: Caller,
    endpoint: str,
) -> Any:
    settings = resources.settings
    body = await json_body(request, settings)
    try:
        models = set(await served_models(resources))
        fields = job_fields(
            endpoint, body, models, allow_stream=True, max_choices=settings.max_choices
        )
    except OpenAIFieldError as exc:
        raise OpenAIError(
            exc.status_code, str(exc), "invalid_request_error", exc.param, exc.code
        ) from None
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise invalid_request("stream: must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage", "continuous_usage_stats"}:
        raise invalid_request(
            "stream_options: only include_usage and continuous_usage_stats are supported",
            "stream_options",
        )
    job = _validated(fields)
    if (too_long := await services.context.refusal(job, job.max_tokens)) is not None:
        raise invalid_request(too_long, "messages" if endpoint == CHAT_COMPLETIONS else "prompt")
    jobs = choice_jobs(job, choice_count(body, settings.max_choices))
    rows = await submit_choices(resources, services, caller, jobs, body)
    echo = echo_text(endpoint, fields, body)
    if body.get("echo") is True and job.prompt_token_ids is not None:
        echo = await _decoded(services, job.prompt_token_ids)
    job_ids = [str(row["id"]) for row in rows]
    reply = Reply(endpoint, rows[0], body.get("model") or settings.model_name, echo, job_ids)
    # The whole reply carries the text, and so does a stream that waits for its tool calls:
    # their final rows are read back from Postgres.
    needs_text = not stream or (reply.tools is not None and reply.tools.waits_for_end)
    followers = [
        JobFollower(
            resources, services, row["id"], StreamCursor(row["attempt"], 0), needs_text=needs_text
        )
        for row in rows
    ]
    headers = {"X-Job-Id": ",".join(str(row["id"]) for row in rows)}
    streams = [follower.events(row) for follower, row in zip(followers, rows, strict=True)]
    if stream:
        streams = [while_key_valid(resources, caller, events) for events in streams]
    events = merged(streams)
    if stream:
        # The first event (text, an end, or a keep-alive within VQUEUE_SSE_KEEPALIVE_S) comes
        # before the status line: a request the worker refused (an over-long prompt) gets its
        # 400, as from vLLM's server, not a 200 stream that carries the error.
        first = await anext(events, None)
        final = first[1] if first is not None else None
        if isinstance(final, Final) and (refused := refusal(final.summary)) is not None:
            await events.aclose()
            raise refused
        chunks = reply.chunks(
            _after(first, events),
            len(rows),
            bool(options.get("include_usage")),
            bool(options.get("continuous_usage_stats")),
        )
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    finals: dict[int, Final] = {}
    async for index, event in events:
        if isinstance(event, Final):
            finals[index] = event
    if len(finals) < len(rows):
        raise OpenAIError(500, "the end of a job was not seen", "server_error")
    return JSONResponse(reply.whole_choices([finals[i] for i in range(len(rows))]), headers=headers)


async def _decoded(services: JobServices, token_ids: list[int]) -> str:
    """A prompt of token ids as text, for echo (as vLLM's server echoes it)."""
    tokenizer = services.context.tokenizer
    if not tokenizer.ready:
        raise OpenAIError(503, "the tokenizer is not loaded yet; try again shortly", "server_error")
    return await anyio.to_thread.run_sync(tokenizer.decode, token_ids)


def refusal(end: JobSummary) -> OpenAIError | None:
    """The client error a job that ended unsucceeded stands for, if it is one."""
    if end.status == JobStatus.SUCCEEDED:
        return None
    error = failure(end)
    return error if error.status_code < 500 else None


async def _after(
    first: tuple[int, FollowEvent] | None, rest: AsyncGenerator[tuple[int, FollowEvent], None]
) -> AsyncIterator[tuple[int, FollowEvent]]:
    try:
        if first is not None:
            yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # stops following every choice's job at once


@router.post("/chat/completions")
async def chat_completions(
    request: Request, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> Any:
    return await _complete(request, resources, services, caller, CHAT_COMPLETIONS)


@router.post("/completions")
async def completions(
    request: Request, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> Any:
    return await _complete(request, resources, services, caller, COMPLETIONS)
