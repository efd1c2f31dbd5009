"""The worker's recorder against real Postgres and Redis (no engine): runs that end while a
round is being written, whatever message they came in, are recorded together in the next."""

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import Engine, select, text

from db.attempts import SUMMARY_COLUMNS
from db.schema import jobs
from db.states import JobStatus
from tests.helpers import insert_unqueued_job, recorded_successes, sent_to_postgres
from vqueue.contract.queueing import JobQueue
from vqueue.contract.task_messages import queue_key
from vqueue.contract.wire import EntryKind, entry_from_stream, token_log_key
from vqueue.settings import Settings
from worker.claims import Claimer
from worker.publisher import TokenLogPublisher
from worker.recorder import RECORD_ROUNDS_AT_ONCE, Ended, Outcome, Recorder

T = TypeVar("T")


class LoopHost:
    """The part of EngineHost the recorder uses: an asyncio loop on its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def parts(settings: Settings, db: Engine) -> Iterator[tuple[Recorder, Claimer]]:
    host = LoopHost()

    client = AsyncRedis.from_url(settings.redis_url)

    async def start_publisher() -> TokenLogPublisher:
        publisher = TokenLogPublisher(client, retention_s=60)
        publisher.start()
        return publisher

    publisher = host.submit(start_publisher()).result()
    queue = JobQueue.from_settings(settings)
    recorder = Recorder(host, db, publisher, queue)  # type: ignore[arg-type]
    claimer = Claimer(db, queue, "test-recorder:1", lease_s=60)
    yield recorder, claimer
    claimer.close()
    recorder.close()
    host.submit(publisher.close()).result(timeout=5)
    host.submit(client.aclose()).result(timeout=5)
    host.close()
    queue.close()


def test_runs_ending_while_every_round_is_out_are_recorded_together_in_the_next(
    parts: tuple[Recorder, Claimer], db: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, claimer = parts
    job_ids = [insert_unqueued_job(db) for _ in range(RECORD_ROUNDS_AT_ONCE + 2)]
    rows = claimer.claim(job_ids)
    rounds: list[int] = []
    release = threading.Event()
    record_now = recorder._record_now

    def held(ended: list[Ended]) -> None:
        rounds.append(len(ended))
        if len(rounds) <= RECORD_ROUNDS_AT_ONCE:
            release.wait(timeout=30)  # the first rounds are slow: the next runs end meanwhile
        record_now(ended)

    monkeypatch.setattr(recorder, "_record_now", held)

    def ended(job_id: str) -> list[Ended]:
        outcome = Outcome(JobStatus.SUCCEEDED, text=f"text of {job_id}", completion_tokens=3)
        return [(rows[job_id], outcome)]

    try:
        # Each run ends alone while the rounds before it are out: a round each, at once.
        first = []
        for count, job_id in enumerate(job_ids[:RECORD_ROUNDS_AT_ONCE], start=1):
            first.append(recorder.record(ended(job_id)))
            while len(rounds) < count:
                time.sleep(0.01)
        # The runs of two other messages end while every round is being written.
        later = [recorder.record(ended(job_id)) for job_id in job_ids[RECORD_ROUNDS_AT_ONCE:]]
        release.set()
        for future in [*first, *later]:
            future.result(timeout=10)
        assert rounds == [1] * RECORD_ROUNDS_AT_ONCE + [2]
        with db.begin() as conn:
            stored = conn.execute(
                text("SELECT id, status, text, completion_tokens FROM jobs WHERE id = ANY(:ids)"),
                {"ids": job_ids},
            ).all()
        assert {(str(row.id), row.status, row.text, row.completion_tokens) for row in stored} == {
            (job_id, "succeeded", f"text of {job_id}", 3) for job_id in job_ids
        }
        # Each job's token log announces its end, for the streams that follow it.
        assert [recorded_successes(redis, job_id) for job_id in job_ids] == [1] * len(job_ids)
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})


def test_results_are_stored_in_one_statement_with_no_begin_or_commit(
    parts: tuple[Recorder, Claimer], db: Engine, tmp_path: Path
) -> None:
    """Every job's done event waits for its result to be stored: as the runs of a burst end,
    the UPDATE goes alone, as its own transaction, not in three round trips."""
    recorder, claimer = parts
    job_ids = [insert_unqueued_job(db) for _ in range(3)]
    rows = claimer.claim(job_ids)
    ended = [
        (rows[job_id], Outcome(JobStatus.SUCCEEDED, text="done", completion_tokens=1))
        for job_id in job_ids
    ]
    try:
        with sent_to_postgres(db, tmp_path / "frontend.trace") as sent:
            recorder.record(ended).result(timeout=10)
        assert sum("UPDATE jobs" in line for line in sent) == 1
        assert not [line for line in sent if "BEGIN" in line or "COMMIT" in line], sent
        with db.connect() as conn:
            statuses = conn.execute(
                text("SELECT status FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids}
            ).scalars()
            assert list(statuses) == ["succeeded"] * 3
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})


def test_each_end_carries_the_summary_postgres_recorded(
    parts: tuple[Recorder, Claimer], db: Engine, redis: Redis
) -> None:
    """A stream that had the whole text ends with the summary in the END entry, not a read of
    the row: it must be the row as written, finished_at and all."""
    recorder, claimer = parts
    job_ids = [insert_unqueued_job(db) for _ in range(2)]
    rows = claimer.claim(job_ids)
    outcomes = {
        job_ids[0]: Outcome(JobStatus.SUCCEEDED, "ok", "stop", 4, 1),
        job_ids[1]: Outcome(JobStatus.FAILED, "", None, 4, 0, error="it broke"),
    }
    try:
        recorder.record([(rows[job_id], outcomes[job_id]) for job_id in job_ids]).result(10)
        for job_id in job_ids:
            (end,) = [
                entry
                for stream_id, fields in redis.xrange(token_log_key(job_id))  # type: ignore[union-attr]
                if (entry := entry_from_stream(job_id, stream_id, fields)).kind is EntryKind.END
            ]
            summary = orjson.loads(end.final)
            assert set(summary) == set(SUMMARY_COLUMNS)
            with db.connect() as conn:
                row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
            assert summary["status"] == end.status == row["status"]
            assert summary["error"] == row["error"] == outcomes[job_id].error
            for name in ("id", "attempt", "prompt_tokens", "completion_tokens", "metadata"):
                assert summary[name] == (str(row[name]) if name == "id" else row[name])
            for name in ("created_at", "started_at", "finished_at"):
                assert datetime.fromisoformat(summary[name]) == row[name]
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})


def test_a_job_handed_back_after_its_cancel_was_asked_for_ends_cancelled(
    parts: tuple[Recorder, Claimer], db: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker returns a job (shutdown, or room elsewhere) just as its owner cancels it: the
    job must not go back to the queue to run again, and the other one does."""
    recorder, claimer = parts
    # A queue no worker of the suite's stack consumes: the job handed back stays queued.
    private = JobQueue(settings.redis_url, settings.redis_url, f"handback-{uuid.uuid4().hex}", 16)
    monkeypatch.setattr(recorder, "queue", private)
    job_ids = [insert_unqueued_job(db) for _ in range(2)]
    rows = claimer.claim(job_ids)
    try:
        with db.begin() as conn:
            conn.execute(
                text("UPDATE jobs SET cancel_requested_at = now() WHERE id = :id"),
                {"id": job_ids[0]},
            )
        ended = [
            (rows[job_id], Outcome(JobStatus.SUCCEEDED, handed_back=True)) for job_id in job_ids
        ]
        recorder.record(ended).result(timeout=10)
        with db.connect() as conn:
            found = dict(
                conn.execute(
                    text("SELECT id::text, status FROM jobs WHERE id = ANY(:ids)"),
                    {"ids": job_ids},
                ).all()
            )
        assert found == {job_ids[0]: "cancelled", job_ids[1]: "queued"}
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})
        private.broker.delete(*{queue_key(private.queue, priority) for priority in range(10)})
        private.prune(job_ids)
        private.close()
