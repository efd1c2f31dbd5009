"""Our hand-written task messages match what Celery's own producer writes to Redis."""

import base64
import json

from celery import Celery
from redis import Redis

from vqueue.contract import TASK_RUN_JOB
from vqueue.queueing import configure_broker
from vqueue.settings import Settings
from vqueue.task_messages import queue_key, task_message

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
    for priority in (0, 4, 9):
        redis.delete(queue_key(QUEUE, priority))
        app.send_task(
            TASK_RUN_JOB, args=["job-1"], queue=QUEUE, priority=priority, ignore_result=True
        )
        (celerys,) = redis.lrange(queue_key(QUEUE, priority), 0, -1)  # type: ignore[misc]
        ours = task_message("job-1", priority, QUEUE)
        celery_message, our_message = json.loads(celerys), json.loads(ours)
        assert _strip(our_message) == _strip(celery_message)
        assert our_message["headers"]["id"] == "job-1"
        redis.delete(queue_key(QUEUE, priority))
    app.close()


def test_priorities_map_to_kombus_lists() -> None:
    assert queue_key("q", 0) == "q"
    assert queue_key("q", 7) == "q:7"
