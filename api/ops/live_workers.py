"""How many workers are live, from their heartbeat keys, counted in the background."""

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.core.background import BackgroundTask, every
from vqueue.contract.wire import WORKERS_KEY, WorkerHeartbeat, read_heartbeat, worker_key

log = logging.getLogger(__name__)

REFRESH_S = 5.0


async def worker_keys(redis: Redis) -> list[str]:
    """The heartbeat keys of the live workers, from their registry (no keyspace scan)."""
    names = await redis.zrangebyscore(WORKERS_KEY, time.time(), "+inf")
    return [worker_key(name.decode()) for name in names]  # type: ignore[union-attr]


async def worker_descriptions(redis: Redis) -> list[WorkerHeartbeat]:
    """What each live worker announces in its heartbeat (model, engine settings, load)."""
    keys = await worker_keys(redis)
    values = await redis.mget(keys) if keys else []
    return [read_heartbeat(value) for value in values if value]


class LiveWorkers:
    """The submitter sizes its task messages by the number of live workers, and the context
    check reads their context length: a task reads their heartbeats every few seconds, off
    the path of a submit. `count` is the last answer (1 until there is one, and while Redis
    cannot be read); `max_model_len` the smallest context of a live worker and
    `smallest_max_jobs` the fewest jobs one holds and `max_jobs` all of them together (None
    before)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.count = 1
        self.max_model_len: int | None = None
        self.smallest_max_jobs: int | None = None
        self.max_jobs: int | None = None
        self._task = BackgroundTask("live-workers", every(REFRESH_S, self.refresh))

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def refresh(self) -> None:
        try:
            keys = await worker_keys(self._redis)
            values = await self._redis.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            log.debug("counting live workers failed: %s", exc)
            return
        self.count = max(len(keys), 1)
        found = [read_heartbeat(value) for value in values if value]
        contexts = [worker["max_model_len"] for worker in found if worker["max_model_len"]]
        if contexts:
            self.max_model_len = min(contexts)
        # A heartbeat of an earlier release does not say it.
        holds = [worker["max_jobs"] for worker in found if worker.get("max_jobs")]
        self.smallest_max_jobs = min(holds) if holds else None
        self.max_jobs = sum(holds) if holds else None
