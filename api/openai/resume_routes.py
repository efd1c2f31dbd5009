"""A completion taken up again: `GET /v1/chat/completions/{id}` and `GET /v1/completions/{id}`.

A /v1 completion is a job, so it outlives its connection. Without `stream` the route answers
as the original request would have, once the job ended (the openai SDK's
`chat.completions.retrieve` reads it). With `stream=true` it streams the completion; given
the `cursor` of the last chunk a client received, it sends only what came after: the text of
the same attempt from that offset on, so the pieces join up to the job's text. If the job
was run again since (its worker was lost), the text the client holds is gone: 409, and the
client starts over without a cursor. With `n` > 1 each choice is its own job: it is taken up
by its job's id (the `X-Job-Id` header lists them), as a completion of one choice.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from api.core.auth import CallerDep
from api.core.callers import Caller
from api.core.resources import Resources, ResourcesDep
from api.core.sse import SSE_HEADERS
from api.jobs.follower import Final, JobFollower, load_job, while_key_valid
from api.jobs.services import JobServices, JobServicesDep
from api.jobs.stream_cursor import StreamCursor, parse_event_id
from api.openai.choices import merged
from api.openai.errors import OPENAI_ERRORS, OpenAIError, invalid_request
from api.openai.requests import CHAT_COMPLETIONS, COMPLETIONS
from api.openai.views import Reply

router = APIRouter(prefix="/v1", tags=["openai"], responses=OPENAI_ERRORS)

Stream = Annotated[bool, Query(description="Stream the completion as chunks")]
Cursor = Annotated[
    str | None,
    Query(description="The `cursor` of the last chunk received: send only what came after"),
]
IncludeUsage = Annotated[bool, Query(description="End the stream with a usage chunk")]


def _job_id(completion_id: str, prefix: str) -> uuid.UUID:
    try:
        return uuid.UUID(completion_id.removeprefix(prefix))
    except ValueError:
        raise OpenAIError(404, f"no completion {completion_id!r}", param="completion_id") from None


async def _taken_up(
    endpoint: str,
    completion_id: str,
    resources: Resources,
    services: JobServices,
    caller: Caller,
    stream: bool,
    cursor: str | None,
    include_usage: bool,
) -> Any:
    chat = endpoint == CHAT_COMPLETIONS
    job_id = _job_id(completion_id, "chatcmpl-" if chat else "cmpl-")
    row = await load_job(services, job_id, caller.scope)
    if row is None or (row["messages"] is not None) != chat:
        raise OpenAIError(404, f"no completion {completion_id!r}", param="completion_id")
    attempt, position = row["attempt"], 0
    if cursor is not None:
        if not stream:
            raise invalid_request("cursor: only for a stream (stream=true)", "cursor")
        try:
            given, position = parse_event_id(cursor)
        except ValueError:
            raise invalid_request(
                "cursor: must be a chunk's cursor, <attempt>-<offset>", "cursor"
            ) from None
        attempt = row["attempt"] if given is None else given
        if attempt > row["attempt"]:
            raise invalid_request(f"cursor: the job has no attempt {attempt} yet", "cursor")
        if attempt < row["attempt"] and position > 0:
            raise OpenAIError(
                409,
                "the job ran again after this cursor: the text it began is gone; "
                "take the completion up again without a cursor",
                code="restarted",
                param="cursor",
            )
    reply = Reply(endpoint, row, row["model"] or resources.settings.model_name)
    needs_text = not stream or (reply.tools is not None and reply.tools.waits_for_end)
    follower = JobFollower(
        resources, services, job_id, StreamCursor(attempt, position), needs_text=needs_text
    )
    headers = {"X-Job-Id": str(job_id)}
    if stream:
        events = merged([while_key_valid(resources, caller, follower.events(row))])
        chunks = reply.chunks(events, 1, include_usage, resumed=position > 0)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    async for event in follower.events(row):
        if isinstance(event, Final):
            return JSONResponse(reply.whole_choices([event]), headers=headers)
    raise OpenAIError(500, "the end of the job was not seen", "server_error")


def _route(endpoint: str) -> None:
    async def taken_up(
        completion_id: str,
        resources: ResourcesDep,
        services: JobServicesDep,
        caller: CallerDep,
        stream: Stream = False,
        cursor: Cursor = None,
        include_usage: IncludeUsage = False,
    ) -> Any:
        return await _taken_up(
            endpoint, completion_id, resources, services, caller, stream, cursor, include_usage
        )

    what = "chat completion" if endpoint == CHAT_COMPLETIONS else "completion"
    router.get(
        f"{endpoint.removeprefix(router.prefix)}/{{completion_id}}",
        name=f"take up a {what}",
        description=f"A {what} made earlier, whole once it ended, or streamed from a cursor.",
    )(taken_up)


for _endpoint in (CHAT_COMPLETIONS, COMPLETIONS):
    _route(_endpoint)
