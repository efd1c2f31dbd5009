"""Following one job: its deltas from the token log, live, then its final state.

The follower subscribes to live events first, then replays the log from its position, then
follows the live tail. Whatever Redis no longer holds is taken from Postgres once the job has
ended, so the deltas always join up to exactly the job's text. The final state is the summary
the worker's END entry carries, written by Postgres as it recorded the result, when the
reader has had the whole text and needs no more than the summary; otherwise (an END from
elsewhere, a reader that missed text, a caller that wants the text) the row is read. Used by
the SSE stream and by the OpenAI-compatible endpoints; stopping the iteration only stops
following, never the job.
"""

import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import RedisError

from api.core.auth import key_still_valid
from api.core.callers import Caller
from api.core.hub import Subscription
from api.core.resources import Resources
from api.jobs.schemas import JobSummary
from api.jobs.services import JobServices
from api.jobs.stream_cursor import Delta, Ended, Gap, Restart, StreamCursor
from api.jobs.token_log import log_exists, read_after
from api.jobs.views import job_summary
from db.schema import may_see
from db.states import JobStatus
from vqueue.contract import logprobs
from vqueue.contract.wire import LogEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Final:
    """The job ended: its final state as Postgres recorded it, and its whole text and log
    probabilities where the row was read (always, for a follower made with
    `needs_text=True`)."""

    summary: JobSummary
    text: str | None = None
    logprobs: str = ""
    # The log probabilities of the tokens after the text the reader was sent (an
    # end-of-sequence token has none), where the job asked for them.
    tail: str = ""
    # The tool calls its worker read in the text (ToolCalls.encode()), where the row was read.
    tool_calls: str | None = None


@dataclass(frozen=True)
class Idle:
    """Nothing happened for a keep-alive interval (streams send a comment). `row`: the job's
    row, read then to check it had not ended unseen (a stream shows a queued job's wait from
    it without reading it again)."""

    row: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Revoked:
    """The reader's API key was revoked while it followed: the stream ends (not the job)."""


FollowEvent = Delta | Restart | Final | Idle | Revoked


async def while_key_valid(
    resources: Resources, caller: Caller, events: AsyncIterator[FollowEvent]
) -> AsyncGenerator[FollowEvent, None]:
    """The events, as long as the caller's key stays valid (checked at most once per
    VQUEUE_KEY_CACHE_S, and at least at every keep-alive); then `Revoked`, and no more."""
    checked = time.monotonic()
    async for event in events:
        if time.monotonic() - checked >= resources.settings.key_cache_s:
            checked = time.monotonic()
            if not await key_still_valid(resources, caller):
                yield Revoked()
                return
        yield event


async def load_job(
    services: JobServices, job_id: uuid.UUID, scope: uuid.UUID | None
) -> Mapping[str, Any] | None:
    """The job, if a caller of this scope (Caller.scope: an owner, or None for every job) may
    see it; concurrent loads, of one job or of many, share one query (api/jobs/rows.py)."""
    row = await services.rows.read(job_id)
    if row is None or not may_see(row["owner_id"], scope):
        return None
    return row


class JobFollower:
    def __init__(
        self,
        resources: Resources,
        services: JobServices,
        job_id: uuid.UUID,
        cursor: StreamCursor,
        *,
        needs_text: bool = False,
        first_idle_s: float | None = None,
    ) -> None:
        self.resources = resources
        self.services = services
        self.job_id = job_id
        self.key = str(job_id)
        self.cursor = cursor
        self.needs_text = needs_text
        # Set when Redis cannot fill a gap: further deltas wait for the final text in Postgres.
        self.broken = False
        # Where given, the first Idle comes this soon if nothing happened (then every
        # keep-alive): a stream of a queued job tells its wait without delaying its opening.
        self.first_idle_s = first_idle_s

    async def events(self, row: Mapping[str, Any]) -> AsyncIterator[FollowEvent]:
        with self.services.hub.subscribe(self.key) as subscription:
            if JobStatus(row["status"]).is_terminal and not await self._log_exists():
                # The log expired, or Redis lost it: the finished text is in Postgres.
                for event in self._final(row):
                    yield event
                return
            async for event in self._follow(subscription):
                yield event

    async def _follow(self, subscription: Subscription) -> AsyncIterator[FollowEvent]:
        keepalive = self.resources.settings.sse_keepalive_s
        quiet_s = self.first_idle_s or keepalive
        entries = await self._reread()
        while True:
            events, ended = await self._apply(entries)
            for event in events:
                yield event
            if ended is not None and (row := await self._ended_row(ended)) is not None:
                for event in self._final(row, ended.logprobs):
                    yield event
                return
            waited = await subscription.wait(quiet_s)
            quiet_s = keepalive
            if waited:
                entries, lagged = subscription.drain()
                if lagged:
                    entries = await self._reread()
                continue
            # Quiet for a while: make sure the job did not end unseen (its END entry lost).
            row = await load_job(self.services, self.job_id, None)
            if row is not None and JobStatus(row["status"]).is_terminal:
                for event in self._final(row):
                    yield event
                return
            yield Idle(row)
            entries = []

    async def _ended_row(self, ended: Ended) -> Mapping[str, Any] | None:
        """The final state once an END arrived: the summary it carries where that will do
        (at a burst's end, every stream's read of its row was a query the done event waited
        for), else the row from Postgres."""
        if ended.final and not self.broken and not self.needs_text:
            try:
                summary: dict[str, Any] = orjson.loads(ended.final)
            except orjson.JSONDecodeError:
                log.warning("job %s: unreadable summary in its END entry", self.key)
            else:
                if summary.get("attempt") == self.cursor.attempt:
                    return summary
        return await self._final_row()

    async def _final_row(self) -> Mapping[str, Any] | None:
        row = await load_job(self.services, self.job_id, None)
        return row if row is not None and JobStatus(row["status"]).is_terminal else None

    async def _apply(self, entries: list[LogEntry]) -> tuple[list[FollowEvent], Ended | None]:
        found: list[FollowEvent] = []
        ended: Ended | None = None
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
                if isinstance(event, Ended):
                    ended = event
                elif isinstance(event, Delta | Restart):
                    found.append(event)
        return found, ended

    def _final(self, row: Mapping[str, Any], tail: str = "") -> list[FollowEvent]:
        """The end from `row`: the job's row from Postgres, or the summary its END carried
        (with `tail`, the log probabilities of its tokens after the last delta)."""
        # A new attempt's row restarts the text for a reader positioned in an older attempt.
        events: list[FollowEvent] = []
        if row["attempt"] > self.cursor.attempt:
            if self.cursor.position > 0:
                events.append(Restart(row["attempt"]))
            self.cursor = StreamCursor(row["attempt"], 0)
        every = row.get("logprobs")  # the row's, where it was read and the job has them
        rest = self.cursor.rest_of(row.get("text") or "", every)
        for event in rest:
            assert isinstance(event, Delta)
            events.append(event)
        if every and not rest:
            # The reader had the whole text: what is left are the tokens after it.
            tail = logprobs.after(every, self.cursor.position)
        summary = job_summary(row)
        events.append(Final(summary, row.get("text"), every or "", tail, row.get("tool_calls")))
        return events

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
