"""The worker's bulk claims against real Postgres and Redis (no engine): every delivery gets
its job at most once, and deliveries that arrive together share one round trip."""

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.helpers import insert_unqueued_job
from vqueue.queueing import ENQUEUED_SET, JobQueue
from vqueue.settings import Settings
from worker.claims import Claimer

WORKER = "test-claimer:1"


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    opened = JobQueue(settings.effective_broker_url, settings.redis_url, settings.queue_name)
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


def test_each_job_is_claimed_once_however_often_it_is_delivered(
    claimer: Claimer, db: Engine, queue: JobQueue
) -> None:
    first, second = insert_unqueued_job(db), insert_unqueued_job(db)
    queue.broker.sadd(ENQUEUED_SET, first, second)
    unknown = str(uuid.uuid4())
    try:
        deliveries = [first, first, second, unknown, first]
        with ThreadPoolExecutor(len(deliveries)) as pool:
            rows = list(pool.map(claimer.claim, deliveries))
        got = [row is not None for row in rows]
        assert sum(got[i] for i in (0, 1, 4)) == 1  # the job delivered three times runs once
        assert got[2] is True
        assert got[3] is False
        claimed = next(row for row in rows if row is not None and str(row["id"]) == first)
        assert (claimed["status"], claimed["worker"], claimed["attempt"]) == (
            "running",
            WORKER,
            1,
        )
        assert claimed["lease_expires_at"] is not None
        # Taken off the queue: the reconciler will not send them again.
        assert queue.broker.smismember(ENQUEUED_SET, [first, second]) == [0, 0]
        # A later delivery of a job that already runs gets nothing.
        assert claimer.claim(second) is None
    finally:
        forget_jobs(db, [first, second])


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
            first = pool.submit(claimer.claim, job_ids[0])
            while not rounds:
                time.sleep(0.01)
            rest = [pool.submit(claimer.claim, job_id) for job_id in job_ids[1:]]
            while len(claimer._pending) < len(rest):
                time.sleep(0.01)
            release.set()
            results = [first.result(), *(future.result() for future in rest)]
        assert all(row is not None for row in results)
        assert rounds == [1, 39]
    finally:
        forget_jobs(db, job_ids)
