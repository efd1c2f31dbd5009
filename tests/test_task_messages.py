"""Our hand-written task messages match what Celery's own producer writes to Redis."""

import base64
import json

from celery import Celery
from redis import Redis

from tests.helpers import delivered_jobs
from vqueue.contract.queueing import configure_broker
from vqueue.contract.task_messages import (
    MAX_JOBS_PER_MESSAGE,
    jobs_per_message,
    queue_enqueue_writes,
    queue_key,
    task_message,
)
from vqueue.contract.wire import ENQUEUED_SET, TASK_RUN_JOBS
from vqueue.settings import Settings

QUEUE = "vqueue.format-check"
VARYING = {"id", "root_id", "correlation_id", "delivery_tag", "origin", "reply_to"}


def _strip(message: dict) -> dict:  # type: ignore[type-arg]
    headers = {k: v for k, v in message["headers"].items() if k not in VARYING}
    properties = {k: v for k, v in message["properties"].items() if k not in VARYING}
    body = json.loads(base64.b64decode(message["body"]))
    return {**message, "headers": headers, "properties": properties, "body": body}


def test_the_message_is_celerys_own(settings: Settings, redis: Redis) -> None:
    app = Celery("format-check", broker=settings.effective_broker_url, set_as_current=False)
    configure_broker(app)
    for priority, job_ids in ((0, ["job-1"]), (4, ["job-1", "job-2"]), (9, ["job-3"])):
        redis.delete(queue_key(QUEUE, priority))
        app.send_task(
            TASK_RUN_JOBS, args=[job_ids], queue=QUEUE, priority=priority, ignore_result=True
        )
        (celerys,) = redis.lrange(queue_key(QUEUE, priority), 0, -1)  # type: ignore[misc]
        ours = task_message(job_ids, priority, QUEUE)
        celery_message, our_message = json.loads(celerys), json.loads(ours)
        assert _strip(our_message) == _strip(celery_message)
        if len(job_ids) == 1:  # Celery's logs of a one-job message name the job
            assert our_message["headers"]["id"] == job_ids[0]
        redis.delete(queue_key(QUEUE, priority))
    app.close()


def test_priorities_map_to_kombus_lists() -> None:
    assert queue_key("q", 0) == "q"
    assert queue_key("q", 7) == "q:7"


def test_jobs_sent_together_share_messages_per_priority(redis: Redis) -> None:
    jobs = [(f"job-{i}", 5) for i in range(7)] + [("urgent-1", 0), ("urgent-2", 0)]
    for priority in (0, 5):
        redis.delete(queue_key(QUEUE, priority))
    pipe = redis.pipeline(transaction=False)
    queue_enqueue_writes(pipe, jobs, QUEUE, per_message=3)
    pipe.execute()

    assert delivered_jobs(redis, QUEUE, 5) == [
        ["job-0", "job-1", "job-2"],
        ["job-3", "job-4", "job-5"],
        ["job-6"],
    ]
    assert delivered_jobs(redis, QUEUE, 0) == [["urgent-1", "urgent-2"]]
    job_ids = [job_id for job_id, _ in jobs]
    assert redis.smismember(ENQUEUED_SET, job_ids) == [1] * len(jobs)
    for priority in (0, 5):
        redis.delete(queue_key(QUEUE, priority))
    redis.srem(ENQUEUED_SET, *job_ids)


def test_a_round_goes_out_in_two_messages_per_live_worker_within_bounds() -> None:
    assert jobs_per_message(1024, workers=4, least=16) == 128
    assert jobs_per_message(257, workers=2, least=16) == 65  # never a fifth, smaller message
    # One worker has nothing to share out: a round is one message, one delivery.
    assert jobs_per_message(256, workers=1, least=16) == 256
    # Small rounds keep the configured least (one message for a handful of jobs) ...
    assert jobs_per_message(40, workers=2, least=16) == 16
    assert jobs_per_message(1, workers=1, least=16) == 16
    # ... and no worker count (none live yet) counts as one.
    assert jobs_per_message(100, workers=0, least=16) == 100
    # A message is at most what a worker claims in one round trip, unless asked for more.
    assert jobs_per_message(50_000, workers=1, least=16) == MAX_JOBS_PER_MESSAGE
    assert jobs_per_message(50_000, workers=1, least=1000) == 1000


def test_with_workers_of_unequal_sizes_no_message_is_over_half_the_smallest_hold() -> None:
    # A worker that holds 4 jobs takes messages of 2: it stops at its 4, not at a 16 or a 128.
    assert jobs_per_message(1024, workers=4, least=16, smallest_max_jobs=4) == 2
    assert jobs_per_message(40, workers=2, least=16, smallest_max_jobs=4) == 2
    assert jobs_per_message(40, workers=2, least=16, smallest_max_jobs=3) == 1
    # Large enough workers keep the burst's share; one worker has no one to share with.
    assert jobs_per_message(1024, workers=4, least=16, smallest_max_jobs=2048) == 128
    assert jobs_per_message(256, workers=1, least=16, smallest_max_jobs=4) == 256
