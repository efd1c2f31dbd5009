"""The API's Redis clients: under load a request waits for a free connection, up to a bound,
instead of failing while Redis is healthy.

redis-py's asyncio pool holds at most `max_connections` (100 unless set) and raises "Too many
connections" at once when they are all in use: a burst of streaming completions answered 503
that way. Its BlockingConnectionPool waits instead, on an asyncio.Condition that has deadlocked
(redis/redis-py#3056; here an app's shutdown hung on it). This pool keeps the plain pool's
locking and, when it is full, polls for a freed connection until `wait_s` runs out.
"""

import asyncio
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import MaxConnectionsError

from vqueue.settings import Settings

POLL_S = 0.005


class WaitingConnectionPool(ConnectionPool):
    def __init__(self, *args: Any, wait_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_s = wait_s

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            except MaxConnectionsError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(POLL_S)


def redis_client(settings: Settings, url: str) -> Redis:
    pool = WaitingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        wait_s=settings.redis_pool_timeout_s,
        socket_timeout=5,
        socket_connect_timeout=2,
    )
    return Redis.from_pool(pool)  # the client closes its pool
