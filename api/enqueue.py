"""Hands job ids to the Celery broker, by task name only: the API never imports the worker."""

import anyio
from celery import Celery

from vqueue.contract import TASK_RUN_JOB

# Fail fast when the broker is down: the caller turns it into a clear 503.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class Enqueuer:
    def __init__(self, broker_url: str, queue: str) -> None:
        self.queue = queue
        self.celery = Celery("vqueue-api", broker=broker_url, set_as_current=False)
        self.celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)

    def send(self, job_id: str) -> None:
        self.celery.send_task(
            TASK_RUN_JOB,
            args=[job_id],
            queue=self.queue,
            ignore_result=True,
            retry=True,
            retry_policy=RETRY_POLICY,
        )

    async def enqueue(self, job_id: str) -> None:
        # kombu's producer is blocking I/O; keep it off the event loop.
        await anyio.to_thread.run_sync(self.send, job_id)

    def close(self) -> None:
        self.celery.close()
