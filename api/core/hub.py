"""One Redis pub/sub connection per API process, fanned out in memory to the streams of a job."""

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.core.background import BackgroundTask
from vqueue.contract.wire import EVENTS_CHANNEL, LogEntry, decode_events

log = logging.getLogger(__name__)

# A watcher this far behind stops buffering and re-reads the job's log instead.
MAX_BUFFERED = 4096


class Subscription:
    def __init__(self) -> None:
        self.entries: deque[LogEntry] = deque()
        self.lagged = False
        self._ready = asyncio.Event()

    def push(self, entry: LogEntry) -> None:
        if len(self.entries) >= MAX_BUFFERED:
            self.lagged = True
        else:
            self.entries.append(entry)
        self._ready.set()

    def mark_lagged(self) -> None:
        self.lagged = True
        self._ready.set()

    async def wait(self, seconds: float) -> bool:
        """True when entries (or a lag) arrived within `seconds`."""
        try:
            await asyncio.wait_for(self._ready.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def drain(self) -> tuple[list[LogEntry], bool]:
        entries, lagged = list(self.entries), self.lagged
        self.entries.clear()
        self.lagged = False
        self._ready.clear()
        return entries, lagged


class EventHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._watchers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._listener = BackgroundTask("event-hub", self._listen)

    def start(self) -> None:
        self._listener.start()

    async def close(self) -> None:
        await self._listener.close()

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        subscription = Subscription()
        self._watchers[job_id].add(subscription)
        try:
            yield subscription
        finally:
            watchers = self._watchers[job_id]
            watchers.discard(subscription)
            if not watchers:
                del self._watchers[job_id]

    @property
    def watching(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    # Anything published while we were away is in the logs: make everyone re-read.
                    self._mark_all_lagged()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost, reconnecting: %s", exc)
                await asyncio.sleep(1.0)

    def _dispatch(self, payload: bytes) -> None:
        for entry in decode_events(payload):
            for subscription in self._watchers.get(entry.job_id, ()):
                subscription.push(entry)

    def _mark_all_lagged(self) -> None:
        for watchers in self._watchers.values():
            for subscription in watchers:
                subscription.mark_lagged()
