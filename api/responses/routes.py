"""OpenAI's Responses API, durable: `POST /v1/responses`, and `GET`, `DELETE` and `cancel` on
a response.

Every response is a job (committed to Postgres, run by a worker, visible at GET /jobs/{id}),
so a `background` response outlives the API process that took it, its stream is taken up
from any API process with `starting_after`, and it is kept as long as the job is. A response
stored with `store: false` is not shown again once made. Errors use OpenAI's error object.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from redis.exceptions import RedisError

from api.core.auth import CallerDep
from api.core.callers import Caller
from api.core.limits import admit, input_tokens
from api.core.resources import Resources, ResourcesDep
from api.core.sse import SSE_HEADERS
from api.jobs.cancel import cancel_job
from api.jobs.follower import Final, FollowEvent, JobFollower, load_job, while_key_valid
from api.jobs.schemas import JobCreate
from api.jobs.service import new_job_row
from api.jobs.services import JobServices, JobServicesDep
from api.jobs.stream_cursor import StreamCursor
from api.jobs.token_log import text_so_far
from api.openai.bodies import json_body, served_models
from api.openai.errors import OPENAI_ERRORS, OpenAIError, from_validation, invalid_request
from api.openai.requests import CHAT_COMPLETIONS, OpenAIFieldError, job_fields
from api.responses.events import ResponseStream, StaleResume, continues, resume_point
from api.responses.history import earlier_turns
from api.responses.input_items import input_items, items_page
from api.responses.requests import read_request
from api.responses.views import job_id_of, response_id, response_object
from api.webhooks.admission import webhook_refusal
from db.responses import delete_response, is_deleted
from db.states import JobStatus
from db.webhooks import forget_payloads

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)
log = logging.getLogger(__name__)

# The chat request's names for what the Responses API calls otherwise.
_PARAMS = {"max_tokens": "max_output_tokens", "response_format": "text.format"}
# How long a cancel waits for a running response to stop, to answer with its final state.
CANCEL_WAIT_S = 10.0


def _param(name: str) -> str:
    if name.startswith("messages"):
        return "input"
    return _PARAMS.get(name, name)


async def visible_response(
    services: JobServices, caller: Caller, value: str, param: str = "response_id"
) -> Mapping[str, Any]:
    """The job of a response this caller may see, stored and not deleted; else 404."""
    row = await load_job(services, job_id_of(value, param), caller.scope)
    echoed = None if row is None else row["response"]
    if row is None or not echoed or is_deleted(echoed) or not echoed.get("store", True):
        raise OpenAIError(404, f"no response {value!r}", param=param)
    return row


def _job(fields: dict[str, Any]) -> JobCreate:
    try:
        return JobCreate.model_validate(fields)
    except ValidationError as exc:
        error = from_validation(exc)
        error.param = _param(error.param or "") or None
        raise error from None


@router.post("/responses")
async def create_response(
    request: Request, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> Any:
    settings = resources.settings
    body = await json_body(request, settings)
    try:
        asked = read_request(body)
        history: list[dict[str, Any]] = []
        if asked.previous_response_id is not None:
            previous = await visible_response(
                services, caller, asked.previous_response_id, "previous_response_id"
            )
            history = earlier_turns(previous)
        chat = {**asked.chat, "messages": [*asked.instructions, *history, *asked.messages]}
        fields = job_fields(CHAT_COMPLETIONS, chat, set(await served_models(resources)))
    except OpenAIFieldError as exc:
        param = _param(exc.param)
        raise OpenAIError(
            exc.status_code, f"{param}: {exc.message}", "invalid_request_error", param, exc.code
        ) from None
    job = _job(fields)
    if (too_long := await services.context.refusal(job, job.max_tokens)) is not None:
        raise invalid_request(too_long.replace("max_tokens", "max_output_tokens"), "input")
    echoed = asked.echoed | {
        "background": asked.background,
        "store": asked.store,
        "previous_response_id": asked.previous_response_id,
        # The system message this response's instructions made, which a later turn leaves out.
        "instructions_message": bool(asked.instructions),
        # The turns of its own input: the last ones of the job's messages.
        "input_count": len(asked.messages),
    }
    if asked.webhook is not None and (
        refused := await webhook_refusal(resources, caller, asked.webhook["url"])
    ):
        raise invalid_request(refused.message, refused.param)
    await admit(resources, caller, 1, input_tokens(job))
    metadata = echoed["metadata"] or None
    values = new_job_row(
        job, settings, caller, metadata=metadata, response=echoed, webhook=asked.webhook
    )
    row = await services.submitter.submit(values)
    assert row is not None  # no idempotency key: no conflict
    headers = {"X-Job-Id": str(row["id"])}
    if asked.stream:
        return _streamed(resources, services, caller, row, None, headers)
    if asked.background:
        return response_object(row)
    final = await _final(resources, services, row)
    return response_object(row, summary=final.summary, text=final.text, tool_calls=final.tool_calls)


def _streamed(
    resources: Resources,
    services: JobServices,
    caller: Caller,
    row: Mapping[str, Any],
    starting_after: int | None,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    stream = ResponseStream(row, starting_after)
    cursor = StreamCursor(stream.attempt or row["attempt"], stream.sent)
    follower = JobFollower(resources, services, row["id"], cursor, needs_text=True)
    events: AsyncIterator[FollowEvent] = while_key_valid(resources, caller, follower.events(row))
    return StreamingResponse(
        stream.frames(events),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **(headers or {})},
    )


async def _final(resources: Resources, services: JobServices, row: Mapping[str, Any]) -> Final:
    """The job's end, followed to it (a client that leaves stops following, not the job)."""
    follower = JobFollower(
        resources, services, row["id"], StreamCursor(row["attempt"], 0), needs_text=True
    )
    events = follower.events(row)
    try:
        async for event in events:
            if isinstance(event, Final):
                return event
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    raise OpenAIError(500, "the end of the response was not seen", "server_error")


StartingAfter = Annotated[
    int | None,
    Query(ge=0, description="The sequence number of the last event received: send those after"),
]


@router.get("/responses/{response_name}")
async def retrieve_response(
    response_name: str,
    resources: ResourcesDep,
    services: JobServicesDep,
    caller: CallerDep,
    stream: Annotated[bool, Query(description="Stream the response's events")] = False,
    starting_after: StartingAfter = None,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
    include_obfuscation: bool | None = None,
) -> Any:
    """As it stands now; with `stream=true` its events, from the start or after
    `starting_after` (the last event's `sequence_number`), to its end."""
    row = await visible_response(services, caller, response_name)
    if not stream:
        if starting_after is not None:
            raise invalid_request(
                "starting_after: only for a stream (stream=true)", "starting_after"
            )
        text = None
        if row["status"] == JobStatus.RUNNING:
            try:
                text = await text_so_far(resources.redis, str(row["id"]), row["attempt"])
            except RedisError as exc:
                log.warning("response %s: text so far unavailable: %s", response_name, exc)
        return response_object(row, text=text)
    try:
        resume_point(starting_after, row["attempt"], continues(row))
    except StaleResume:
        raise OpenAIError(
            409,
            "the response ran again after that event (its worker was lost): the text it began "
            "is gone; read it again without starting_after",
            "invalid_request_error",
            "starting_after",
        ) from None
    except ValueError:
        raise invalid_request(
            "starting_after: no event of this response has that number", "starting_after"
        ) from None
    return _streamed(resources, services, caller, row, starting_after)


@router.get("/responses/{response_name}/input_items")
async def list_input_items(
    response_name: str,
    services: JobServicesDep,
    caller: CallerDep,
    after: Annotated[str | None, Query(description="The id of the item to list after")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    """The items of this response's own input (not an earlier response's), newest first."""
    row = await visible_response(services, caller, response_name)
    return items_page(input_items(row), after=after, limit=limit, order=order)


@router.post("/responses/{response_name}/cancel")
async def cancel_response(
    response_name: str, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> Any:
    """A queued or running background response is cancelled (a running one keeps the text it
    made); the answer is its state once it stopped, or after a few seconds."""
    row = await visible_response(services, caller, response_name)
    if not row["response"].get("background"):
        raise invalid_request("only a background response can be cancelled", "response_id")
    if row["status"] == JobStatus.CANCELLED:
        return response_object(row)
    if JobStatus(row["status"]).is_terminal:
        raise invalid_request(
            f"the response is already {response_object(row)['status']}; it cannot be cancelled",
            "response_id",
        )
    outcome = await cancel_job(resources, row["id"], None, response_name)
    if outcome.row is not None and not outcome.aborting:
        return response_object(outcome.row)
    try:
        final = await asyncio.wait_for(_final(resources, services, row), CANCEL_WAIT_S)
    except TimeoutError:
        return response_object(await _reloaded(services, row))
    return response_object(row, summary=final.summary, text=final.text, tool_calls=final.tool_calls)


async def _reloaded(services: JobServices, row: Mapping[str, Any]) -> Mapping[str, Any]:
    return await load_job(services, row["id"], None) or row


@router.delete("/responses/{response_name}")
async def delete(
    response_name: str, resources: ResourcesDep, services: JobServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """An ended response's input and output are deleted (its token counts stay, as the record
    of what was spent). One still queued or running is refused (409): cancel it first."""
    row = await visible_response(services, caller, response_name)
    if not JobStatus(row["status"]).is_terminal:
        raise OpenAIError(
            409,
            "the response is still queued or in progress: cancel it first",
            "invalid_request_error",
            "response_id",
        )
    async with resources.db.begin() as conn:
        deleted = (await conn.execute(delete_response(row["id"], caller.scope))).first()
        if deleted is not None:
            # Its webhook events held the text too (GET /webhooks/deliveries shows them).
            await conn.execute(forget_payloads(row["id"]))
    if deleted is None:
        raise OpenAIError(404, f"no response {response_name!r}", param="response_id")
    return {"id": response_id(row["id"]), "object": "response", "deleted": True}
