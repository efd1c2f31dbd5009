"""How a stream ends, against real Redis (Postgres stood in for by a row reader that counts):
with the summary the worker's END carries where the reader had the whole text, by a read of
the row otherwise."""

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
from redis.asyncio import Redis

from api.core.hub import EventHub
from api.jobs.follower import Final, JobFollower
from api.jobs.stream_cursor import Delta, StreamCursor
from api.jobs.views import job_summary
from db.attempts import SUMMARY_COLUMNS
from vqueue.contract.wire import LOG_SCRIPT, EntryKind, LogEntry, log_script_args
from vqueue.settings import Settings


class CountingRows:
    """JobRows' read, from a dict; counts the reads a follower makes."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.reads = 0

    async def read(self, job_id: uuid.UUID) -> dict[str, Any]:
        self.reads += 1
        return self.row


def follow(
    settings: Settings, entries: list[LogEntry], row: dict[str, Any], **options: Any
) -> tuple[list[Any], int]:
    """The events a follower of the job (from the start of attempt 1) gives for a log holding
    `entries`, and how many times it read the row."""

    async def run() -> tuple[list[Any], int]:
        redis = Redis.from_url(settings.redis_url)
        try:
            await redis.register_script(LOG_SCRIPT)(args=log_script_args(entries, 60))
            rows = CountingRows(row)
            resources = SimpleNamespace(settings=settings, redis=redis)
            services = SimpleNamespace(hub=EventHub(redis), rows=rows)
            job_id = uuid.UUID(entries[0].job_id)
            follower = JobFollower(
                resources,  # type: ignore[arg-type]
                services,  # type: ignore[arg-type]
                job_id,
                StreamCursor(1, 0),
                **options,
            )
            running = {**row, "status": "running", "text": None}
            events = [event async for event in follower.events(running)]
            return events, rows.reads
        finally:
            await redis.aclose()

    return asyncio.run(asyncio.wait_for(run(), 30))


def finished_job(final: bool) -> tuple[list[LogEntry], dict[str, Any], dict[str, Any]]:
    """A job's log (two deltas, then its END, with or without a summary), its row in Postgres
    and the summary."""
    job_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS) | {
        "id": uuid.UUID(job_id),
        "status": "succeeded",
        "priority": 5,
        "timeout_s": 600,
        "attempt": 1,
        "finish_reason": "length",
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "created_at": now,
        "started_at": now,
        "finished_at": now,
    }
    # As Postgres writes it into the END entry: ids and dates as strings.
    summary = orjson.loads(orjson.dumps(row))
    row |= {"text": "Hello there", "owner_id": uuid.uuid4(), "custom_id": "from postgres"}
    entries = [
        LogEntry(job_id, 1, EntryKind.DELTA, 5, "Hello"),
        LogEntry(job_id, 1, EntryKind.DELTA, 11, " there"),
        LogEntry(
            job_id,
            1,
            EntryKind.END,
            11,
            status="succeeded",
            final=orjson.dumps(summary).decode() if final else "",
        ),
    ]
    return entries, row, summary


def test_a_reader_with_the_whole_text_ends_with_the_summary_and_no_read(
    settings: Settings,
) -> None:
    entries, row, summary = finished_job(final=True)
    events, reads = follow(settings, entries, row)
    assert events == [
        Delta("Hello", 5, 1),
        Delta(" there", 11, 1),
        Final(job_summary(summary), None),
    ]
    assert events[-1].summary.created_at == summary_time(summary)
    assert reads == 0


def test_an_end_without_a_summary_is_read_from_postgres(settings: Settings) -> None:
    # An END from the reconciler, a cancel, or a worker of an earlier release.
    entries, row, _ = finished_job(final=False)
    events, reads = follow(settings, entries, row)
    assert events[-1] == Final(job_summary(row), "Hello there")
    assert events[-1].summary.custom_id == "from postgres"
    assert reads == 1


def test_a_caller_that_needs_the_text_reads_the_row(settings: Settings) -> None:
    entries, row, _ = finished_job(final=True)
    events, reads = follow(settings, entries, row, needs_text=True)
    assert events[-1] == Final(job_summary(row), "Hello there")
    assert reads == 1


def test_a_reader_missing_text_takes_it_and_the_state_from_postgres(settings: Settings) -> None:
    # The first delta is gone from the log (Redis lost it): the reader cannot have the whole
    # text from the log, so the summary will not do.
    entries, row, _ = finished_job(final=True)
    events, reads = follow(settings, entries[1:], row)
    assert events == [Delta("Hello there", 11, 1), Final(job_summary(row), "Hello there")]
    assert reads >= 1


def summary_time(summary: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(summary["created_at"])
