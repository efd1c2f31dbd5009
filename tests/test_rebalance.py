"""Workers hand their waiting jobs to workers with free slots, through real Redis: room is
announced, taken once, and only taken when the queue is empty (stand-ins for the engines'
runs; tests/test_spread.py shows it with real workers)."""

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from redis import Redis

from vqueue.contract.queueing import JobQueue
from vqueue.contract.task_messages import queue_key
from vqueue.contract.wire import WORKERS_KEY, room_key
from vqueue.settings import Settings
from worker.active_runs import ActiveRun, StopReason
from worker.intake import IntakeCeiling
from worker.rebalance import Rebalancer
from worker.runner import JobRunner


class Runs:
    """A worker's runs on its engine: `held` of them, `waiting` of those with no token."""

    def __init__(self, held: int, waiting: int) -> None:
        self.held = held
        self.waiting = [f"job-{i}" for i in range(waiting)]
        self.shed_ids: list[str] = []
        self.reserved = 0  # jobs of the messages taken, on the engine or not yet

    def held_count(self) -> int:
        return self.held

    def shed(self, count: int) -> list[str]:
        chosen, self.waiting = self.waiting[:count], self.waiting[count:]
        self.held -= len(chosen)
        self.shed_ids += chosen
        return chosen


@pytest.fixture
def queue(settings: Settings) -> Iterator[JobQueue]:
    jobs = JobQueue(settings.redis_url, settings.redis_url, f"rebalance-{uuid.uuid4().hex}", 16)
    yield jobs
    jobs.broker.delete(*{queue_key(jobs.queue, priority) for priority in range(10)})
    jobs.close()


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    client.close()


def worker(
    redis: Redis,
    queue: JobQueue,
    name: str,
    slots: int,
    runs: Runs,
    ceiling: IntakeCeiling | None = None,
) -> Rebalancer:
    # Listed as live, as its heartbeat would list it.
    redis.zadd(WORKERS_KEY, {name: time.time() + 60})
    return Rebalancer(
        redis,
        queue,
        runs,  # type: ignore[arg-type]
        name,
        slots,
        reserved=lambda: runs.reserved,
        ceiling=ceiling or IntakeCeiling(),
    )


@pytest.fixture
def names(sync_redis: Redis) -> Iterator[list[str]]:
    made = [f"host:{uuid.uuid4().hex[:8]}" for _ in range(3)]
    yield made
    sync_redis.zrem(WORKERS_KEY, *made)


def test_a_worker_with_room_gets_the_waiting_jobs_it_has_room_for(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    idle_runs, busy_runs = Runs(held=1, waiting=0), Runs(held=12, waiting=10)
    idle = worker(sync_redis, queue, names[0], 4, idle_runs)
    busy = worker(sync_redis, queue, names[1], 4, busy_runs)
    assert idle.rebalance() == 0
    assert int(sync_redis.get(room_key(queue.queue, names[0])) or 0) == 3
    assert busy.rebalance() == 3  # three slots free there, eight waiting here
    assert busy_runs.shed_ids == ["job-0", "job-1", "job-2"]
    # The room is spent until the idle worker's load changes: no second helping.
    assert busy.rebalance() == 0
    assert idle.rebalance() == 0
    assert busy.rebalance() == 0
    idle_runs.held = 4  # the jobs arrived: no room left, the announcement goes
    assert idle.rebalance() == 0
    assert sync_redis.get(room_key(queue.queue, names[0])) is None


def test_a_worker_that_handed_jobs_back_does_not_take_them_back(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    ceiling = IntakeCeiling()
    busy_runs = Runs(held=8, waiting=6)
    idle = worker(sync_redis, queue, names[0], 4, Runs(held=2, waiting=0))
    busy = worker(sync_redis, queue, names[1], 2, busy_runs, ceiling)
    assert ceiling.of(8) == 8
    idle.rebalance()
    assert busy.rebalance() == 2
    # Its consumer would otherwise take the two back as they reach the queue: until a slot
    # of its own is free it holds no more than its slots, its backlog of four included.
    assert ceiling.of(8) == 2
    busy_runs.held = 2
    busy.rebalance()
    assert ceiling.of(8) == 2
    busy_runs.held = 1  # a slot is free: a full hold again
    busy.rebalance()
    assert ceiling.of(8) == 8


def test_a_message_taken_withdraws_the_room_at_once(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    idle = worker(sync_redis, queue, names[0], 4, Runs(held=0, waiting=0))
    busy = worker(sync_redis, queue, names[1], 2, Runs(held=8, waiting=6))
    idle.rebalance()
    idle._received()  # Celery's task_received, as a burst's message arrives
    assert busy.rebalance() == 0


def test_jobs_on_their_way_to_the_engine_leave_no_room(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    arriving = Runs(held=0, waiting=0)
    arriving.reserved = 4  # messages taken, their jobs not yet claimed
    idle = worker(sync_redis, queue, names[0], 4, arriving)
    busy = worker(sync_redis, queue, names[1], 2, Runs(held=8, waiting=6))
    assert idle.rebalance() == 0
    assert busy.rebalance() == 0
    arriving.reserved = 2
    idle.rebalance()
    assert busy.rebalance() == 2


def test_two_busy_workers_never_fill_the_same_room_twice(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    idle = worker(sync_redis, queue, names[0], 4, Runs(held=0, waiting=0))
    first = worker(sync_redis, queue, names[1], 2, Runs(held=5, waiting=4))
    second = worker(sync_redis, queue, names[2], 2, Runs(held=5, waiting=4))
    idle.rebalance()
    assert first.rebalance() + second.rebalance() == 4  # the room was 4: 3 from one, 1 more


def test_nothing_is_handed_back_while_the_queue_holds_messages(
    sync_redis: Redis, queue: JobQueue, names: list[str]
) -> None:
    idle = worker(sync_redis, queue, names[0], 4, Runs(held=0, waiting=0))
    busy_runs = Runs(held=8, waiting=6)
    busy = worker(sync_redis, queue, names[1], 2, busy_runs)
    job_id = str(uuid.uuid4())
    queue.send(job_id, 0)  # the idle worker takes this itself
    queue.prune([job_id])
    idle.rebalance()
    assert busy.rebalance() == 0
    assert busy_runs.shed_ids == []


def test_room_on_another_queue_is_not_this_queues(
    sync_redis: Redis, settings: Settings, queue: JobQueue, names: list[str]
) -> None:
    other = JobQueue(settings.redis_url, settings.redis_url, queue.queue + "-other", 16)
    try:
        idle = worker(sync_redis, other, names[0], 4, Runs(held=0, waiting=0))
        busy = worker(sync_redis, queue, names[1], 2, Runs(held=8, waiting=6))
        idle.rebalance()
        assert busy.rebalance() == 0
    finally:
        other.close()


def test_a_runner_sheds_what_its_engine_would_schedule_last_and_nothing_generating() -> None:
    stand_in = SimpleNamespace()
    runner = JobRunner(stand_in, stand_in, stand_in, stand_in, on_engine_dead=print)  # type: ignore[arg-type]
    runs = {
        "urgent-old": ActiveRun(1, priority=0, since=1.0),
        "urgent-new": ActiveRun(1, priority=0, since=3.0),
        "lazy-old": ActiveRun(1, priority=5, since=2.0),
        "lazy-generating": ActiveRun(1, priority=9, since=4.0, generating=True),
        "being-cancelled": ActiveRun(1, priority=9, since=5.0, reason=StopReason.CANCELLED),
    }
    for job_id, run in runs.items():
        runner.runs.add(job_id, run)
    assert runner.held_count() == 4  # the one being stopped is on its way out
    assert runner.shed(2) == ["lazy-old", "urgent-new"]
    assert runs["lazy-old"].reason is StopReason.HANDED_BACK
    assert runs["lazy-generating"].reason is None
    assert runner.held_count() == 2
    # A cancel still wins over a hand-back under way: the job ends cancelled.
    assert runner.stop("lazy-old", StopReason.CANCELLED)
    assert runs["lazy-old"].reason is StopReason.CANCELLED
