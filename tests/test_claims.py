"""The worker's bulk claims against real Postgres and Redis (no engine): every delivery gets
its jobs at most once, and deliveries that arrive together share one round trip."""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from db.attempts import CLAIMED_COLUMNS, AttemptResult, ClaimedJob, finish_jobs
from db.schema import jobs
from db.states import JobStatus
from tests.helpers import insert_unqueued_job, sent_to_postgres
from vqueue.contract.queueing import ENQUEUED_SET, JobQueue
from vqueue.settings import Settings
from worker.claims import Claimer

WORKER = "test-claimer:1"


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    opened = JobQueue.from_settings(settings)
    yield opened
    opened.close()


@pytest.fixture
def claimer(db: Engine, queue: JobQueue) -> Iterator[Claimer]:
    made = Claimer(db, queue, WORKER, lease_s=60)
    yield made
    made.close()


def forget_jobs(db: Engine, job_ids: list[str]) -> None:
    with db.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids})


def wait_until_pruned(queue: JobQueue, job_ids: list[str]) -> None:
    deadline = time.monotonic() + 10
    while any(queue.broker.smismember(ENQUEUED_SET, job_ids)):
        assert time.monotonic() < deadline, "the ids stayed in the enqueued set"
        time.sleep(0.01)


def test_each_job_is_claimed_once_however_often_it_is_delivered(
    claimer: Claimer, db: Engine, queue: JobQueue
) -> None:
    first, second = insert_unqueued_job(db), insert_unqueued_job(db)
    queue.broker.sadd(ENQUEUED_SET, first, second)
    unknown = str(uuid.uuid4())
    try:
        # Messages of one job and of several, the first job in three of them.
        deliveries = [[first], [first, second], [unknown], [first, unknown]]
        with ThreadPoolExecutor(len(deliveries)) as pool:
            claims = list(pool.map(claimer.claim, deliveries))
        assert sum(first in claim for claim in claims) == 1  # delivered three times, runs once
        assert second in claims[1]
        assert all(unknown not in claim for claim in claims)
        for claim, asked in zip(claims, deliveries, strict=True):
            assert set(claim) <= set(asked)
        claimed = next(claim[first] for claim in claims if first in claim)
        # The worker gets back only what it reads of the row.
        assert isinstance(claimed, ClaimedJob)
        assert tuple(field.name for field in fields(ClaimedJob)) == CLAIMED_COLUMNS
        assert claimed.attempt == 1
        assert claimed.started_at is not None
        with db.connect() as conn:
            stored = conn.execute(select(jobs).where(jobs.c.id == first)).mappings().one()
        assert (stored["status"], stored["worker"], stored["attempt"]) == ("running", WORKER, 1)
        assert stored["lease_expires_at"] is not None
        # Taken off the queue (just after the claim): the reconciler will not send them again.
        wait_until_pruned(queue, [first, second])
        # A later delivery of a job that already runs gets nothing.
        assert claimer.claim([second]) == {}
    finally:
        forget_jobs(db, [first, second])


def test_a_claim_is_one_statement_with_no_begin_or_commit(
    claimer: Claimer, db: Engine, tmp_path: Path
) -> None:
    """In a burst every round trip is one more wait for the worker's GIL, and the claim is on
    every job's path to the engine: the UPDATE goes alone, as its own transaction."""
    job_ids = [insert_unqueued_job(db) for _ in range(3)]
    try:
        with sent_to_postgres(db, tmp_path / "frontend.trace") as sent:
            claimed = claimer.claim(job_ids)
        assert set(claimed) == set(job_ids)
        assert sum("UPDATE jobs" in line for line in sent) == 1
        assert not [line for line in sent if "BEGIN" in line or "COMMIT" in line], sent
    finally:
        forget_jobs(db, job_ids)


def test_deliveries_that_arrive_together_share_one_round_trip(
    claimer: Claimer, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = [insert_unqueued_job(db) for _ in range(40)]
    rounds: list[int] = []
    release = threading.Event()
    original = claimer._claim

    def counted(batch: list[str]) -> Any:
        rounds.append(len(batch))
        if len(rounds) == 1:
            release.wait(timeout=30)  # hold the first round while the others pile up
        return original(batch)

    monkeypatch.setattr(claimer, "_claim", counted)
    try:
        with ThreadPoolExecutor(len(job_ids)) as pool:
            first = pool.submit(claimer.claim, job_ids[:1])
            while not rounds:
                time.sleep(0.01)
            # Messages of one job and messages of several pile up behind the first round.
            messages = [job_ids[i : i + 1] for i in range(1, 20)] + [job_ids[20:30], job_ids[30:]]
            rest = [pool.submit(claimer.claim, message) for message in messages]
            while len(claimer._rounds._pending) < len(rest):
                time.sleep(0.01)
            release.set()
            results = [first.result(), *(future.result() for future in rest)]
        assert [sorted(claim) for claim in results] == [
            sorted(message) for message in [job_ids[:1], *messages]
        ]
        assert rounds == [1, 39]
    finally:
        forget_jobs(db, job_ids)


def test_results_of_runs_that_ended_together_are_recorded_in_one_statement(
    claimer: Claimer, db: Engine
) -> None:
    job_ids = [insert_unqueued_job(db) for _ in range(3)]
    try:
        rows = claimer.claim(job_ids)
        done, failed, superseded = (rows[job_id] for job_id in job_ids)
        # The third job was requeued and claimed again meanwhile: its old attempt is stale.
        with db.begin() as conn:
            conn.execute(text("UPDATE jobs SET attempt = 2 WHERE id = :id"), {"id": job_ids[2]})
        results = [
            AttemptResult(done.id, 1, JobStatus.SUCCEEDED, text="Hi.", completion_tokens=2),
            # Every optional column NULL in some row, and first_token_at NULL in all of them.
            AttemptResult(failed.id, 1, JobStatus.FAILED, error="boom"),
            AttemptResult(superseded.id, 1, JobStatus.SUCCEEDED, text="old"),
        ]
        with db.begin() as conn:
            recorded = set(conn.execute(finish_jobs(results)).scalars())
            stored = {
                str(row.id): row
                for row in conn.execute(
                    text("SELECT * FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids}
                )
            }
        assert recorded == {done.id, failed.id}
        first, second, third = (stored[job_id] for job_id in job_ids)
        assert (first.status, first.text, first.completion_tokens) == ("succeeded", "Hi.", 2)
        assert (second.status, second.text, second.error) == ("failed", None, "boom")
        assert first.finished_at is not None
        assert first.lease_expires_at is None
        assert (third.status, third.text, third.finished_at) == ("running", None, None)
    finally:
        forget_jobs(db, job_ids)


def test_claimed_rows_come_before_the_enqueued_set_is_pruned_and_failed_claims_prune_too(
    claimer: Claimer, db: Engine, queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SREM is not on the jobs' path to the engine; a job whose claim failed leaves the
    set all the same, so the reconciler, finding it queued and unknown, sends it again."""
    claimed_job, failing_job = insert_unqueued_job(db), insert_unqueued_job(db)
    queue.broker.sadd(ENQUEUED_SET, claimed_job, failing_job)
    pruning = threading.Event()
    let_prune = threading.Event()
    prune = queue.prune

    def held_prune(job_ids: Any) -> None:
        pruning.set()
        assert let_prune.wait(timeout=30)
        prune(job_ids)

    monkeypatch.setattr(queue, "prune", held_prune)
    try:
        assert set(claimer.claim([claimed_job])) == {claimed_job}  # while the prune is held
        assert pruning.wait(timeout=10)
        assert queue.broker.sismember(ENQUEUED_SET, claimed_job)
        let_prune.set()

        def refused(job_ids: list[str]) -> Any:
            raise ConnectionError("Postgres is out of reach")

        monkeypatch.setattr(claimer, "_claim", refused)
        with pytest.raises(ConnectionError):
            claimer.claim([failing_job])
        wait_until_pruned(queue, [claimed_job, failing_job])
        assert queue.unknown([failing_job]) == [failing_job]
    finally:
        let_prune.set()
        forget_jobs(db, [claimed_job, failing_job])
