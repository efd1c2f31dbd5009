"""The per-key request limit is a sliding window shared through Redis: no more than the
limit passes in any minute, a minute boundary included (real Redis, explicit clock)."""

import asyncio
import uuid

from redis.asyncio import Redis

from api.core.auth import admit_request
from vqueue.settings import Settings


def admitted_at(settings: Settings, times: list[float], limit: int) -> list[float]:
    async def run() -> list[float]:
        redis = Redis.from_url(settings.redis_url)
        key = f"vqueue:rate:test-{uuid.uuid4()}"
        try:
            return [await admit_request(redis, key, limit, now) for now in times]
        finally:
            await redis.delete(key)
            await redis.aclose()

    return asyncio.run(run())


def test_the_limit_holds_across_a_minute_boundary(settings: Settings) -> None:
    # 30 requests just before a minute ends, 30 just after: a per-minute counter let all 60
    # through in 3 s; a window lets the first 30.
    times = [59.0 + i * 0.03 for i in range(30)] + [60.5 + i * 0.03 for i in range(30)]
    waits = admitted_at(settings, times, limit=30)
    assert waits[:30] == [0.0] * 30
    assert all(wait > 0 for wait in waits[30:])
    # Each is told when the oldest request leaves the window.
    assert abs(waits[30] - (59.0 + 60 - 60.5)) < 0.01


def test_requests_are_admitted_again_as_the_window_slides(settings: Settings) -> None:
    waits = admitted_at(settings, [0.0, 10.0, 20.0, 30.0, 60.5, 70.5], limit=3)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 29 < waits[3] <= 30  # refused until the request at 0.0 leaves, at 60.0
    assert waits[4:] == [0.0, 0.0]  # those at 0.0 and 10.0 have left by now
