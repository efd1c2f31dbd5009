"""Handing job ids to the Celery broker, shared by the API (submits) and workers (requeues).

Tasks are sent by name, so neither side imports the other. Every id sent is also recorded in a
Redis set that workers clear when they claim the job: a queued job missing from that set is
unknown to the broker (its enqueue never happened, or Redis lost it) and the reconciler sends
it again. Sending twice is harmless: only one delivery can claim a queued job.
"""

from collections.abc import Iterable

from celery import Celery
from redis import Redis

from vqueue.contract import (
    BROKER_TRANSPORT_OPTIONS,
    ENQUEUED_SET,
    TASK_RUN_JOB,
    WORKER_KEY_PREFIX,
    LogEntry,
    queue_log_writes,
)

# Fail fast when the broker is down: callers turn it into a clear 503 (or retry later).
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def configure_broker(app: Celery) -> None:
    app.conf.update(
        broker_transport_options=BROKER_TRANSPORT_OPTIONS,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )


class JobQueue:
    def __init__(self, broker_url: str, redis_url: str, queue: str) -> None:
        self.queue = queue
        self.celery = Celery("vqueue-producer", broker=broker_url, set_as_current=False)
        configure_broker(self.celery)
        self.redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)

    def send(self, job_id: str, priority: int) -> None:
        self.celery.send_task(
            TASK_RUN_JOB,
            args=[job_id],
            queue=self.queue,
            priority=priority,
            ignore_result=True,
            retry=True,
            retry_policy=RETRY_POLICY,
        )
        # After the send: a crash in between leaves an extra delivery, never a lost one.
        self.redis.sadd(ENQUEUED_SET, job_id)

    def forget(self, job_id: str) -> None:
        """The job was taken off the queue by a worker."""
        self.redis.srem(ENQUEUED_SET, job_id)

    def unknown(self, job_ids: list[str]) -> list[str]:
        """The ids among `job_ids` that were never sent or whose message Redis lost."""
        if not job_ids:
            return []
        known = self.redis.smismember(ENQUEUED_SET, job_ids)
        return [job_id for job_id, present in zip(job_ids, known, strict=True) if not present]

    def enqueued_sample(self, count: int) -> list[str]:
        return [m.decode() for m in self.redis.srandmember(ENQUEUED_SET, count) or []]  # type: ignore[union-attr]

    def prune(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.redis.srem(ENQUEUED_SET, *ids)

    def live_workers(self) -> list[str]:
        """Names of the workers whose heartbeat has not expired."""
        prefix = WORKER_KEY_PREFIX.encode()
        return [
            key.removeprefix(prefix).decode()
            for key in self.redis.scan_iter(match=WORKER_KEY_PREFIX + "*", count=1000)
        ]

    def publish_ends(self, entries: list[LogEntry], retention_s: int) -> None:
        """Tell stream readers that jobs ended without a worker (cancelled, expired, given up)."""
        if entries:
            pipe = self.redis.pipeline(transaction=False)
            queue_log_writes(pipe, entries, retention_s)
            pipe.execute()

    def close(self) -> None:
        self.celery.close()
        self.redis.close()
