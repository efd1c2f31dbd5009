"""GET /jobs/{id}/stream: a job's tokens over Server-Sent Events, replayable and resumable.

The SSE `id` of each delta is `<attempt>-<offset>`: the attempt that produced the text and
the character offset after it. A client sends it back as Last-Event-ID on reconnect and
resumes exactly there; if the job has started a newer attempt meanwhile, it gets a `restart`
event and that attempt's text from its start, never the rest of another attempt's text
(api/jobs/follower.py does the following). Disconnecting only stops the stream, never the job.
"""

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api.core.auth import CallerDep
from api.core.errors import BadRequestError, NotFoundError, log_with_reference
from api.core.resources import ResourcesDep
from api.core.sse import SSE_HEADERS
from api.core.wire_json import line_safe_json
from api.jobs.follower import Final, Idle, JobFollower, Revoked, load_job, while_key_valid
from api.jobs.schemas import JobSummary
from api.jobs.service import NOT_FOUND, parse_job_id
from api.jobs.services import JobServices, JobServicesDep
from api.jobs.stream_cursor import EVENT_ID, Delta, StreamCursor, event_id, parse_event_id
from api.jobs.views import token_logprobs
from db.states import JobStatus

router = APIRouter(tags=["jobs"])

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Events `queued` while the job waits (its place in the queue and "
        "estimated start and finish, as GET /jobs/{id}'s `queue`: a second after the stream "
        "opens if the job has not started, then at each keep-alive), `delta` (id: "
        "`<attempt>-<offset>`, the attempt and the character offset after the delta), "
        "`restart` when a new attempt begins (its text follows from the start), `error` or "
        "`cancelled` when the job did not succeed, and a final `done` carrying the job's "
        "state; comments keep the connection alive.",
    },
    **NOT_FOUND,
}
FINAL_EVENT = {
    JobStatus.FAILED: "error",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.EXPIRED: "expired",
}
QUEUED_NOTICE_S = 1.0


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
    return head + b"event: " + event.encode() + b"\ndata: " + line_safe_json(data) + b"\n\n"


def delta_frame(delta: Delta) -> bytes:
    # `t`: when the worker produced it; unknown (absent) for text replayed from Postgres.
    data: dict[str, Any] = {"text": delta.text}
    if delta.at:
        data["t"] = delta.at
    if delta.logprobs:
        data["logprobs"] = token_logprobs(delta.logprobs)
    return sse("delta", data, delta.event_id)


async def queued_frame(services: JobServices, row: Mapping[str, Any] | None) -> bytes | None:
    """The job's place and estimates while it waits with a message; None otherwise."""
    wait = None if row is None else await services.waits.wait_of(row)
    return None if wait is None else sse("queued", wait.model_dump(mode="json"))


def restart_frame(attempt: int) -> bytes:
    # Its id resumes at the new attempt's start, should the connection drop right after.
    return sse("restart", {"attempt": attempt}, event_id(attempt, 0))


def final_frames(summary: JobSummary) -> list[bytes]:
    public = summary.model_dump(mode="json")
    frames = []
    if summary.status in FINAL_EVENT:
        frames.append(sse(FINAL_EVENT[summary.status], {"message": summary.error, "job": public}))
    frames.append(sse("done", public))
    return frames


@router.get("/jobs/{job_id}/stream", response_class=StreamingResponse, responses=STREAM_DOC)
async def stream_job(
    job_id: str,
    resources: ResourcesDep,
    services: JobServicesDep,
    caller: CallerDep,
    last_event_id: Annotated[
        str | None,
        Header(pattern=f"^{EVENT_ID.pattern}$", description="The id of the last event received"),
    ] = None,
    offset: Annotated[
        int | None,
        Query(ge=0, description="Resume after this many characters of the current attempt"),
    ] = None,
) -> StreamingResponse:
    job_uuid = parse_job_id(job_id)
    row = await load_job(services, job_uuid, caller.scope)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    attempt, position = (
        parse_event_id(last_event_id) if last_event_id is not None else (None, offset or 0)
    )
    restart = attempt is not None and attempt < row["attempt"]
    if attempt is not None and attempt > row["attempt"]:
        raise BadRequestError(
            f"Last-Event-ID names attempt {attempt}; the job is on attempt {row['attempt']}"
        )
    if restart:
        # Its text is not the newer attempt's: that one is sent from its start.
        position = 0
    # A queued job's wait is told within QUEUED_NOTICE_S if it has not started by then: off
    # the way of a job that starts at once, whose first token must not wait for the count.
    queued = row["status"] == JobStatus.QUEUED
    follower = JobFollower(
        resources,
        services,
        job_uuid,
        StreamCursor(row["attempt"], position),
        first_idle_s=QUEUED_NOTICE_S if queued else None,
    )

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        if restart:
            yield restart_frame(row["attempt"])
        try:
            async for event in while_key_valid(resources, caller, follower.events(row)):
                if isinstance(event, Delta):
                    yield delta_frame(event)
                elif isinstance(event, Idle):
                    yield b": keep-alive\n\n"
                    if (waiting := await queued_frame(services, event.row)) is not None:
                        yield waiting
                elif isinstance(event, Final):
                    for frame in final_frames(event.summary):
                        yield frame
                elif isinstance(event, Revoked):
                    yield sse("error", {"message": "the API key was revoked; the job goes on"})
                else:
                    yield restart_frame(event.attempt)
        except Exception as exc:
            # The status line is out: end with an error event the client can act on, not a
            # connection cut mid-frame (Postgres unreachable when the job's end is read...).
            reference = log_with_reference(f"stream /jobs/{job_uuid}/stream broke off", exc)
            message = (
                f"the stream broke off (reference {reference}); the job goes on: reconnect "
                "with Last-Event-ID to resume"
            )
            yield sse("error", {"message": message})

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
