"""Celery task messages for `vqueue.run_jobs`, written straight into the broker's Redis lists.

Celery's `send_task` costs about half a millisecond of Python per message and one round trip
each; submits come in bursts of thousands. The message below is Celery's protocol 2 as its Redis
transport (kombu) stores it, so a stock Celery worker consumes it, and a whole burst goes out in
one pipeline together with its record in the enqueued set. tests/test_task_messages.py checks
the format against Celery's own producer.

A message names up to `per_message` jobs of one priority. A worker's Celery consumer takes one
message per Redis round trip and hands it to a task thread; busy beside a running engine it
manages a few hundred messages a second at best, so with one job per message a burst of
hundreds of jobs reaches the engine over a second and misses its first steps.
The API sizes the messages of each submit round by the live workers (`jobs_per_message`).
"""

import base64
import uuid
from typing import Any

import orjson

from vqueue.contract.wire import BROKER_TRANSPORT_OPTIONS, ENQUEUED_SET, TASK_RUN_JOBS

# The most jobs of a submit round's message, and what a worker's claimer takes in one round
# trip (worker/claims.py).
MAX_JOBS_PER_MESSAGE = 512

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_STEPS: list[int] = BROKER_TRANSPORT_OPTIONS["priority_steps"]  # type: ignore[assignment]
_SEP: str = BROKER_TRANSPORT_OPTIONS["sep"]  # type: ignore[assignment]


def queue_key(queue: str, priority: int) -> str:
    """The Redis list kombu keeps for `priority` (the nearest step at or below it)."""
    step = max((s for s in _STEPS if s <= priority), default=_STEPS[0])
    return f"{queue}{_SEP}{step}" if step else queue


def jobs_per_message(
    jobs: int, workers: int, least: int, smallest_max_jobs: int | None = None
) -> int:
    """Jobs per message for `jobs` sent together: with several live workers, two messages per
    worker, so that each worker's consumer takes its share in a round trip or two and none
    takes the whole round; with one (or none seen yet), one message, since there is nothing to
    share out and each message is one more delivery. At least `least` jobs
    (VQUEUE_JOBS_PER_MESSAGE) and, above that, at most MAX_JOBS_PER_MESSAGE. Fewer, larger
    messages reach the engine sooner: each message is one more delivery before its jobs are
    claimed."""
    share = jobs if workers <= 1 else -(-jobs // (2 * workers))
    size = max(least, min(share, MAX_JOBS_PER_MESSAGE))
    return capped_by_room(size, workers, smallest_max_jobs)


def capped_by_room(size: int, workers: int, smallest_max_jobs: int | None) -> int:
    """With several workers, no message over half of what the smallest of them holds
    (VQUEUE_WORKER_MAX_JOBS): a worker takes messages while it holds less than that, so each
    takes a share of a burst in proportion to its room, over by one small message at most."""
    if workers <= 1 or not smallest_max_jobs:
        return size
    return min(size, max(1, smallest_max_jobs // 2))


def task_message(job_ids: list[str], priority: int, queue: str) -> bytes:
    # A one-job message's task id is the job id, so Celery's own logs name the job.
    task_id = job_ids[0] if len(job_ids) == 1 else str(uuid.uuid4())
    body = base64.b64encode(orjson.dumps([[job_ids], {}, _EMBED])).decode()
    message: dict[str, Any] = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": TASK_RUN_JOBS,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr([job_ids]),
            "kwargsrepr": "{}",
            "origin": "vqueue",
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(message)


def queue_enqueue_writes(
    pipe: Any, jobs: list[tuple[str, int]], queue: str, per_message: int
) -> None:
    """Queue the LPUSH of the jobs' messages (up to `per_message` jobs each, one priority list
    each, in the given order) and their record in the enqueued set on a Redis pipeline (sync or
    async) of the broker's Redis. A crash between the two leaves at worst an extra delivery,
    never a lost one."""
    by_list: dict[str, list[tuple[str, int]]] = {}
    for job in jobs:
        by_list.setdefault(queue_key(queue, job[1]), []).append(job)
    for key, members in by_list.items():
        for start in range(0, len(members), per_message):
            chunk = members[start : start + per_message]
            job_ids = [job_id for job_id, _ in chunk]
            priority = max(priority for _, priority in chunk)
            pipe.lpush(key, task_message(job_ids, priority, queue))
    if jobs:
        pipe.sadd(ENQUEUED_SET, *(job_id for job_id, _ in jobs))
