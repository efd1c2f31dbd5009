"""GET /jobs/{id}/stream: a job's tokens over Server-Sent Events, replayable and resumable.

The reader subscribes to live events first, then replays the log from its position (the SSE
`id`, sent back as Last-Event-ID on reconnect), then follows the live tail. Whatever Redis no
longer holds is taken from Postgres once the job has ended, so the deltas a client receives
always join up to exactly the job's text. Disconnecting only stops the stream, never the job.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from api.deps import Resources, ResourcesDep
from api.errors import NotFoundError
from api.hub import Subscription
from api.job_views import job_summary
from api.routes.jobs import NOT_FOUND, parse_job_id
from api.stream_cursor import Delta, Ended, Gap, Restart, StreamCursor
from api.token_log import log_exists, read_after
from db.jobs import get_job
from db.states import JobStatus
from vqueue.contract import LogEntry

router = APIRouter(tags=["jobs"])
log = logging.getLogger(__name__)

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


@router.get("/jobs/{job_id}/stream", response_class=StreamingResponse, responses=STREAM_DOC)
async def stream_job(
    job_id: str,
    resources: ResourcesDep,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    offset: Annotated[
        int | None, Query(ge=0, description="Resume after this many characters")
    ] = None,
) -> StreamingResponse:
    job_uuid = parse_job_id(job_id)
    row = await _load(resources, job_uuid)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}")
    position = last_event_id if last_event_id is not None else offset or 0
    follower = _Follower(resources, job_uuid, StreamCursor(row["attempt"], position))
    return StreamingResponse(
        follower.events(row), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _load(resources: Resources, job_id: uuid.UUID) -> Mapping[str, Any] | None:
    async with resources.db.connect() as conn:
        return (await conn.execute(get_job(job_id))).mappings().first()


class _Follower:
    def __init__(self, resources: Resources, job_id: uuid.UUID, cursor: StreamCursor) -> None:
        self.resources = resources
        self.job_id = job_id
        self.key = str(job_id)
        self.cursor = cursor
        # Set when Redis cannot fill a gap: further deltas wait for the final text in Postgres.
        self.broken = False

    async def events(self, row: Mapping[str, Any]) -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        with self.resources.hub.subscribe(self.key) as subscription:
            if JobStatus(row["status"]).is_terminal and not await self._log_exists():
                # The log expired, or Redis lost it: the finished text is in Postgres.
                for frame in self._final(row):
                    yield frame
                return
            async for frame in self._follow(subscription):
                yield frame

    async def _follow(self, subscription: Subscription) -> AsyncIterator[bytes]:
        keepalive = self.resources.settings.sse_keepalive_s
        entries = await self._reread()
        while True:
            frames, ended = await self._apply(entries)
            for frame in frames:
                yield frame
            if ended:
                row = await _load(self.resources, self.job_id)
                if row is not None and JobStatus(row["status"]).is_terminal:
                    for frame in self._final(row):
                        yield frame
                    return
            if await subscription.wait(keepalive):
                entries, lagged = subscription.drain()
                if lagged:
                    entries = await self._reread()
                continue
            yield b": keep-alive\n\n"
            # Quiet for a while: make sure the job did not end unseen (its END entry lost).
            row = await _load(self.resources, self.job_id)
            if row is not None and JobStatus(row["status"]).is_terminal:
                for frame in self._final(row):
                    yield frame
                return
            entries = []

    async def _apply(self, entries: list[LogEntry]) -> tuple[list[bytes], bool]:
        frames: list[bytes] = []
        ended = False
        queue = list(entries)
        reread = False
        while queue:
            entry = queue.pop(0)
            try:
                events = self.cursor.accept(entry)
            except Gap:
                if self.broken:
                    continue
                if reread:
                    log.warning("job %s: token log has a gap; finishing from Postgres", self.key)
                    self.broken = True
                    continue
                # Missed entries are in the log (written before they were published).
                reread = True
                queue = await self._reread()
                continue
            for event in events:
                if isinstance(event, Delta):
                    frames.append(delta_frame(event))
                elif isinstance(event, Restart):
                    frames.append(sse("restart", {"attempt": event.attempt}))
                elif isinstance(event, Ended):
                    ended = True
        return frames, ended

    def _final(self, row: Mapping[str, Any]) -> list[bytes]:
        # A new attempt's row restarts the text for a reader positioned in an older attempt.
        frames: list[bytes] = []
        if row["attempt"] > self.cursor.attempt:
            if self.cursor.position > 0:
                frames.append(sse("restart", {"attempt": row["attempt"]}))
            self.cursor = StreamCursor(row["attempt"], 0)
        for event in self.cursor.rest_of(row["text"] or ""):
            assert isinstance(event, Delta)
            frames.append(delta_frame(event))
        status = JobStatus(row["status"])
        summary = job_summary(row)
        if status in FINAL_EVENT:
            frames.append(sse(FINAL_EVENT[status], {"message": row["error"], "job": summary}))
        frames.append(sse("done", summary))
        return frames

    async def _reread(self) -> list[LogEntry]:
        try:
            return await read_after(
                self.resources.redis, self.key, self.cursor.attempt, self.cursor.position
            )
        except RedisError as exc:
            log.warning("job %s: token log unreadable: %s", self.key, exc)
            return []

    async def _log_exists(self) -> bool:
        try:
            return await log_exists(self.resources.redis, self.key)
        except RedisError:
            return False
