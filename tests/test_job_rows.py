"""Jobs' rows asked for together share one query; no row is older than its caller."""

import asyncio
import uuid
from typing import Any

import pytest

from api.jobs.rows import MAX_IDS, JobRows


class Table:
    """Rows that change; each query reads them, then waits for `release`, and is recorded."""

    def __init__(self, ids: list[uuid.UUID]) -> None:
        self.version = dict.fromkeys(ids, 0)
        self.queries: list[list[uuid.UUID]] = []
        self.asked = asyncio.Event()  # a query has read the rows
        self.release = asyncio.Event()
        self.release.set()

    async def query(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        self.queries.append(ids)
        # What the database returns: the state when the query ran.
        seen = [{"id": i, "version": self.version[i]} for i in ids if i in self.version]
        self.asked.set()
        await self.release.wait()
        return seen


def test_readers_that_ask_together_share_one_query() -> None:
    asyncio.run(_readers_that_ask_together_share_one_query())


async def _readers_that_ask_together_share_one_query() -> None:
    ids = [uuid.uuid4() for _ in range(100)]
    table = Table(ids)
    rows = JobRows(table.query)
    unknown = uuid.uuid4()
    # Each job twice (a stream per client), and one job that does not exist.
    asked = [*ids, *ids, unknown]
    found = await asyncio.gather(*(rows.read(job_id) for job_id in asked))
    assert [row["id"] if row else None for row in found] == [*ids, *ids, None]
    assert len(table.queries) == 1
    assert sorted(table.queries[0]) == sorted([*ids, unknown])  # each id once


def test_a_reader_arriving_mid_query_gets_a_fresh_read() -> None:
    asyncio.run(_a_reader_arriving_mid_query_gets_a_fresh_read())


async def _a_reader_arriving_mid_query_gets_a_fresh_read() -> None:
    job_id, other = uuid.uuid4(), uuid.uuid4()
    table = Table([job_id, other])
    table.release.clear()
    rows = JobRows(table.query)
    early = asyncio.create_task(rows.read(job_id))
    await table.asked.wait()  # the first query runs and has read version 0
    table.version[job_id] = 1  # e.g. the job ended; these readers reacted to its END
    late = [asyncio.create_task(rows.read(job_id)) for _ in range(10)]
    late.append(asyncio.create_task(rows.read(other)))
    await asyncio.sleep(0.01)
    table.release.set()
    assert (await early or {})["version"] == 0
    found = await asyncio.gather(*late)
    assert [row["version"] for row in found if row] == [1] * 10 + [0]
    assert table.queries[1:] == [[job_id, other]]  # the late ones, together


def test_a_flood_of_readers_is_read_in_bounded_rounds() -> None:
    asyncio.run(_a_flood_of_readers_is_read_in_bounded_rounds())


async def _a_flood_of_readers_is_read_in_bounded_rounds() -> None:
    ids = [uuid.uuid4() for _ in range(MAX_IDS + 10)]
    table = Table(ids)
    rows = JobRows(table.query)
    found = await asyncio.gather(*(rows.read(job_id) for job_id in ids))
    assert [row["id"] for row in found if row] == ids
    assert [len(query) for query in table.queries] == [MAX_IDS, 10]


def test_errors_reach_every_reader_and_a_gone_reader_cancels_nothing() -> None:
    asyncio.run(_errors_reach_every_reader_and_a_gone_reader_cancels_nothing())


async def _errors_reach_every_reader_and_a_gone_reader_cancels_nothing() -> None:
    gate = asyncio.Event()

    async def failing(ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        await gate.wait()
        raise ConnectionError("database down")

    rows = JobRows(failing)
    first, second = uuid.uuid4(), uuid.uuid4()
    leaving = asyncio.create_task(rows.read(first))
    staying = [asyncio.create_task(rows.read(first)), asyncio.create_task(rows.read(second))]
    await asyncio.sleep(0)
    leaving.cancel()  # a client disconnects
    gate.set()
    for reader in staying:
        with pytest.raises(ConnectionError, match="database down"):
            await reader
    with pytest.raises(asyncio.CancelledError):
        await leaving
    table = Table([first])
    rows._query = table.query
    assert await rows.read(first) == {"id": first, "version": 0}  # it works again afterwards
