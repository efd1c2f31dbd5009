"""Celery task messages for `vqueue.run_job`, written straight into the broker's Redis lists.

Celery's `send_task` costs about half a millisecond of Python per message and one round trip
each; submits come in bursts of thousands. The message below is Celery's protocol 2 as its Redis
transport (kombu) stores it, so a stock Celery worker consumes it, and a whole burst goes out in
one pipeline together with its record in the enqueued set. tests/test_task_messages.py checks
the format against Celery's own producer.
"""

import base64
import uuid
from typing import Any

import orjson

from vqueue.contract import BROKER_TRANSPORT_OPTIONS, ENQUEUED_SET, TASK_RUN_JOB

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_STEPS: list[int] = BROKER_TRANSPORT_OPTIONS["priority_steps"]  # type: ignore[assignment]
_SEP: str = BROKER_TRANSPORT_OPTIONS["sep"]  # type: ignore[assignment]


def queue_key(queue: str, priority: int) -> str:
    """The Redis list kombu keeps for `priority` (the nearest step at or below it)."""
    step = max((s for s in _STEPS if s <= priority), default=_STEPS[0])
    return f"{queue}{_SEP}{step}" if step else queue


def task_message(job_id: str, priority: int, queue: str) -> bytes:
    # The task id is the job id, so Celery's own logs name the job.
    body = base64.b64encode(orjson.dumps([[job_id], {}, _EMBED])).decode()
    message: dict[str, Any] = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": TASK_RUN_JOB,
            "id": job_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": job_id,
            "parent_id": None,
            "argsrepr": repr([job_id]),
            "kwargsrepr": "{}",
            "origin": "vqueue",
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": job_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(message)


def queue_enqueue_writes(pipe: Any, jobs: list[tuple[str, int]], queue: str) -> None:
    """Queue the LPUSH of each job's message and their record in the enqueued set on a Redis
    pipeline (sync or async) of the broker's Redis. A crash between the two leaves at worst an
    extra delivery, never a lost one."""
    for job_id, priority in jobs:
        pipe.lpush(queue_key(queue, priority), task_message(job_id, priority, queue))
    if jobs:
        pipe.sadd(ENQUEUED_SET, *(job_id for job_id, _ in jobs))
