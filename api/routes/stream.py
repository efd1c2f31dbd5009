"""GET /jobs/{id}/stream: a job's tokens over Server-Sent Events, replayable and resumable.

The SSE `id` of each delta is the character offset after it; a client sends it back as
Last-Event-ID on reconnect and resumes exactly there (api/job_follower.py does the following).
Disconnecting only stops the stream, never the job.
"""

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api.auth import CallerDep
from api.deps import ResourcesDep
from api.errors import NotFoundError
from api.job_follower import Final, Idle, JobFollower, load_job
from api.job_views import job_summary
from api.routes.jobs import NOT_FOUND, parse_job_id
from api.stream_cursor import Delta, StreamCursor
from db.states import JobStatus

router = APIRouter(tags=["jobs"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Events `delta` (id: the character offset after it), `restart` when a "
        "new attempt begins, `error` or `cancelled` when the job did not succeed, and a final "
        "`done` carrying the job's state; comments keep the connection alive.",
    },
    **NOT_FOUND,
}
FINAL_EVENT = {JobStatus.FAILED: "error", JobStatus.CANCELLED: "cancelled"}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = b"" if event_id is None else b"id: %d\n" % event_id
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def delta_frame(delta: Delta) -> bytes:
    # `t`: when the worker produced it; unknown (absent) for text replayed from Postgres.
    data = {"text": delta.text, "t": delta.at} if delta.at else {"text": delta.text}
    return sse("delta", data, delta.offset)


def final_frames(row: Mapping[str, Any]) -> list[bytes]:
    status = JobStatus(row["status"])
    summary = job_summary(row)
    frames = []
    if status in FINAL_EVENT:
        frames.append(sse(FINAL_EVENT[status], {"message": row["error"], "job": summary}))
    frames.append(sse("done", summary))
    return frames


@router.get("/jobs/{job_id}/stream", response_class=StreamingResponse, responses=STREAM_DOC)
async def stream_job(
    job_id: str,
    resources: ResourcesDep,
    caller: CallerDep,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    offset: Annotated[
        int | None, Query(ge=0, description="Resume after this many characters")
    ] = None,
) -> StreamingResponse:
    job_uuid = parse_job_id(job_id)
    row = await load_job(resources, job_uuid, caller.scope)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    position = last_event_id if last_event_id is not None else offset or 0
    follower = JobFollower(resources, job_uuid, StreamCursor(row["attempt"], position))

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        async for event in follower.events(row):
            if isinstance(event, Delta):
                yield delta_frame(event)
            elif isinstance(event, Idle):
                yield b": keep-alive\n\n"
            elif isinstance(event, Final):
                for frame in final_frames(event.row):
                    yield frame
            else:
                yield sse("restart", {"attempt": event.attempt})

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
