"""How many workers are live, from their heartbeat keys, counted in the background."""

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.background import BackgroundTask, every
from vqueue.contract import WORKER_KEY_PREFIX

log = logging.getLogger(__name__)

REFRESH_S = 5.0


async def worker_keys(redis: Redis) -> list[bytes]:
    """The heartbeat keys of the live workers (each expires soon after its worker dies)."""
    return [key async for key in redis.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=1000)]


class LiveWorkers:
    """The submitter sizes its task messages by the number of live workers. Counting them
    scans Redis's keys, thousands of token logs among them, which has no place on the path of
    a submit: a task counts them every few seconds and `count` is the last answer (1 until
    there is one, and while Redis cannot be read)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.count = 1
        self._task = BackgroundTask("live-workers", every(REFRESH_S, self.refresh))

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def refresh(self) -> None:
        try:
            found = await worker_keys(self._redis)
        except (RedisError, OSError) as exc:
            log.debug("counting live workers failed: %s", exc)
            return
        self.count = max(len(found), 1)
