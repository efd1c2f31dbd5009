"""The API's group commit against real Postgres and Redis: the jobs of a submit round go out
in about two task messages per live worker, or in one to a lone worker."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import Engine, text

from api.jobs.submitter import Submitter
from api.ops.live_workers import LiveWorkers
from db.engine import make_async_engine
from db.jobs import job_row
from tests.helpers import delivered_jobs
from vqueue.contract.task_messages import queue_key
from vqueue.contract.wire import ENQUEUED_SET, WORKERS_KEY
from vqueue.settings import Settings

QUEUE = "vqueue.split-check"


def new_row() -> dict[str, Any]:
    return job_row(
        uuid.uuid4(),
        prompt="Say hi.",
        messages=None,
        params={"max_tokens": 4},
        model=None,
        priority=5,
        timeout_s=60,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )


@pytest.mark.parametrize(
    ("live", "sizes"),
    [(2, [25, 25, 25, 25]), (1, [100])],
    ids=["two workers: two messages each", "a lone worker: one message"],
)
def test_a_round_is_shared_out_in_two_messages_per_live_worker(
    settings: Settings, db: Engine, redis: Redis, live: int, sizes: list[int]
) -> None:
    rows = [new_row() for _ in range(100)]
    job_ids = [str(row["id"]) for row in rows]

    async def submit_together() -> list[Any]:
        engine = make_async_engine(settings.database_url, pool_size=2)
        broker = AsyncRedis.from_url(settings.effective_broker_url)
        workers = LiveWorkers(broker)
        workers.count = live  # as the last count found
        submitter = Submitter(engine, broker, QUEUE, per_message=16, workers=workers)
        submitter.start()
        try:
            # Submitted in one loop turn, as a burst of requests: one round.
            return await asyncio.gather(*(submitter.submit(row) for row in rows))
        finally:
            await submitter.close()
            await broker.aclose()
            await engine.dispose()

    redis.delete(queue_key(QUEUE, 5))
    try:
        stored = asyncio.run(submit_together())
        assert all(row is not None for row in stored)
        messages = delivered_jobs(redis, QUEUE, 5)
        assert [len(message) for message in messages] == sizes
        assert sorted(job for message in messages for job in message) == sorted(job_ids)
    finally:
        redis.delete(queue_key(QUEUE, 5))
        redis.srem(ENQUEUED_SET, *job_ids)
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})


def count_now(url: str, start_with: int) -> int:
    async def refreshed() -> int:
        client = AsyncRedis.from_url(url, socket_connect_timeout=1)
        workers = LiveWorkers(client)
        workers.count = start_with
        await workers.refresh()
        await client.aclose()
        return workers.count

    return asyncio.run(refreshed())


def test_live_workers_are_counted_from_their_registry(settings: Settings, redis: Redis) -> None:
    already = redis.zcount(WORKERS_KEY, time.time(), "+inf")
    fakes = [f"split-check:{i}" for i in range(2)]
    # As heartbeats write them: live ones scored by when they expire; one that died long ago.
    redis.zadd(WORKERS_KEY, {name: time.time() + 30 for name in fakes})
    redis.zadd(WORKERS_KEY, {"split-check:dead": time.time() - 60})
    try:
        assert count_now(settings.redis_url, start_with=1) == already + 2
    finally:
        redis.zrem(WORKERS_KEY, *fakes, "split-check:dead")
    # None live counts as one; an unreachable Redis keeps the last count.
    if already == 0:
        assert count_now(settings.redis_url, start_with=5) == 1
    assert count_now("redis://127.0.0.1:1/0", start_with=3) == 3
