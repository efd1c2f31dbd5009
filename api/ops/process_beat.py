"""Each API process announces itself, with its garbage-collection pauses, like a worker does.

An API process's event loop carries every stream it serves, so a long pause of its own shows
as a burst of late tokens. Whichever process answers /metrics reports every live one's
collections from these beats (`api_processes`); the notable pauses are kept with their times
(vqueue/gc_heap.py), which the benchmark holds against the late tokens of a run.
"""

import logging
import time
from contextlib import suppress
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.core.background import BackgroundTask, every
from vqueue.contract.wire import API_KEY_PREFIX, api_key, process_name
from vqueue.gc_heap import GcPauses

log = logging.getLogger(__name__)


class ProcessBeat:
    def __init__(self, redis: Redis, gc_pauses: GcPauses, interval_s: float) -> None:
        self._redis = redis
        self._gc_pauses = gc_pauses
        self._interval_s = interval_s
        self.name = process_name()
        self._task = BackgroundTask("process-beat", every(interval_s, self.beat))

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()
        with suppress(RedisError, OSError):
            await self._redis.delete(api_key(self.name))

    def described(self) -> dict[str, Any]:
        return {"name": self.name, "beat_at": time.time(), "gc": self._gc_pauses.snapshot()}

    async def beat(self) -> None:
        described = self.described()
        try:
            await self._redis.set(
                api_key(self.name), orjson.dumps(described), ex=int(self._interval_s * 3) + 1
            )
        except (RedisError, OSError) as exc:
            log.debug("API heartbeat failed: %s", exc)


async def api_processes(redis: Redis, here: ProcessBeat) -> list[dict[str, Any]]:
    """Every live API process's latest beat, this one's as of now."""
    keys = [key async for key in redis.scan_iter(match=f"{API_KEY_PREFIX}*", count=100)]
    values = await redis.mget(keys) if keys else []
    found = {here.name: here.described()}
    for value in values:
        if value is not None:
            beat = orjson.loads(value)
            found.setdefault(beat["name"], beat)
    return [found[name] for name in sorted(found)]
