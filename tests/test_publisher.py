"""The worker's token-log publisher against real Redis."""

import asyncio
import itertools
import uuid

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from api.jobs.token_log import read_after, text_so_far
from tests.faults import CuttableProxy
from vqueue.contract.wire import (
    EVENTS_CHANNEL,
    ORPHAN_LOG_TTL_S,
    EntryKind,
    LogEntry,
    decode_events,
    token_log_key,
)
from vqueue.settings import Settings
from worker.publisher import TokenLogPublisher


def test_one_step_is_one_message_and_every_entry_is_logged(
    settings: Settings, redis: SyncRedis
) -> None:
    # Pub/sub channels span Redis's databases: a worker of another stack on this Redis (or
    # of this suite, still finishing an earlier test's jobs) publishes on the same channel.
    job_a, job_b = f"job-a-{uuid.uuid4()}", f"job-b-{uuid.uuid4()}"

    async def scenario() -> tuple[list[list[LogEntry]], list[LogEntry], str, int, int]:
        client = Redis.from_url(settings.redis_url)
        listener = Redis.from_url(settings.redis_url)
        pubsub = listener.pubsub()
        await pubsub.subscribe(EVENTS_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        publisher = TokenLogPublisher(client, retention_s=60)
        publisher.start()
        # Two jobs' deltas added in the same loop turn, as one engine step produces them.
        publisher.add(LogEntry(job_a, 1, EntryKind.DELTA, 5, "Hello"))
        publisher.add(LogEntry(job_b, 1, EntryKind.DELTA, 3, "Hi!"))
        await publisher.add(LogEntry(job_a, 1, EntryKind.DELTA, 11, " world"))
        await publisher.add(LogEntry(job_a, 1, EntryKind.END, 11, status="succeeded"))
        messages = []
        while (message := await pubsub.get_message(timeout=1)) is not None:
            batch = decode_events(message["data"])
            if any(entry.job_id in (job_a, job_b) for entry in batch):
                messages.append(batch)
        logged = await read_after(client, job_a, attempt=1, position=0)
        text = await text_so_far(client, job_a, attempt=1)
        ttl_a = await client.ttl(token_log_key(job_a))
        ttl_b = await client.ttl(token_log_key(job_b))
        await publisher.close()
        await pubsub.aclose()
        await listener.aclose()
        await client.aclose()
        return messages, logged, text, ttl_a, ttl_b

    messages, logged, text, ttl_a, ttl_b = asyncio.run(scenario())
    redis.delete(token_log_key(job_a), token_log_key(job_b))
    assert [len(batch) for batch in messages] == [3, 1]
    assert [entry.text for entry in logged] == ["Hello", " world", ""]
    assert logged[-1].kind is EntryKind.END
    assert text == "Hello world"
    # A finished log is kept for the retention time; an unfinished one expires eventually.
    assert 0 < ttl_a <= 60
    assert 60 < ttl_b <= ORPHAN_LOG_TTL_S


@pytest.mark.parametrize("position", [0, 5, 11])
def test_reading_after_a_position_skips_what_was_seen(
    settings: Settings, redis: SyncRedis, position: int
) -> None:
    key = token_log_key("job-r")
    redis.delete(key)
    for entry in [
        LogEntry("job-r", 1, EntryKind.DELTA, 5, "Hello"),
        LogEntry("job-r", 1, EntryKind.DELTA, 11, " world"),
    ]:
        redis.xadd(key, entry.stream_fields(), id=entry.stream_id)  # type: ignore[arg-type]

    async def read() -> list[LogEntry]:
        client = Redis.from_url(settings.redis_url)
        try:
            return await read_after(client, "job-r", attempt=1, position=position)
        finally:
            await client.aclose()

    assert [entry.end for entry in asyncio.run(read())] == [
        end for end in (5, 11) if end > position
    ]


def test_entries_written_while_redis_is_unreachable_arrive_once_it_is_back(
    settings: Settings, redis: SyncRedis
) -> None:
    """Redis cut mid-stream (as a restart looks to the worker): nobody waits out the outage,
    and once Redis answers again every entry is in the log, in order, once."""
    port = redis.connection_pool.connection_kwargs["port"]
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    proxy = CuttableProxy(port)
    job = f"job-cut-{uuid.uuid4()}"
    words = [f" w{i}" for i in range(40)]
    ends = list(itertools.accumulate(len(word) for word in words))

    async def scenario() -> list[LogEntry]:
        client = Redis(port=proxy.port, db=db, socket_connect_timeout=1, socket_timeout=1)
        publisher = TokenLogPublisher(client, retention_s=60)
        publisher.start()
        for word, end in zip(words[:10], ends[:10], strict=True):
            await publisher.add(LogEntry(job, 1, EntryKind.DELTA, end, word))
        proxy.cut()
        for word, end in zip(words[10:30], ends[10:30], strict=True):
            # Resolves at once although nothing reached Redis.
            await asyncio.wait_for(publisher.add(LogEntry(job, 1, EntryKind.DELTA, end, word)), 5)
        proxy.restore()
        for word, end in zip(words[30:], ends[30:], strict=True):
            await publisher.add(LogEntry(job, 1, EntryKind.DELTA, end, word))
        await asyncio.wait_for(publisher.add(LogEntry(job, 1, EntryKind.END, ends[-1])), 5)
        for _ in range(100):  # the held entries go with the next write or the retry timer
            logged = await read_after(client, job, attempt=1, position=0)
            if logged and logged[-1].kind is EntryKind.END:
                break
            await asyncio.sleep(0.1)
        await publisher.close()
        await client.aclose()
        return logged

    logged = asyncio.run(scenario())
    redis.delete(token_log_key(job))
    assert [entry.text for entry in logged] == [*words, ""]
