"""The worker's token-log publisher against real Redis."""

import asyncio

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from api.token_log import read_after, text_so_far
from vqueue.contract import (
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
    async def scenario() -> tuple[list[list[LogEntry]], list[LogEntry], str, int, int]:
        client = Redis.from_url(settings.redis_url)
        listener = Redis.from_url(settings.redis_url)
        pubsub = listener.pubsub()
        await pubsub.subscribe(EVENTS_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        publisher = TokenLogPublisher(client, retention_s=60)
        publisher.start()
        # Two jobs' deltas added in the same loop turn, as one engine step produces them.
        publisher.add(LogEntry("job-a", 1, EntryKind.DELTA, 5, "Hello"))
        publisher.add(LogEntry("job-b", 1, EntryKind.DELTA, 3, "Hi!"))
        await publisher.add(LogEntry("job-a", 1, EntryKind.DELTA, 11, " world"))
        await publisher.add(LogEntry("job-a", 1, EntryKind.END, 11, status="succeeded"))
        messages = []
        while (message := await pubsub.get_message(timeout=1)) is not None:
            messages.append(decode_events(message["data"]))
        logged = await read_after(client, "job-a", attempt=1, position=0)
        text = await text_so_far(client, "job-a", attempt=1)
        ttl_a = await client.ttl(token_log_key("job-a"))
        ttl_b = await client.ttl(token_log_key("job-b"))
        await publisher.close()
        await pubsub.aclose()
        await listener.aclose()
        await client.aclose()
        return messages, logged, text, ttl_a, ttl_b

    redis.delete(token_log_key("job-a"), token_log_key("job-b"))
    messages, logged, text, ttl_a, ttl_b = asyncio.run(scenario())
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
