"""A worker fetches task messages only while it holds fewer jobs than VQUEUE_WORKER_MAX_JOBS.

Celery reserves up to its concurrency in messages (a thread each, max_num_seqs of them), and
a message holds from VQUEUE_JOBS_PER_MESSAGE jobs to a share of a burst (up to 512): left to
that, one worker could claim many times what its engine runs at once while another worker
has room. Counted here are the jobs
of every message this worker has reserved and not yet finished (Celery's reserved requests,
added as each message is received), checked before each fetch from Redis, the hook Celery's
own `worker_disable_prefetch` uses. A fetch already in flight still delivers its message, so
a worker may go over by one message (up to 512 jobs); when jobs end, fetching resumes on the
consumer's next turn (within a second).
"""

from collections.abc import Callable
from types import MethodType
from typing import Any

from celery import bootsteps
from celery.worker import state

from vqueue.settings import get_settings


def jobs_in(request: Any) -> int:
    """The jobs of a reserved task: a list of ids (run_jobs) or one id (run_job)."""
    args = request.args or ()
    first = args[0] if args else None
    return len(first) if isinstance(first, list) else 1


def held_jobs() -> int:
    while True:
        try:
            return sum(jobs_in(request) for request in list(state.reserved_requests))
        except RuntimeError:  # a task thread ended a request while the set was being read
            continue


def limit_intake(channel_qos: Any, max_jobs: int, held: Callable[[], int] = held_jobs) -> None:
    """Make the broker channel's QoS refuse further messages while `held()` >= max_jobs."""
    can_consume_messages = channel_qos.can_consume

    def can_consume(self: Any) -> bool:
        return held() < max_jobs and bool(can_consume_messages())

    channel_qos.can_consume = MethodType(can_consume, channel_qos)


class IntakeLimit(bootsteps.StartStopStep):
    """Consumer step: applies the limit to each new task consumer (again after reconnects)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        if parent.task_consumer is not None:
            max_jobs = get_settings().effective_worker_max_jobs
            limit_intake(parent.task_consumer.channel.qos, max_jobs)
