"""Writes token-log entries to Redis from the engine loop, one script call per engine step.

Every job's generator adds its delta as the engine produces it; a single flusher task sends
whatever has gathered as one call of LOG_SCRIPT (contract.py), which writes each entry into
its job's log and publishes them all in one message, so the cost per token is a few
microseconds of Python and a fraction of a round trip.

While Redis is unreachable (a restart), entries are held and written, in order, once it is
back: a stream id is set by the entry, so an entry written twice is refused, not doubled.
"""

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vqueue.contract.wire import LOG_SCRIPT, LogEntry, log_script_args

log = logging.getLogger(__name__)

# Entries held while Redis is unreachable; beyond this the oldest go (Postgres keeps every
# final text, so a lost delta only degrades live streaming).
MAX_HELD_ENTRIES = 200_000
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 1.0


class TokenLogPublisher:
    def __init__(self, redis: Redis, retention_s: int) -> None:
        self._redis = redis
        self._script = redis.register_script(LOG_SCRIPT)
        self._retention_s = retention_s
        self._pending: list[LogEntry] = []
        self._flushed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._held: list[LogEntry] = []
        self._dropped = 0
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._retry_s = FIRST_RETRY_S

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-log-publisher")

    def add(self, entry: LogEntry) -> "asyncio.Future[None]":
        """Queue an entry; the returned future resolves once its batch reached Redis, or was
        held for a later try (nobody waits out an outage)."""
        self._pending.append(entry)
        self._wakeup.set()
        return self._flushed

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            # Let the other jobs of this engine step add their deltas before flushing.
            await asyncio.sleep(0)
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            done, self._flushed = self._flushed, asyncio.get_running_loop().create_future()
            if self._down_since is not None and time.monotonic() < self._retry_at:
                self._hold(batch)
            else:
                await self._write(self._take_held() + batch)
            done.set_result(None)

    async def _write(self, batch: list[LogEntry]) -> None:
        if not batch:
            return
        try:
            await self._script(args=log_script_args(batch, self._retention_s))
        except (RedisError, OSError) as exc:
            self._on_failure(batch, exc)
            return
        if self._down_since is not None:
            log.info(
                "token log writes resumed after %.1fs; held entries written, %d dropped",
                time.monotonic() - self._down_since,
                self._dropped,
            )
            self._down_since, self._dropped, self._retry_s = None, 0, FIRST_RETRY_S

    def _on_failure(self, batch: list[LogEntry], exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("token log unreachable, holding entries until it is back: %s", exc)
        self._hold(batch)
        self._retry_at = time.monotonic() + self._retry_s
        asyncio.get_running_loop().call_later(self._retry_s, self._wakeup.set)
        self._retry_s = min(self._retry_s * 2, LAST_RETRY_S)

    def _hold(self, batch: list[LogEntry]) -> None:
        self._held += batch
        if len(self._held) > MAX_HELD_ENTRIES:
            self._dropped += len(self._held) - MAX_HELD_ENTRIES
            del self._held[: len(self._held) - MAX_HELD_ENTRIES]

    def _take_held(self) -> list[LogEntry]:
        held, self._held = self._held, []
        return held

    async def close(self) -> None:
        await self._write(self._take_held() + self._pending)
        self._pending = []
        if self._task is not None:
            self._task.cancel()
