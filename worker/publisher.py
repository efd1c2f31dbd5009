"""Writes token-log entries to Redis from the engine loop, one script call per engine step.

Every job's generator adds its delta as the engine produces it; a single flusher task sends
whatever has gathered as one call of LOG_SCRIPT (contract.py), which writes each entry into
its job's log and publishes them all in one message, so the cost per token is a few
microseconds of Python and a fraction of a round trip.
"""

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vqueue.contract import LOG_SCRIPT, LogEntry, log_script_args

log = logging.getLogger(__name__)


class TokenLogPublisher:
    def __init__(self, redis: Redis, retention_s: int) -> None:
        self._redis = redis
        self._script = redis.register_script(LOG_SCRIPT)
        self._retention_s = retention_s
        self._pending: list[LogEntry] = []
        self._flushed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="token-log-publisher")

    def add(self, entry: LogEntry) -> "asyncio.Future[None]":
        """Queue an entry; the returned future resolves once its batch reached Redis (or failed)."""
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
            await self._write(batch)
            done.set_result(None)

    async def _write(self, batch: list[LogEntry]) -> None:
        try:
            await self._script(args=log_script_args(batch, self._retention_s))
        except (RedisError, OSError) as exc:
            # Postgres holds every final result; a lost delta only degrades live streaming.
            log.warning("token log write failed for %d entries: %s", len(batch), exc)

    async def close(self) -> None:
        if self._pending:
            await self._write(self._pending)
            self._pending = []
        if self._task is not None:
            self._task.cancel()
