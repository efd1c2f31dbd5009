"""Concurrent reads of one key share a query, and no read is older than its caller."""

import asyncio

import pytest

from api.core.coalesce import ReadCoalescer


class Source:
    """A value that changes; each query reads it after a pause, and is counted."""

    def __init__(self) -> None:
        self.value = 0
        self.queries = 0
        self.release = asyncio.Event()

    async def query(self) -> int:
        self.queries += 1
        seen = self.value  # what the database returns: the state when the query ran
        await self.release.wait()
        return seen


def test_callers_that_arrive_together_share_one_query() -> None:
    asyncio.run(_callers_that_arrive_together_share_one_query())


async def _callers_that_arrive_together_share_one_query() -> None:
    reads, source = ReadCoalescer(), Source()
    callers = [asyncio.create_task(reads.read("job", source.query)) for _ in range(100)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*callers) == [0] * 100
    assert source.queries == 1


def test_a_caller_arriving_mid_query_gets_a_fresh_read() -> None:
    asyncio.run(_a_caller_arriving_mid_query_gets_a_fresh_read())


async def _a_caller_arriving_mid_query_gets_a_fresh_read() -> None:
    reads, source = ReadCoalescer(), Source()
    early = asyncio.create_task(reads.read("job", source.query))
    await asyncio.sleep(0.01)  # the first query runs and has read 0
    source.value = 1  # e.g. the job ended; these callers reacted to that
    late = [asyncio.create_task(reads.read("job", source.query)) for _ in range(10)]
    await asyncio.sleep(0.01)
    source.release.set()
    assert await early == 0
    assert await asyncio.gather(*late) == [1] * 10
    assert source.queries == 2
    other = await reads.read("another key", source.query)  # keys do not share
    assert (other, source.queries) == (1, 3)


def test_errors_reach_every_caller_and_a_gone_caller_cancels_nothing() -> None:
    asyncio.run(_errors_reach_every_caller_and_a_gone_caller_cancels_nothing())


async def _errors_reach_every_caller_and_a_gone_caller_cancels_nothing() -> None:
    reads = ReadCoalescer()
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise ConnectionError("database down")

    leaving = asyncio.create_task(reads.read("k", failing))
    staying = asyncio.create_task(reads.read("k", failing))
    await asyncio.sleep(0)
    leaving.cancel()  # a client disconnects
    gate.set()
    with pytest.raises(ConnectionError, match="database down"):
        await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.clear()
    source = Source()
    source.release.set()
    assert await reads.read("k", source.query) == 0  # the key works again afterwards
