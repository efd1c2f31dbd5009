"""Handing job ids to the Celery broker, shared by the API (submits) and workers (requeues).

Tasks are sent by name, so neither side imports the other. Every id sent is also recorded in a
Redis set that workers clear when they claim the job: a queued job missing from that set is
unknown to the broker (its enqueue never happened, or Redis lost it) and the reconciler sends
it again. Sending twice is harmless: only one delivery can claim a queued job.
"""

import time
from collections.abc import Iterable, Sequence

from celery import Celery
from redis import Redis
from redis.exceptions import RedisError

from vqueue.contract.metrics import METRICS_KEY
from vqueue.contract.task_messages import capped_by_room, queue_enqueue_writes, queue_key
from vqueue.contract.wire import (
    BROKER_TRANSPORT_OPTIONS,
    ENQUEUED_SET,
    LOG_SCRIPT,
    WORKERS_KEY,
    EntryKind,
    LogEntry,
    WorkerHeartbeat,
    log_script_args,
    read_heartbeat,
    worker_key,
)
from vqueue.settings import Settings

HOLDS_REFRESH_S = 5.0


def configure_broker(app: Celery) -> None:
    app.conf.update(
        broker_transport_options=BROKER_TRANSPORT_OPTIONS,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )


class JobQueue:
    """The synchronous side (workers, reconcilers); the API batches with an async pipeline."""

    def __init__(self, broker_url: str, redis_url: str, queue: str, per_message: int) -> None:
        self.queue = queue
        self.per_message = per_message
        # The enqueued set lives beside the queue lists: a broker that loses its data loses
        # both, and everything queued is sent again.
        self.broker = Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=2)
        self.redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self._write_log = self.redis.register_script(LOG_SCRIPT)
        self._holds: list[int] = []  # the live workers' max_jobs, when last read
        self._holds_read_at = -HOLDS_REFRESH_S

    @classmethod
    def from_settings(cls, settings: Settings) -> "JobQueue":
        return cls(
            settings.effective_broker_url,
            settings.redis_url,
            settings.queue_name,
            settings.jobs_per_message,
        )

    def send(self, job_id: str, priority: int) -> None:
        self.send_many([(job_id, priority)])

    def send_many(self, jobs: list[tuple[str, int]]) -> None:
        if not jobs:
            return
        pipe = self.broker.pipeline(transaction=False)
        queue_enqueue_writes(pipe, jobs, self.queue, self._message_size())
        pipe.execute()

    def _message_size(self) -> int:
        """VQUEUE_JOBS_PER_MESSAGE, capped by the smallest live worker's room (read at most
        every few seconds)."""
        now = time.monotonic()
        if now - self._holds_read_at > HOLDS_REFRESH_S:
            self._holds_read_at = now
            try:
                holds = [worker.get("max_jobs") for worker in self._heartbeats()]
                self._holds = [hold for hold in holds if hold]
            except RedisError:
                pass  # the send itself says whether Redis is there
        smallest = min(self._holds) if self._holds else None
        return capped_by_room(self.per_message, len(self._holds), smallest)

    def depths(self) -> list[int]:
        """Messages waiting in the broker's list of each priority 0-9 (priorities that share
        a list read the same depth)."""
        pipe = self.broker.pipeline(transaction=False)
        for priority in range(10):
            pipe.llen(queue_key(self.queue, priority))
        return [int(n) for n in pipe.execute()]

    def unknown(self, job_ids: list[str]) -> list[str]:
        """The ids among `job_ids` that were never sent or whose message Redis lost."""
        if not job_ids:
            return []
        known = self.broker.smismember(ENQUEUED_SET, job_ids)
        return [job_id for job_id, present in zip(job_ids, known, strict=True) if not present]

    def enqueued_sample(self, count: int) -> list[str]:
        return [m.decode() for m in self.broker.srandmember(ENQUEUED_SET, count) or []]  # type: ignore[union-attr]

    def prune(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.broker.srem(ENQUEUED_SET, *ids)

    def live_workers(self) -> list[str]:
        """Names of the workers whose heartbeat has not expired, from their registry."""
        names = self.redis.zrangebyscore(WORKERS_KEY, time.time(), "+inf")
        return [name.decode() for name in names]  # type: ignore[union-attr]

    def engine_slots(self) -> int:
        """The live workers' engine slots (max_num_seqs) added up, from their heartbeats."""
        return sum(worker["max_num_seqs"] for worker in self._heartbeats())

    def _heartbeats(self) -> list[WorkerHeartbeat]:
        keys = [worker_key(name) for name in self.live_workers()]
        values = self.redis.mget(keys) if keys else []
        return [read_heartbeat(value) for value in values if value]

    def announce_ended(
        self, ended: Sequence[tuple[str, int]], status: str, retention_s: int
    ) -> None:
        """Jobs (id, attempt) that ended without a worker (cancelled while queued, expired,
        given up): an END entry on each one's token log tells its stream readers, and the
        finished-jobs counter of GET /metrics counts them; workers announce their own runs."""
        if not ended:
            return
        entries = [
            LogEntry(job_id, attempt, EntryKind.END, 0, status=status) for job_id, attempt in ended
        ]
        self._write_log(args=log_script_args(entries, retention_s))
        self.redis.hincrby(METRICS_KEY, f"finished:{status}", len(entries))

    def close(self) -> None:
        self.broker.close()
        self.redis.close()
